"""Smoke test of the benchmark suite (issue 5): the JSON it writes has the documented shape.

Runs ``python -m benchmarks --quick`` in a subprocess from the repository root
and checks types, required keys and ``ratio == baseline_ms / jaxreg_ms``. No
assertion on speed: timings on a shared machine are not testable.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_device_script_refuses_a_cpu, benchmarks_module

import jaxreg

ROOT = Path(__file__).resolve().parents[1]
DROPOUT_OPS = (
    "dropout",
    "spatial_dropout",
    "gaussian_dropout",
    "gaussian_noise",
    "alpha_dropout",
    "drop_path",
    "dropblock",
    "dropconnect",
)
REQUIRED = {
    "name": str,
    "size": int,
    "jaxreg_ms": float,
    "baseline": str,
    "baseline_ms": float,
    "ratio": float,
}


def _run(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "results.json"
    # A persistent compilation cache of its own, which the run must leave empty (it compiles cold).
    cache = tmp_path / "xla-cache"
    cache.mkdir()
    env = {
        **os.environ,
        "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"),
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args, "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("bench")
    return tmp, _run(tmp, "--quick", "--repeats", "2")


@pytest.fixture(scope="module")
def quick(quick_run) -> dict:
    return quick_run[1]


def test_header(quick):
    assert isinstance(quick["backend"], str) and quick["backend"]
    assert isinstance(quick["device"], str) and quick["device"]
    versions = quick["versions"]
    for lib in ("jax", "flax", "optax", "jaxreg"):
        assert isinstance(versions[lib], str) and versions[lib]
    assert versions["jaxreg"] == jaxreg.__version__
    assert quick["errors"] == []


def test_compiles_cold_with_a_persistent_cache_directory_set(quick_run):
    # jax would cache every program of the run in JAX_COMPILATION_CACHE_DIR; the benchmarks turn
    # the cache off, so that the compile case times real compilations, not reads from the cache.
    tmp, _ = quick_run
    assert list((tmp / "xla-cache").iterdir()) == []


def test_rows_have_the_documented_shape(quick):
    rows = quick["results"]
    assert rows
    for row in rows:
        for key, typ in REQUIRED.items():
            assert isinstance(row[key], typ) and not isinstance(row[key], bool), (key, row)
        assert row["size"] > 0
        assert row["jaxreg_ms"] > 0 and row["baseline_ms"] > 0
        assert math.isfinite(row["jaxreg_ms"]) and math.isfinite(row["baseline_ms"])
        assert math.isclose(row["ratio"], row["baseline_ms"] / row["jaxreg_ms"], rel_tol=1e-9)
        assert row["gbps"] is None or (isinstance(row["gbps"], float) and row["gbps"] > 0)
        assert row["repeats"] == 2 or row["group"] == "compile"


def test_every_case_ran_or_was_skipped_with_a_reason(quick):
    names = {(r["name"], r["baseline"]) for r in quick["results"]}
    skipped = {s["name"] for s in quick["skipped"]}
    for op in DROPOUT_OPS:
        for mode in ("fwd", "fwd+bwd", "fwd bf16", "fwd+bwd bf16"):
            name = f"{op} {mode}"
            if hasattr(jaxreg, op):
                assert (name, "x * 2") in names, name
            else:
                assert name in skipped, name
    groups = {r["group"] for r in quick["results"]}
    assert {"optim", "compile"} <= groups
    assert ("attention" in groups) == hasattr(jaxreg, "dropout")
    for op in ("add_l1", "add_decayed_weights", "prox_l1", "prox_group_lasso"):
        assert (f"sgd + {op} step", "optax.sgd alone") in names
        assert (f"adamw + {op} step", "optax.adamw alone") in names


def test_bfloat16_cases_time_bfloat16_against_x_times_2_in_bfloat16(quick):
    rows = [r for r in quick["results"] if r["group"] == "dropout" and r["name"].endswith(" bf16")]
    assert rows
    for row in rows:
        assert row["dtype"] == "bfloat16" and row["baseline"] == "x * 2", row
        # Half of float32's bytes: x and y (and dy, dx) at 2 bytes per element.
        assert row["gbps"] == pytest.approx(
            row["size"] * 2 * (4 if "fwd+bwd" in row["name"] else 2) / row["jaxreg_ms"] / 1e6
        )


def test_one_compilation_over_100_steps(quick):
    (row,) = [r for r in quick["results"] if r["group"] == "compile"]
    assert row["steps"] == 100
    assert row["traces"] == 1 and row["compilations"] == 1
    assert row["losses_finite"]


def test_readme_renders_from_the_json(quick, tmp_path):
    readme = benchmarks_module("readme")
    path = tmp_path / "results.json"
    path.write_text(json.dumps(quick))
    body = readme.markdown([str(path)])
    assert quick["device"] in body and "| op | mode | size |" in body
    text = f"# title\n{readme.BEGIN}\nold figures\n{readme.END}\nrest\n"
    new = readme.replace_section(text, body)
    assert "old figures" not in new and body in new and new.endswith(f"{readme.END}\nrest\n")


def test_filter_selects_cases(tmp_path):
    doc = _run(tmp_path, "--quick", "--repeats", "1", "--filter", "sgd + prox_l1")
    assert doc["results"] and all("sgd + prox_l1" in r["name"] for r in doc["results"])


def test_device_script_refuses_a_cpu_and_passes_arguments_the_suite_accepts(tmp_path):
    script = ROOT / "benchmarks" / "device_run.sh"
    assert_device_script_refuses_a_cpu(script, tmp_path)
    # The arguments it gives the suite parse, and its sizes are the documented ones.
    (line,) = [x for x in script.read_text().splitlines() if "python3 -m benchmarks" in x]
    words = line.split()
    sizes = words[words.index("--sizes") + 1]
    cli = benchmarks_module("__main__")
    args = cli.parse_args(["--sizes", sizes, "--json", str(tmp_path / "x.json")])
    assert args.sizes == tuple(2**k for k in (20, 22, 24, 26))


def test_header_on_an_accelerator_names_the_device_kind(monkeypatch):
    # --quick and the full suite share this header; on a GPU it must not read the CPU's model.
    cli, harness = benchmarks_module("__main__"), benchmarks_module("_harness")
    fake = type("Device", (), {"device_kind": "NVIDIA H200", "platform": "gpu"})()
    monkeypatch.setattr(harness.jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(harness.jax, "devices", lambda *a: [fake])
    monkeypatch.setattr(harness.jax, "device_count", lambda *a: 1)
    monkeypatch.setattr(harness, "_cpu_model", lambda: pytest.fail("read the CPU model on a GPU"))
    env = harness.environment()
    assert env["backend"] == "gpu" and env["device"] == "NVIDIA H200 (x1)"
    assert cli.make_config(cli.parse_args(["--quick"])).sizes == cli.QUICK_SIZES


_DEFAULT_SIGINT_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


@pytest.mark.parametrize(
    "how", ["SIGTERM to the process", "Ctrl-C to the group, through a tee that dies of it"]
)
def test_an_interrupt_writes_the_cases_measured_so_far(tmp_path, how):
    out = tmp_path / "partial.json"
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--repeats", "1", "--json", str(out)]
    piped = how.startswith("Ctrl-C")
    if piped:  # a terminal's Ctrl-C reaches every process of the group; the pipe closes
        cmd = [
            "bash",
            "-c",
            "set -o pipefail; " + " ".join(map(shlex.quote, cmd)) + " 2>&1 | tee /dev/null",
        ]
        # A terminal's foreground job has SIGINT at its default action. A test run started in the
        # background by a script (`pytest &`) has it ignored, and a child inherits that (Python then
        # installs no Ctrl-C handler): the launcher restores the default before it execs bash.
        cmd = [sys.executable, "-c", _DEFAULT_SIGINT_EXEC, *cmd]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines = proc.stdout if piped else proc.stderr
    assert lines is not None
    try:
        for line in lines:  # the first case's line: "... ratios ... (N s)"
            if " ratios " in line:
                break
        if piped:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stdout[-2000:] + stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True and doc["results"]
    # The suite starts with dropout; an interrupt after its first case leaves the later groups out.
    assert "dropout fwd" in {r["name"] for r in doc["results"]}
    assert not any(r["name"].startswith("compile") for r in doc["results"])
    body = benchmarks_module("readme").markdown([str(out)])
    assert "interrupted" in body


def test_readme_on_an_accelerator_states_the_dispatch_floor_and_whose_targets(quick, tmp_path):
    doc = {**quick, "backend": "gpu", "device": "NVIDIA H200 (x1)"}
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(doc))
    body = benchmarks_module("readme").markdown([str(path)])
    fastest = min(r["baseline_ms"] for r in quick["results"] if r.get("baseline_kind") == "elementwise")
    assert "`block_until_ready` round trip" in body and f"{fastest:.3g} ms" in body
    assert "Targets (set for the CPU; shown for comparison):" in body
    cpu = tmp_path / "cpu.json"
    cpu.write_text(json.dumps(quick))
    cpu_body = benchmarks_module("readme").markdown([str(cpu)])
    assert "round trip" not in cpu_body and "Targets:" in cpu_body
