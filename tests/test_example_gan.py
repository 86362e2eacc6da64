"""examples/gan_gradient_penalty.py runs at a small size, and each penalty moves the gradient norm it targets."""

import math
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(*args: str) -> list[tuple[float, float]]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "gan_gradient_penalty.py"), "--batch", "128", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "mean distance of generated samples to the nearest mode" in out.stdout
    rows = re.findall(r"penalty (\S+)  grad norm at \D+ (\S+)", out.stdout)
    return [(float(p), float(g)) for p, g in rows]


def test_wgan_gp_pulls_the_critic_gradient_norm_towards_one():
    rows = _run("--penalty", "wgan-gp", "--steps", "40", "--log-every", "20", "--hidden", "32")
    assert len(rows) == 3 and all(math.isfinite(p) and math.isfinite(g) for p, g in rows)
    assert abs(rows[-1][1] - 1) < 0.25  # the critic's gradient norm at interpolates, after 200 critic steps


def test_r1_pulls_the_critic_gradient_at_the_data_towards_zero():
    rows = _run("--penalty", "r1", "--steps", "60", "--log-every", "30", "--hidden", "32")
    assert len(rows) == 3 and all(math.isfinite(p) and math.isfinite(g) for p, g in rows)
    assert rows[-1][1] < 0.5 * rows[0][1]
