"""The scripts in examples/ run, at small sizes, and print what the README says they print.

examples/sharded_training.py needs 8 simulated devices: tests/test_sharding.py runs it.
"""

import re
import subprocess
import sys

from helpers import EXAMPLES, ROOT


def _run(script: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
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


def test_constraints_and_mixup_example_runs():
    out = _run("constraints_and_mixup.py")
    rows = re.findall(r"test accuracy (\S+)\s+largest column norm (\S+)", out)
    assert len(rows) == 2
    (acc_plain, _), (acc_reg, norm_reg) = ((float(a), float(n)) for a, n in rows)
    assert acc_plain > 0.9 and acc_reg > 0.9  # digits is easy: both recipes must learn it
    assert norm_reg <= 3.0 + 1e-5
