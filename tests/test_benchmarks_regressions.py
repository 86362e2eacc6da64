"""``python -m benchmarks --json PATH``: a path that cannot be written is reported before any case runs,
and results are not lost when writing fails at the end."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env(jax_platforms: str) -> dict[str, str]:
    """This process's environment, with ``JAX_PLATFORMS`` set and the repository on ``PYTHONPATH``."""
    return {
        **os.environ,
        "JAX_PLATFORMS": jax_platforms,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=cwd,
        env=_env(os.environ.get("JAX_PLATFORMS", "cpu")),
        capture_output=True,
        text=True,
        timeout=600,
    )


@contextlib.contextmanager
def _benchmarks_main():
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import __main__ as bench_main

        yield bench_main
    finally:
        sys.path.remove(str(ROOT))


@pytest.mark.parametrize(
    ("where", "in_process"), [("missing-folder", True), ("folder", True), ("file-as-folder", False)]
)
def test_unwritable_json_path_is_a_usage_error_before_any_case(tmp_path, capsys, where, in_process):
    (tmp_path / "a_file").write_text("not a folder")
    path = {
        "missing-folder": tmp_path / "nonexistent" / "dir" / "x.json",
        "folder": tmp_path,
        "file-as-folder": tmp_path / "a_file" / "x.json",
    }[where]
    # --filter selects one quick case, so that an unfixed run ends soon (and then fails). One path
    # runs the command in a subprocess (exit status, stderr); the others call main() in this process.
    args = ["--quick", "--repeats", "1", "--filter", "sgd + prox_l1", "--json", str(path)]
    if in_process:
        with _benchmarks_main() as bench_main:
            code = bench_main.main(args)
        out, err = capsys.readouterr()
    else:
        proc = _run(*args)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    assert code == 2, (code, err[-2000:])
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert "--json" in err and str(path) in err
    assert out == ""  # no table: nothing ran
    assert not path.is_file()
    assert where != "missing-folder" or not (tmp_path / "nonexistent").exists()


def test_results_survive_a_folder_that_vanishes_during_the_run(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "results.json"
    with _benchmarks_main() as bench_main:
        # A stand-in suite with no cases that removes the output folder while "running".
        vanish = types.SimpleNamespace(cases=lambda cfg: shutil.rmtree(folder) or [])
        monkeypatch.setattr(bench_main, "MODULES", (vanish,))
        code = bench_main.main(["--quick", "--json", str(target)])
    err = capsys.readouterr().err
    assert code == 2
    saved = [word.strip("'\".,;:") for word in err.split() if word.strip("'\".,;:").endswith(".json")]
    kept = [p for p in saved if Path(p).is_file()]
    assert kept, err
    doc = json.loads(Path(kept[0]).read_text())
    assert doc["results"] == [] and doc["errors"] == [] and "backend" in doc
    os.unlink(kept[0])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux peak-RSS reset")
def test_eager_dropout_peak_memory_is_within_twice_x_times_2():
    # benchmarks.memory measures each case in a fresh process (its hidden --child mode, which the
    # command runs once per case): the growth of the peak RSS during one call, after a warm-up
    # call. Only the two cases compared here run. On 2**25 float32 elements x * 2 under jit adds
    # its 128 MiB output; an eager dropout call that writes its random words, mask, scaled input
    # and zeros as separate arrays adds over 3x that. Bound: 2x (the output alone is 1x).
    env = _env("cpu")
    added = {}
    for case in ("x * 2 (jit)", "dropout (eager)"):
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.memory", "--child", case, "--log2-size", "25"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        assert row["case"] == case and row["reset"], row
        added[case] = row["added_mib"]
    assert 100 < added["x * 2 (jit)"] < 200, added  # its 128 MiB output
    assert added["dropout (eager)"] <= 2 * added["x * 2 (jit)"], added
