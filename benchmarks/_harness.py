"""Timing harness: interleaved medians after compilation, environment, result rows."""

from __future__ import annotations

import dataclasses
import gc
import importlib.metadata
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import numpy as np

Thunk = Callable[[], Any]

# Baseline kinds, used by the README renderer to pivot the dropout table.
ELEMENTWISE = "elementwise"
FLAX = "flax"
REFERENCE = "reference"
NONE = "none"

SETTLE_MAX_S = 0.2  # longest pause between two timing samples


@dataclasses.dataclass(frozen=True)
class Config:
    """What a run measures: set from the command line."""

    quick: bool
    repeats: int
    sizes: tuple[int, ...]  # element counts of the dropout-family cases
    min_sample_s: float  # each timing sample calls the function until it lasts this long


@dataclasses.dataclass
class Baseline:
    label: str  # shown in the table and stored as the row's "baseline"
    fn: Thunk
    kind: str = ""  # ELEMENTWISE, FLAX, REFERENCE, NONE, or e.g. "optax", "penalty-in-loss", "jax-sampler"
    nbytes: int | None = None  # bytes read + written by one call, for GB/s
    target: tuple[str, Callable[[float], bool]] | None = None  # (text, test of baseline_ms / jaxreg_ms)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Bench:
    """A jaxreg function and its baselines, all zero-argument thunks over the same inputs."""

    name: str
    size: int
    group: str
    jaxreg: Thunk
    baselines: list[Baseline]
    nbytes: int | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    repeats_factor: int = 1  # more samples for cases whose overhead is small next to their noise


@dataclasses.dataclass
class Case:
    """A case, built lazily so that ``--filter`` skips building its arrays.

    ``build`` returns a ``Bench`` to time, a list of finished result rows
    (cases that time something else than calls, e.g. compilation), or a string:
    the reason the case is skipped (an op that does not exist yet).
    """

    name: str
    size: int
    group: str
    build: Callable[[], Bench | list[dict[str, Any]] | str]

    @property
    def key(self) -> str:
        return f"{self.group}/{self.name}"


@dataclasses.dataclass
class Timing:
    samples_ms: list[float]
    page_faults_per_call: float | None = None  # minor page faults of the process, per call

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def iqr(self) -> float:
        q25, q75 = np.percentile(self.samples_ms, [25, 75])
        return float(q75 - q25)

    @property
    def min(self) -> float:
        return min(self.samples_ms)


def block(out: Any) -> Any:
    return jax.block_until_ready(out)


def time_interleaved(
    fns: Sequence[Thunk], repeats: int, min_sample_s: float
) -> tuple[list[Timing], list[int]]:
    """Times ``fns`` round-robin after compiling them; returns per-call milliseconds.

    Each function is called twice first (compilation, then a warm call whose
    duration sets how many calls make one of its samples: at least
    ``min_sample_s`` long, so that fast calls are not lost in timer noise). Then
    ``repeats`` rounds, each taking one sample of every function, the starting
    function rotating from round to round (A B C, B C A, ...), so that drift in
    the machine's load hits every function alike. Every call is followed by
    ``jax.block_until_ready``. Before each sample the harness sleeps as long as
    the previous sample took (at most ``SETTLE_MAX_S``): a function's deferred
    work (freeing large temporaries, on CPU) would otherwise run during the next
    function's sample; measured here, ``flax.linen.Dropout`` on 4096 x 4096 made
    the next ``jaxreg.dropout`` about 1.4x slower without the pause. The garbage
    collector is off while timing, as in ``timeit``.
    """
    numbers = []
    for fn in fns:
        block(fn())
        t0 = time.perf_counter()
        block(fn())
        numbers.append(max(1, min(1000, math.ceil(min_sample_s / max(time.perf_counter() - t0, 1e-7)))))
    samples: list[list[float]] = [[] for _ in fns]
    faults = [0] * len(fns)
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    previous = 0.0
    try:
        for r in range(repeats):
            for i in range(len(fns)):
                j = (i + r) % len(fns)
                fn, number = fns[j], numbers[j]
                time.sleep(min(previous, SETTLE_MAX_S))
                f0 = _minor_faults()
                t0 = time.perf_counter()
                for _ in range(number):
                    block(fn())
                previous = time.perf_counter() - t0
                samples[j].append(previous / number * 1e3)
                faults[j] += _minor_faults() - f0
    finally:
        if gc_was_enabled:
            gc.enable()
    calls = [repeats * n for n in numbers]
    return [
        Timing(s, f / c if _minor_faults() >= 0 else None)
        for s, f, c in zip(samples, faults, calls, strict=True)
    ], numbers


def _minor_faults() -> int:
    """Minor page faults of this process so far (-1 where unavailable).

    On CPU a call that returns a new large array page-faults its output in: glibc
    serves allocations of 32 MB and more with a fresh mmap, so every 4 KiB page
    of the output costs a fault, which can bound the time more than memory
    bandwidth does. The count goes in the JSON to show when this happens.
    """
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    except (ImportError, OSError):
        return -1


