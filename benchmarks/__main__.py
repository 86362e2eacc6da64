"""Command line: ``python -m benchmarks [--quick] [--json PATH] [--filter SUBSTRING] [--repeats N]``.

``--json PATH`` is checked before any case runs (one line on stderr, status 2,
if the file cannot be written); if writing fails at the end all the same, the
results go to a temporary file, named on stderr (status 2).

An interrupt (Ctrl-C, SIGINT or SIGTERM, e.g. from ``timeout``) stops the run
at once, dropping the case in progress: the JSON (written first, further
interrupts ignored meanwhile) and the table hold the cases measured before it,
the JSON says ``"interrupted": true``, and the status is 130.

Run as a command, every program is compiled afresh: jax's persistent
compilation cache is off in the process (``JAX_COMPILATION_CACHE_DIR`` is
ignored), so that the compile case times cold compilations.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import math
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import jax
from rich.console import Console
from rich.table import Table

from benchmarks import (
    _harness,
    cases_attention,
    cases_compile,
    cases_depth,
    cases_dropout,
    cases_loss,
    cases_optim,
)

MODULES = (cases_dropout, cases_attention, cases_depth, cases_optim, cases_compile, cases_loss)
FULL_SIZES = tuple(2**k for k in (16, 18, 20, 22, 24))
QUICK_SIZES = (2**16,)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="jaxreg against Flax, optax, jax.random references and the memory-copy limit.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats: a smoke test")
    p.add_argument("--json", metavar="PATH", help="write the results to PATH as JSON")
    p.add_argument("--filter", metavar="SUBSTRING", help="run only cases whose 'group/name' contains it")
    p.add_argument(
        "--repeats",
        type=int,
        metavar="N",
        help="timing samples per function (default 5, quick 3; twice as many for attention and optimizer steps)",
    )
    p.add_argument(
        "--sizes",
        metavar="K,K,...",
        help="log2 of the dropout-family sizes (default 16,18,20,22,24; quick 16)",
    )
    args = p.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.sizes:
        try:
            exponents = [int(k) for k in args.sizes.split(",")]
        except ValueError:
            p.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
        if not all(14 <= k <= 30 for k in exponents):
            p.error(f"--sizes: each log2 size must be in [14, 30], got {args.sizes!r}")
        args.sizes = tuple(2**k for k in exponents)
    return args


def json_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be written, or ``None``: checked before any case runs.

    Opens the file itself for appending (no folder is created); a file that
    did not exist is removed again, an existing one is left as it was.
    """
    if os.path.isdir(path):
        return "it is a folder"
    existed = os.path.exists(path)
    try:
        with open(path, "a"):
            pass
        if not existed:
            os.unlink(path)
    except OSError as e:
        return e.strerror or str(e)
    return None


def write_json(path: str, doc: dict[str, Any]) -> str | None:
    """Writes ``doc`` to ``path``; if that fails, to a temporary file. Returns the error line, or ``None``."""
    text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    try:  # a temporary file beside it, then renamed: an existing file is never left half written
        fd, tmp = tempfile.mkstemp(prefix=".benchmarks-", suffix=".json", dir=os.path.dirname(path) or ".")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return None
    except OSError as e:
        reason = e.strerror or str(e)
    fd, fallback = tempfile.mkstemp(prefix="benchmarks-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return (
        f"python -m benchmarks: error: cannot write --json {path!r}: {reason}; the results are in {fallback}"
    )


def make_config(args: argparse.Namespace) -> _harness.Config:
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    repeats = args.repeats or (3 if args.quick else 5)
    return _harness.Config(
        quick=args.quick, repeats=repeats, sizes=sizes, min_sample_s=0.002 if args.quick else 0.01
    )


def fmt_size(n: int) -> str:
    k = int(math.log2(n)) if n > 0 else 0
    if 2**k == n and k >= 10:
        return f"2^{k}"
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}g}" if abs(x) < 10**digits else f"{x:.0f}"


