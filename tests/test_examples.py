"""The scripts in examples/ run, at small sizes, and print what the README says they print.

Each script runs in this process as ``python examples/<script> <args>`` would run it (``runpy`` with
``__name__ == "__main__"`` and ``sys.argv`` set), so that it shares the process's imports and JAX's
compiled primitives instead of starting a new interpreter. examples/sharded_training.py needs 8
simulated devices: tests/test_sharding.py runs it in a subprocess.
"""

import contextlib
import io
import math
import pathlib
import re
import runpy
import sys

import pytest
from helpers import EXAMPLES, ROOT


def _run(script: str, *args: str) -> str:
    path = EXAMPLES / script
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(sys, "argv", [str(path), *args])
        mp.chdir(ROOT)
        runpy.run_path(str(path), run_name="__main__")
    return out.getvalue()


def test_every_example_is_run_by_a_test():
    here = pathlib.Path(__file__).resolve().parent
    tests = (here / "test_examples.py").read_text() + (here / "test_sharding.py").read_text()
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts
    for name in scripts:
        assert f'"{name}"' in tests, f"examples/{name} is run by no test"


def test_pytorch_l1_regression_prox_gives_exact_zeros_and_subgradient_does_not():
    out = _run("pytorch_l1_regression.py")
    zeros = dict(re.findall(r"^(.+?)\s+loss=.*exact zeros=(\d+)/10", out, re.M))
    assert int(zeros["prox_l1"]) >= 5  # the five zero coefficients of w_true (and maybe the small 6th)
    assert int(zeros["add_l1"]) == 0


def test_pytorch_l2_regression_weight_decay_equals_half_squared_norm_in_loss():
    out = _run("pytorch_l2_regression.py")
    diff = float(re.search(r"max \|diff\| = (\S+)", out).group(1))
    assert diff < 1e-6


def test_constraints_and_mixup_example_runs():
    # 150 steps of the default 400: both runs pass 0.9 test accuracy and the constraint is active
    # (the plain run's largest column norm is past the radius) from about 100 steps on.
    out = _run("constraints_and_mixup.py", "--steps", "150")
    rows = re.findall(r"test accuracy (\S+)\s+largest column norm (\S+)", out)
    assert len(rows) == 2
    (acc_plain, norm_plain), (acc_reg, norm_reg) = ((float(a), float(n)) for a, n in rows)
    assert acc_plain > 0.9 and acc_reg > 0.9  # digits is easy: both recipes must learn it
    assert norm_plain > 1.5 + 0.1  # unconstrained, some unit's weights leave the ball
    # Constrained, they stay on its surface: the script prints 3 decimals, so "1.500" is within 5e-4
    # of the radius (the script itself asserts the upper bound exactly).
    assert abs(norm_reg - 1.5) <= 5e-4


def test_feedforward_dropout_example_runs():
    # 5 epochs instead of 60: the script's own checks (each unit's Monte Carlo mean of the
    # training-mode activation within 5 standard errors of the test-mode activation, test
    # accuracies of the two conventions within 0.05) hold from the first epochs on.
    out = _run("feedforward_dropout.py", "--epochs", "5")
    assert "Adam 1e-3, 5 epochs" in out
    rows = dict(
        (mode, [float(v) for v in values])
        for mode, *values in re.findall(
            r"^(inverted|classic)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)$", out, re.M
        )
    )
    assert set(rows) == {"inverted", "classic"}
    for mode, (acc_train, acc_test, train_act, test_act, zmax, dropped) in rows.items():
        assert acc_test > 0.15, (mode, acc_test)  # 10 classes: above guessing after 5 epochs
        assert 0.0 <= acc_train <= 1.0
        assert zmax < 5, (mode, zmax)
        assert abs(train_act - test_act) < 0.01 * abs(test_act) + 1e-3, (mode, train_act, test_act)
        # The layer drops: the means above would agree for a layer that drops nothing. (The script
        # asserts 5 standard errors, about 0.06 for the ~1600 active units of its 64 probe inputs.)
        assert abs(dropped - 0.5) < 0.1, (mode, dropped)
    assert abs(rows["inverted"][1] - rows["classic"][1]) < 0.05
    assert "Both conventions give the same expected activation at test time" in out


def test_transformer_weight_decay_example():
    stdout = _run("transformer_weight_decay.py", "--steps", "4")
    decayed = {
        name: set(paths.split(", "))
        for name, paths in re.findall(r"^(weights_only|decayable) decays: (.*)$", stdout, re.M)
    }
    kernels = {
        f"blocks/{m}/kernel" for m in ("attn/query", "attn/key", "attn/value", "attn/out", "up", "down")
    }
    assert decayed["decayable"] == kernels | {"head/kernel"}
    assert {"blocks/ln1/scale", "blocks/attn/query/bias", "embed/embedding", "pos_embedding"} <= decayed[
        "weights_only"
    ]
    losses = [float(v) for v in re.findall(r"validation loss (\S+)", stdout)]
    assert len(losses) == 6 and all(0 < v < 10 for v in losses)


def _gan(*args: str) -> list[tuple[float, float]]:
    stdout = _run("gan_gradient_penalty.py", "--batch", "128", *args)
    assert "mean distance of generated samples to the nearest mode" in stdout
    rows = re.findall(r"penalty (\S+)  grad norm at \D+ (\S+)", stdout)
    return [(float(p), float(g)) for p, g in rows]


def test_wgan_gp_pulls_the_critic_gradient_norm_towards_one():
    rows = _gan("--penalty", "wgan-gp", "--steps", "40", "--log-every", "20", "--hidden", "32")
    assert len(rows) == 3 and all(math.isfinite(p) and math.isfinite(g) for p, g in rows)
    assert abs(rows[-1][1] - 1) < 0.25  # the critic's gradient norm at interpolates, after 200 critic steps


def test_r1_pulls_the_critic_gradient_at_the_data_towards_zero():
    rows = _gan("--penalty", "r1", "--steps", "60", "--log-every", "30", "--hidden", "32")
    assert len(rows) == 3 and all(math.isfinite(p) and math.isfinite(g) for p, g in rows)
    assert rows[-1][1] < 0.5 * rows[0][1]


def test_digits_example_uncertainty_is_higher_on_mistakes():
    stdout = _run("mc_dropout_digits.py", "--epochs", "8", "--samples", "16")
    values = dict(re.findall(r"^(\w[\w ]*?): (\S+)", stdout, re.M))
    assert float(values["test accuracy"]) > 0.85
    # The passes differ (dropout is on in them): without it the entropies would still order this way.
    assert float(values["probability std over passes"]) > 0.01
    assert float(values["entropy misclassified"]) > float(values["entropy correct"])


def test_pruning_example_reaches_the_prescribed_sparsity():
    out = _run("pruning.py", "--steps", "200")
    rows = dict(re.findall(r"^(dense|90% gradual|2:4)\s+(test accuracy .*)$", out, re.M))
    assert set(rows) == {"dense", "90% gradual", "2:4"}
    for name, want in [("dense", "0.0%"), ("90% gradual", "90.0%"), ("2:4", "50.0%")]:
        acc = float(re.search(r"test accuracy (\S+)", rows[name]).group(1))
        assert acc > 0.8, (name, acc)
        assert re.findall(r"layer\d (\S+)", rows[name]) == [want] * 3, rows[name]