def normal(seed: int, shape: Sequence[int], scale: float = 1.0) -> jax.Array:
    """Float32 standard normals from NumPy: inputs without an eager jax compilation per shape."""
    x = np.random.default_rng(seed).standard_normal(tuple(shape), dtype=np.float32)
    return jax.device_put(x * np.float32(scale))


def tree_nbytes(*trees: Any) -> int:
    """Bytes of the array leaves of ``trees``, PRNG keys excluded."""
    return int(
        sum(
            leaf.nbytes
            for leaf in jax.tree.leaves(trees)
            if hasattr(leaf, "nbytes") and not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)
        )
    )


def io_nbytes(fn: Callable[..., Any], *args: Any) -> int:
    """Bytes read and written by one call of a jitted ``fn``: its array inputs and outputs."""
    out = jax.eval_shape(fn, *args)
    return tree_nbytes(args) + int(
        sum(math.prod(s.shape) * np.dtype(s.dtype).itemsize for s in jax.tree.leaves(out))
    )


def gbps(nbytes: int | None, ms: float) -> float | None:
    if nbytes is None or ms <= 0:
        return None
    return nbytes / (ms * 1e-3) / 1e9


def run_bench(bench: Bench, cfg: Config) -> list[dict[str, Any]]:
    """Times a ``Bench`` and returns one row per baseline."""
    timings, numbers = time_interleaved(
        [bench.jaxreg, *(b.fn for b in bench.baselines)], cfg.repeats * bench.repeats_factor, cfg.min_sample_s
    )
    ours = timings[0]
    rows = []
    for b, t, number in zip(bench.baselines, timings[1:], numbers[1:], strict=True):
        ratio = t.median / ours.median
        row: dict[str, Any] = {
            "name": bench.name,
            "size": int(bench.size),
            "jaxreg_ms": ours.median,
            "baseline": b.label,
            "baseline_ms": t.median,
            "ratio": ratio,
            "gbps": gbps(bench.nbytes, ours.median),
            "group": bench.group,
            "baseline_kind": b.kind,
            "baseline_gbps": gbps(b.nbytes, t.median),
            "jaxreg_iqr_ms": ours.iqr,
            "baseline_iqr_ms": t.iqr,
            "jaxreg_min_ms": ours.min,
            "baseline_min_ms": t.min,
            "repeats": len(ours.samples_ms),
            "jaxreg_page_faults_per_call": ours.page_faults_per_call,
            "baseline_page_faults_per_call": t.page_faults_per_call,
            "jaxreg_calls_per_sample": numbers[0],
            "baseline_calls_per_sample": number,
            **bench.extra,
            **b.extra,
        }
        if b.target is not None:
            row["target"] = b.target[0]
            row["target_met"] = bool(b.target[1](ratio))
        rows.append(row)
    # Overheads over the unregularized / dropout-free baseline, if the case has one.
    none = [t for b, t in zip(bench.baselines, timings[1:], strict=True) if b.kind == NONE]
    if none:
        for row in rows:
            row["overhead_pct"] = (ours.median / none[0].median - 1) * 100
            row["baseline_overhead_pct"] = (row["baseline_ms"] / none[0].median - 1) * 100
    return rows


def run_case(case: Case, cfg: Config) -> tuple[list[dict[str, Any]], str | None]:
    """Builds and runs one case; returns (rows, skip reason or None)."""
    built = case.build()
    if isinstance(built, str):
        return [], built
    if isinstance(built, list):
        return built, None
    return run_bench(built, cfg), None


def missing(module: Any, names: Iterable[str]) -> list[str]:
    return [n for n in names if not hasattr(module, n)]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    """The measured checkout's commit, "+dirty" when jaxreg/ or benchmarks/ (results aside) differ from it.

    Where there is no git repository (a copy of the tree on another machine), the
    ``BENCHMARKS_GIT_COMMIT`` environment variable, if set, names the commit.
    """
    import subprocess

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "--no-optional-locks",
                "status",
                "--porcelain",
                "--",
                "jaxreg",
                "benchmarks",
                ":!benchmarks/results",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("BENCHMARKS_GIT_COMMIT") or None
    return commit + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
    """Backend, device and versions: the header of the JSON file and of the table."""
    import jaxreg

    dev = jax.devices()[0]
    backend = jax.default_backend()
    if backend == "cpu":
        device = f"{_cpu_model()} ({os.cpu_count()} cores)"
    else:
        device = f"{dev.device_kind} (x{jax.device_count()})"
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "backend": backend,
        "device": device,
        "versions": {
            "jax": jax.__version__,
            "jaxlib": _version("jaxlib"),
            "flax": _version("flax"),
            "optax": _version("optax"),
            "jaxreg": getattr(jaxreg, "__version__", _version("jaxreg")),
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "git_commit": _git_commit(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": list(load) if load else None,
    }