def table(env: dict[str, Any], rows: list[dict[str, Any]]) -> Table:
    v = env["versions"]
    t = Table(
        title=f"jaxreg benchmarks: {env['backend']}, {env['device']}",
        caption=(
            f"jax {v['jax']}, flax {v['flax']}, optax {v['optax']}, jaxreg {v['jaxreg']}. "
            "Medians after compilation, interleaved with the baseline; ratio = baseline / jaxreg "
            "(> 1: jaxreg faster)."
        ),
    )
    for col, justify in (
        ("case", "left"),
        ("size", "right"),
        ("jaxreg ms", "right"),
        ("IQR", "right"),
        ("baseline", "left"),
        ("baseline ms", "right"),
        ("IQR", "right"),
        ("ratio", "right"),
        ("GB/s", "right"),
        ("target", "left"),
    ):
        t.add_column(col, justify=justify)
    prev = None
    for r in rows:
        same = (r["name"], r["size"]) == prev
        prev = (r["name"], r["size"])
        target = ""
        if "target" in r:
            target = ("[green]met[/] " if r["target_met"] else "[red]MISSED[/] ") + r["target"]
        if "compilations" in r:
            target += f" ({r['compilations']} compilation(s))"
        t.add_row(
            "" if same else r["name"],
            "" if same else fmt_size(r["size"]),
            "" if same else fmt(r["jaxreg_ms"]),
            "" if same else fmt(r.get("jaxreg_iqr_ms"), 2),
            r["baseline"],
            fmt(r["baseline_ms"]),
            fmt(r.get("baseline_iqr_ms"), 2),
            fmt(r["ratio"]),
            "" if same else fmt(r["gbps"]),
            target,
        )
    return t


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run_cases(
    args: argparse.Namespace,
    cfg: _harness.Config,
    console: Console,
    rows: list[dict[str, Any]],
    skipped: list[dict[str, str]],
    errors: list[dict[str, str]],
) -> None:
    """Runs the selected cases, appending to ``rows``, ``skipped`` and ``errors`` as each ends."""
    for module in MODULES:
        for case in module.cases(cfg):
            if args.filter and args.filter.lower() not in case.key.lower():
                continue
            t0 = time.perf_counter()
            try:
                new, reason = _harness.run_case(case, cfg)
            except Exception as e:  # a broken op must not hide the other cases
                errors.append({"name": case.name, "size": case.size, "error": f"{type(e).__name__}: {e}"})
                console.print(f"[red]error[/] {case.name} {fmt_size(case.size)}: {type(e).__name__}: {e}")
                traceback.print_exc()
                continue
            if reason is not None:
                skipped.append({"name": case.name, "size": case.size, "reason": reason})
                console.print(f"[yellow]skipped[/] {case.name} {fmt_size(case.size)}: {reason}")
                continue
            rows.extend(new)
            summary = ", ".join(f"{r['baseline']} {r['ratio']:.2f}" for r in new)
            console.print(
                f"{case.name} {fmt_size(case.size)}: jaxreg {fmt(new[0]['jaxreg_ms'])} ms; "
                f"ratios {summary} ({time.perf_counter() - t0:.1f} s)"
            )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.json and (problem := json_path_problem(args.json)) is not None:
        print(f"python -m benchmarks: error: cannot write --json {args.json!r}: {problem}", file=sys.stderr)
        return 2
    cfg = make_config(args)
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
    out_console = Console(width=None if sys.stdout.isatty() else 200)
    start = time.perf_counter()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    env = _harness.environment()
    console.print(
        f"[bold]backend[/] {env['backend']}  [bold]device[/] {env['device']}  "
        + "  ".join(f"{k} {v}" for k, v in env["versions"].items())
    )
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    errors: list[dict[str, str]] = []
    interrupted = False
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main else None
    try:
        _run_cases(args, cfg, console, rows, skipped, errors)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    duration = time.perf_counter() - start
    # The results are saved before anything more is printed, with further interrupts ignored: after
    # a Ctrl-C the reader of a pipe (``| tee``) may be gone, and printing would end the process.
    json_error = None
    if args.json:
        doc = {
            **env,
            "command": "python -m benchmarks"
            + "".join(" " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
            "quick": cfg.quick,
            "repeats": cfg.repeats,
            "sizes": list(cfg.sizes),
            "filter": args.filter,
            "started_utc": started,
            "duration_s": duration,
            "results": rows,
            "skipped": skipped,
            "errors": errors,
            "interrupted": interrupted,
        }
        with _interrupts_ignored(in_main):
            json_error = write_json(args.json, doc)
    try:
        if interrupted:
            console.print(f"[yellow]interrupted[/]: {len(rows)} rows measured before it")
        elif not rows and not skipped and not errors:
            console.print(f"[yellow]no case matches --filter {args.filter!r}[/]")
        out_console.print(table(env, rows))
        if skipped:
            out_console.print(
                f"skipped {len(skipped)} case(s): " + "; ".join(sorted({s["reason"] for s in skipped}))
            )
        out_console.print(f"{len(rows)} rows in {duration:.0f} s")
        if args.json and json_error is None:
            out_console.print(f"wrote {args.json}")
    except (BrokenPipeError, SystemExit):  # rich exits on a closed pipe; the results are saved
        pass
    if json_error is not None:
        print(json_error, file=sys.stderr)
        return 2
    if interrupted:
        return 130
    return 1 if errors else 0


@contextlib.contextmanager
def _interrupts_ignored(active: bool) -> Iterator[None]:
    """SIGINT and SIGTERM ignored inside (in the main thread only, where handlers can be set)."""
    if not active:
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _command_process() -> None:
    """What only the command sets, for its whole process (not ``main()``, which tests call)."""
    # Before anything compiles: jax decides once per process whether it uses the cache.
    jax.config.update("jax_enable_compilation_cache", False)
    # The objects alive now (jax, flax and their modules) live as long as the process: the
    # collections before each timed case need not walk them again and again.
    gc.freeze()


if __name__ == "__main__":
    _command_process()
    sys.exit(main())
