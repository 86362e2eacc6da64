"""The README's examples run and print what the README says they print."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(script: str) -> str:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_seed_l1_regression_prox_gives_exact_zeros_and_subgradient_does_not():
    out = _run("seed_l1_regression.py")
    zeros = dict(re.findall(r"^(.+?)\s+loss=.*exact zeros=(\d+)/10", out, re.M))
    assert int(zeros["prox_l1"]) >= 5  # the five zero coefficients of w_true (and maybe the small 6th)
    assert int(zeros["add_l1 (seed rule)"]) == 0


def test_seed_l2_regression_weight_decay_equals_half_squared_norm_in_loss():
    out = _run("seed_l2_regression.py")
    diff = float(re.search(r"max \|diff\| = (\S+)", out).group(1))
    assert diff < 1e-6
