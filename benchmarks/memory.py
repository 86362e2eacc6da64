"""Peak memory of one call of the dropout family, eagerly and under ``jit``, against ``x * 2``.

Usage: ``python -m benchmarks.memory [--log2-size 26] [--filter SUBSTRING] [--json PATH]``.

Each case runs in its own subprocess on a float32 array of ``2**log2_size``
elements (256 rows) (CPU by default, where device buffers are host memory): the input is
created, the call is made once (compilation, warm-up), its result dropped, the
process's peak resident set size reset (``/proc/self/clear_refs``, Linux),
then the call is made again. Reported: the growth of the peak RSS (``VmHWM``) during that
second call, in MiB, and as a multiple of the same figure for ``x * 2`` under
``jit`` (whose output alone is ``4 * 2**log2_size`` bytes). Where the peak
cannot be reset, the warm-up runs on a small input instead, and the figure
includes the compilation of the full-size call (flagged ``reset: false``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from typing import Any

RATE = 0.5
BASELINE = "x * 2 (jit)"


def _cases() -> dict[str, Callable[[Any, Any], Any]]:
    """Case name -> function of ``(key, x)``; imports JAX, so only called in the child."""
    import flax.linen as nn
    import jax

    import jaxreg

    def flax_dropout(k, x):
        return nn.Dropout(RATE, deterministic=False).apply({}, x, rng=k)

    def op(name: str, **kw: Any) -> Callable[[Any, Any], Any]:
        fn = getattr(jaxreg, name)
        return lambda k, x: fn(k, x, RATE, **kw)

    eager = {
        "dropout": op("dropout"),
        "dropout sampler=jax": op("dropout", sampler="jax"),
        "dropout mode=classic": op("dropout", mode="classic"),
        "drop_path": op("drop_path"),
        "gaussian_dropout": op("gaussian_dropout"),
        "gaussian_noise": op("gaussian_noise"),
        "alpha_dropout": op("alpha_dropout"),
        "flax.linen.Dropout": flax_dropout,
    }
    cases: dict[str, Callable[[Any, Any], Any]] = {BASELINE: jax.jit(lambda k, x: x * 2)}
    for name in ("dropout", "dropout sampler=jax", "flax.linen.Dropout"):
        cases[f"{name} (jit)"] = jax.jit(eager[name])
    cases.update({f"{name} (eager)": fn for name, fn in eager.items()})
    return cases


CASE_NAMES = (
    BASELINE,
    "dropout (jit)",
    "dropout sampler=jax (jit)",
    "flax.linen.Dropout (jit)",
    "dropout (eager)",
    "dropout sampler=jax (eager)",
    "dropout mode=classic (eager)",
    "drop_path (eager)",
    "gaussian_dropout (eager)",
    "gaussian_noise (eager)",
    "alpha_dropout (eager)",
    "flax.linen.Dropout (eager)",
)


def _maxrss_kib() -> int:
    """The peak RSS in KiB: ``VmHWM`` of ``/proc/self/status`` on Linux, else ``ru_maxrss``.

    ``/proc/self/clear_refs`` resets ``VmHWM``; ``getrusage`` reports the larger of it and a
    per-process maximum that the kernel also updates on its own (a thread's exit can fold the
    peak of that moment into it), so after a reset ``ru_maxrss`` may still show the warm-up's
    peak, and a call's growth would read 0.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak RSS (VmHWM)
        return True
    except OSError:
        return False


def child(case: str, log2_size: int) -> dict[str, Any]:
    """Measures one case in this process; returns its row."""
    import jax
    import numpy as np

    fn = _cases()[case]
    key = jax.random.key(0)
    shape = (256, 2 ** (log2_size - 8))  # 256 examples, for drop_path
    x = jax.device_put(np.random.default_rng(0).standard_normal(shape, dtype=np.float32))
    jax.block_until_ready(x)
    can_reset = sys.platform.startswith("linux") and os.path.exists("/proc/self/clear_refs")
    warm = x if can_reset else x[:, :64]
    jax.block_until_ready(fn(key, warm))
    gc.collect()
    reset = _reset_peak() if can_reset else False
    before = _maxrss_kib()
    out = jax.block_until_ready(fn(key, x))
    peak = _maxrss_kib()
    del out
    return {
        "case": case,
        "log2_size": log2_size,
        "added_mib": (peak - before) / 1024,
        "input_mib": x.nbytes / 2**20,
        "reset": reset,
        "backend": jax.default_backend(),
    }


def run(case: str, log2_size: int) -> dict[str, Any]:
    """Runs one case in a fresh subprocess and returns its row."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", "--child", case, "--log2-size", str(log2_size)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")},
    )
    if proc.returncode != 0:
        return {"case": case, "log2_size": log2_size, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--log2-size", type=int, default=26, help="log2 of the number of elements, >= 14 (default 26)"
    )
    p.add_argument("--filter", metavar="SUBSTRING", help="run only the cases whose name contains it")
    p.add_argument("--json", metavar="PATH", help="also write the rows to PATH")
    p.add_argument("--child", metavar="CASE", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.log2_size < 14:
        p.error(f"--log2-size must be >= 14, got {args.log2_size}")
    if args.child is not None:
        print(json.dumps(child(args.child, args.log2_size)))
        return 0
    names = [n for n in CASE_NAMES if n == BASELINE or not args.filter or args.filter in n]
    rows = []
    base = None
    for name in names:
        row = run(name, args.log2_size)
        if name == BASELINE and "added_mib" in row:
            base = row["added_mib"]
        if base and "added_mib" in row:
            row["vs_x_times_2"] = row["added_mib"] / base
        rows.append(row)
        if "error" in row:
            print(f"{name:32s} error: {row['error']}", flush=True)
        else:
            ratio = f"{row['vs_x_times_2']:5.2f}x" if "vs_x_times_2" in row else ""
            flag = "" if row["reset"] else "  (peak not reset: includes compilation)"
            print(f"{name:32s} {row['added_mib']:8.0f} MiB {ratio}{flag}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
            f.write("\n")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
