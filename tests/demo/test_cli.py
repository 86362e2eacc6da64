"""The ``jaxreg demo`` console script, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

import jaxreg
from jaxreg.demo import _cli

KEYS = {"config", "train_accuracy", "test_accuracy", "gap", "final_loss", "zero_fraction", "seconds"}
CONFIGS = ["none", "l1-prox", "dropout"]
REPO = Path(jaxreg.__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-m", "jaxreg.demo._cli", "demo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    args = ["--epochs", "4", "--seed", "3", "--train-size", "200", "--configs", ",".join(CONFIGS)]
    return tmp, run_cli(*args, "--out", "out", "--json", "first.json", cwd=tmp)


def test_runs_and_prints_table(short_run):
    _, proc = short_run
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    header = ("config", "train acc", "test acc", "gap", "final loss", "zeros", "seconds")
    lines = proc.stdout.splitlines()
    assert any(all(h in line for h in header) for line in lines), proc.stdout
    for name in CONFIGS:  # one row per configuration, starting with its name
        assert any(line.split() and line.split()[0] == name for line in lines), (name, proc.stdout)
    assert "200 training digits (50 labels random), 1597 test digits" in proc.stdout


def test_json_keys_and_ranges(short_run):
    tmp, proc = short_run
    assert proc.returncode == 0, proc.stderr
    records = json.loads((tmp / "first.json").read_text())
    assert json.loads((tmp / "out" / "results.json").read_text()) == records
    assert [r["config"] for r in records] == CONFIGS
    for r in records:
        assert set(r) == KEYS
        for key in ("train_accuracy", "test_accuracy", "zero_fraction"):
            assert 0.0 <= r[key] <= 1.0, (key, r)
        assert r["gap"] == pytest.approx(r["train_accuracy"] - r["test_accuracy"], abs=1e-12)
        assert math.isfinite(r["final_loss"]) and r["final_loss"] > 0.0
        assert r["seconds"] > 0.0
        # accuracies are counts over 200 training and 1597 test digits
        assert r["train_accuracy"] * 200 == pytest.approx(round(r["train_accuracy"] * 200), abs=1e-9)
        assert r["test_accuracy"] * 1597 == pytest.approx(round(r["test_accuracy"] * 1597), abs=1e-9)
    by_name = {r["config"]: r for r in records}
    assert by_name["none"]["zero_fraction"] == 0.0  # a Gaussian-initialized kernel has no exact zeros
    assert by_name["l1-prox"]["zero_fraction"] > 0.0  # soft-thresholding lands on exact zeros
    # four epochs already learn something: far above the 10% of guessing
    assert by_name["none"]["test_accuracy"] > 0.3


def test_deterministic_for_a_seed(short_run, tmp_path):
    tmp, proc = short_run
    assert proc.returncode == 0, proc.stderr
    # the same seed again, in this process, for the configuration with noise in training (time)
    from jaxreg.demo import _train as _demo

    data = _demo.load_data(3, 200, _demo.LABEL_NOISE)
    *_, again = _demo.train("dropout", data, 3, 4)
    first = {r["config"]: r for r in json.loads((tmp / "first.json").read_text())}["dropout"]
    second = json.loads(json.dumps(again.as_json()))
    first.pop("seconds"), second.pop("seconds")
    assert first == second  # bit-identical: same split, labels, init, batches and masks
    assert _cli.main(["demo", "--epochs", "1", "--configs", "none", "--no-plot", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # --no-plot: no figure


def test_figure_is_a_png(short_run):
    tmp, proc = short_run
    assert proc.returncode == 0, proc.stderr
    path = tmp / "out" / "demo.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] > 300 and image.shape[1] > 400
    assert image.std() > 0.05  # not a blank canvas


def _assert_usage_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert needle in proc.stderr
    assert proc.stdout == ""


def test_bad_input_exits_2_subprocess(tmp_path):
    # One usage error as a user meets it, from the console script's process; the others in-process below.
    (tmp_path / "a_file").write_text("not a folder")
    _assert_usage_error(run_cli("--out", "a_file/sub", cwd=tmp_path), "a_file")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--configs", "none,bogus"], "bogus"),
        (["--epochs", "0"], "--epochs"),
        (["--epochs", "-5"], "--epochs"),
        (["--epochs", "three"], "--epochs"),
        (["--configs", ""], "--configs"),
        (["--label-noise", "1.5"], "--label-noise"),
        (["--train-size", "1790"], "--train-size"),
        (["--json", "a_file/x.json"], "--json"),
        (["--json", "."], "--json"),
        (["--nonsense"], "--nonsense"),
    ],
)
def test_bad_input_exits_2_in_process(tmp_path, monkeypatch, capsys, args, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    assert _cli.main(["demo", "--out", str(tmp_path / "out"), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert needle in captured.err


def _assert_the_claim(records: list[dict]) -> None:
    """Issue 6: l2, l1-prox and dropout each end with a higher test accuracy and a smaller gap than none."""
    by_name = {r["config"]: r for r in records}
    none = by_name["none"]
    for name in ("l2", "l1-prox", "dropout"):
        assert by_name[name]["test_accuracy"] > none["test_accuracy"], (name, by_name[name], none)
        assert by_name[name]["gap"] < none["gap"], (name, by_name[name], none)


@pytest.mark.skipif(
    not os.environ.get("JAXREG_SLOW_TESTS"),
    reason="the full default demo (~20 s of CPU); set JAXREG_SLOW_TESTS=1",
)
def test_default_run_shows_the_claim(tmp_path):
    proc = run_cli("--no-plot", "--out", "out", "--json", "all.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _assert_the_claim(json.loads((tmp_path / "all.json").read_text()))


def test_one_compilation_per_configuration():
    """The epoch is one jitted call; later epochs reuse the first compilation."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxreg.demo import _train as _demo

    data = _demo.load_data(0, 60, 0.25)
    graphdef, params = nnx.split(_demo.MLP(8, rngs=nnx.Rngs(params=0)))
    tx = _demo.CONFIGS["l1-prox"].optimizer(10)
    epoch = _demo._epoch_fn(graphdef, tx, _demo.CONFIGS["dropout"].noise, 30)
    state = (params, tx.init(params))
    keys = jax.random.split(jax.random.key(0))
    for i in range(5):
        *state, loss, correct = epoch(*state, i, *keys, *(jnp.asarray(a) for a in data[:4]))
        assert 0 <= int(correct) <= len(data.y_test) and bool(jnp.isfinite(loss))
    assert epoch._cache_size() == 1


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"jaxreg {jaxreg.__version__}"


def test_demo_without_the_demo_extra_names_the_install_command(monkeypatch, capsys):
    real_find_spec = _cli.importlib.util.find_spec
    monkeypatch.setattr(
        _cli.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sklearn" else real_find_spec(name, *a),
    )
    assert _cli.main(["demo", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "pip install 'jaxreg[demo]'" in err[0] and "sklearn" in err[0]
