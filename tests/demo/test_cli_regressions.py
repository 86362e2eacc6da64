"""``jaxreg demo`` command line: seeds beyond 64 bits, empty configuration names, the --json
probe, and the header line printed once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import jaxreg
from jaxreg.demo import _cli

REPO = Path(jaxreg.__file__).resolve().parents[1]
FAST = ["--epochs", "1", "--configs", "none", "--train-size", "60", "--no-plot"]


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
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


def _assert_one_line_usage_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2, (code, err)
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert out == ""
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.mark.parametrize(("seed", "in_process"), [(2**63, True), (2**64, True), (10**30, False)])
def test_seed_beyond_the_key_range_is_a_usage_error(tmp_path, capsys, seed, in_process):
    # jax.random.key takes seeds in [0, 2**63 - 1] (a C long). One seed runs the CLI as a user runs
    # it, in a subprocess (exit status, stderr); the others call its main() in this process.
    args = ["--seed", str(seed), *FAST, "--out", str(tmp_path / "out")]
    if in_process:
        code = _cli.main(["demo", *args])
        out, err = capsys.readouterr()
    else:
        proc = _run_cli(*args, cwd=tmp_path)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    _assert_one_line_usage_error(code, out, err, "--seed", str(seed))
    assert not (tmp_path / "out" / "results.json").exists()


def test_largest_seed_runs(tmp_path, capsys):
    assert _cli.main(["demo", "--seed", str(2**63 - 1), *FAST, "--out", str(tmp_path)]) == 0
    assert f"seed {2**63 - 1}" in capsys.readouterr().out


@pytest.mark.parametrize("configs", ["none,,l2", "none,", ",none", "none, ,l2"])
def test_empty_configuration_names_are_rejected(tmp_path, capsys, configs):
    args = ["--epochs", "1", "--train-size", "60", "--no-plot", "--configs", configs]
    code = _cli.main(["demo", *args, "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    _assert_one_line_usage_error(code, captured.out, captured.err, "--configs", "empty")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")
def test_json_in_an_existing_folder_that_refuses_files_names_the_file(tmp_path, capsys):
    target = "/proc/x.json"
    # Oracle: the reason the operating system gives for creating that file.
    with pytest.raises(OSError) as info:
        open(target, "a").close()
    code = _cli.main(["demo", "--json", target, "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    _assert_one_line_usage_error(code, captured.out, captured.err, repr(target), info.value.strerror)
    assert "folder of" not in captured.err


def test_json_probe_keeps_an_existing_file_and_leaves_no_new_one(tmp_path):
    existing = tmp_path / "existing.json"
    existing.write_text("keep me")
    args = _cli._parse(["demo", "--json", str(existing), "--out", str(tmp_path / "out")])
    assert args.json_path == existing and existing.read_text() == "keep me"
    new = tmp_path / "sub" / "new.json"
    args = _cli._parse(["demo", "--json", str(new), "--out", str(tmp_path / "out")])
    assert args.json_path == new and not new.exists()


def test_header_line_is_printed_once(tmp_path, capsys):
    assert _cli.main(["demo", *FAST, "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    both = captured.out + captured.err
    assert both.count("training digits") == 1, both
    assert "60 training digits" in captured.out  # with the table, on stdout
