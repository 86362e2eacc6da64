"""Streams the fast dropout sampler's raw 32-bit words into dieharder and prints each p-value.

Usage (needs the Debian/Ubuntu package ``dieharder``)::

    python benchmarks/dieharder.py                 # the default selection of tests
    python benchmarks/dieharder.py --tests 0 2 15  # chosen dieharder test numbers
    python benchmarks/dieharder.py --out benchmarks/dieharder_result.txt

The stream is exactly what dropout's keep decisions are drawn from: the words
``jaxreg._sampling.hash_bits(key, (rows, 4096))`` in row-major order, i.e. the
hash of consecutive global indices 0, 1, 2, ... with the seed words of one key
(``--stream counter``). ``--stream keys`` instead interleaves many keys: word
``j * 64 + i`` is the word of index ``i`` under key ``fold_in(key, j)``, which
checks that nearby keys (training steps) give unrelated masks. Each test gets
its own key, ``fold_in(key(seed), test_number)``. dieharder reads the words as
raw little-endian binary (``dieharder -g 200``), with ``-Y 1`` so that a
WEAK p-value is re-tested with more samples (dieharder's own protocol).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg._stochastic import _sampling

# Test number -> extra dieharder options (dieharder's default sample counts, except
# fewer psamples for the slow 32x32 rank test). Chosen to finish in a few minutes.
DEFAULT_TESTS: dict[int, tuple[str, ...]] = {
    0: (),  # diehard_birthdays
    1: (),  # diehard_operm5
    2: ("-p", "40"),  # diehard_rank_32x32
    3: (),  # diehard_rank_6x8
    4: (),  # diehard_bitstream
    5: (),  # diehard_opso
    8: (),  # diehard_count_1s_str
    9: (),  # diehard_count_1s_byt
    10: (),  # diehard_parking_lot
    11: (),  # diehard_2dsphere
    12: (),  # diehard_3dsphere
    13: (),  # diehard_squeeze
    15: (),  # diehard_runs
    16: (),  # diehard_craps
    100: (),  # sts_monobit
    101: (),  # sts_runs
    102: (),  # sts_serial
    200: ("-n", "8"),  # rgb_bitdist on 8-bit tuples
    205: (),  # dab_bytedistrib
    206: (),  # dab_dct
    209: (),  # dab_monobit2
}
COLS = 4096  # words per row of the counter stream
ROWS_PER_CHUNK = 1024  # 4 Mi words (16 MiB) per write
KEYS_PER_CHUNK = 65536  # keys per chunk of the interleaved-keys stream
WORDS_PER_KEY = 64


@jax.jit
def _counter_chunk(key, chunk):
    # Rows [chunk * R, (chunk + 1) * R) of a (2**20, 4096) array: global indices
    # continue across chunks up to 2**32 words, then the key changes.
    full = _sampling.hash_bits(key, (2**32 // COLS, COLS))
    return jax.lax.dynamic_slice_in_dim(full, chunk * ROWS_PER_CHUNK, ROWS_PER_CHUNK)


@jax.jit
def _keys_chunk(key, chunk):
    keys = jax.vmap(lambda j: jax.random.fold_in(key, j))(chunk * KEYS_PER_CHUNK + jnp.arange(KEYS_PER_CHUNK))
    return jax.vmap(lambda k: _sampling.hash_bits(k, (WORDS_PER_KEY,)))(keys)


def _write_stream(pipe, key, stream: str, stop: threading.Event) -> None:
    chunk = 0
    chunks_per_key = 2**32 // COLS // ROWS_PER_CHUNK
    try:
        while not stop.is_set():
            if stream == "counter":
                k = jax.random.fold_in(key, chunk // chunks_per_key) if chunk >= chunks_per_key else key
                words = _counter_chunk(k, chunk % chunks_per_key)
            else:
                words = _keys_chunk(key, chunk)
            pipe.write(np.asarray(words, dtype="<u4").tobytes())
            chunk += 1
    except (BrokenPipeError, OSError, ValueError):
        pass  # dieharder finished and closed its stdin


_ROW = re.compile(r"^\s*(\S+)\|\s*(\d+)\|\s*(\d+)\|\s*(\d+)\|\s*([0-9.eE+-]+)\|\s*(\S+)")


def run_test(number: int, options: tuple[str, ...], key, stream: str) -> list[tuple[str, str, float, str]]:
    # -Y 1: dieharder's "resolve ambiguity" mode, which re-runs a test whose
    # p-value is WEAK (outside [0.005, 0.995]) with more samples until it
    # clearly passes or fails: WEAK results occur by chance at a rate of 1%.
    cmd = ["dieharder", "-g", "200", "-d", str(number), "-Y", "1", *options]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stop = threading.Event()
    writer = threading.Thread(target=_write_stream, args=(proc.stdin, key, stream, stop), daemon=True)
    writer.start()
    out = proc.stdout.read()  # not communicate(): it would close dieharder's stdin
    proc.wait()
    stop.set()
    rows = []
    for line in out.decode().splitlines():
        m = _ROW.match(line)
        if m and m.group(1) != "test_name":
            rows.append((m.group(1), m.group(2), float(m.group(5)), m.group(6)))
    if not rows:
        raise RuntimeError(f"dieharder {' '.join(cmd[1:])} reported no p-value:\n{out.decode()[-2000:]}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tests", type=int, nargs="*", help="dieharder test numbers (default: a selection)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stream", choices=["counter", "keys"], default="counter")
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)
    tests = {t: DEFAULT_TESTS.get(t, ()) for t in args.tests} if args.tests else DEFAULT_TESTS
    base = jax.random.key(args.seed)
    lines = [
        f"dieharder 3.31 on jaxreg's fast sampler (golden-ratio multiply + lowbias32 counter hash), stream={args.stream}, "
        f"seed={args.seed}, jax {jax.__version__}",
        f"{'test':24s} {'ntup':>4s} {'p-value':>10s}  assessment",
    ]
    print("\n".join(lines), flush=True)
    start = time.perf_counter()
    counts = {"PASSED": 0, "WEAK": 0, "FAILED": 0}
    for number, options in tests.items():
        rows = run_test(number, options, jax.random.fold_in(base, number), args.stream)
        for i, (name, ntup, p, verdict) in enumerate(rows):
            # With -Y 1 a WEAK row is followed by its re-test (same test and ntup):
            # the last row of a (test, ntup) pair is the verdict that counts.
            # (Some tests report two p-values per ntup: only a WEAK row is re-tested.)
            retested = verdict == "WEAK" and i + 1 < len(rows) and rows[i + 1][:2] == (name, ntup)
            note = "  (re-tested below)" if retested else ""
            if not retested:
                counts[verdict] = counts.get(verdict, 0) + 1
            line = f"{name:24s} {ntup:>4s} {p:10.8f}  {verdict}{note}"
            lines.append(line)
            print(line, flush=True)
    summary = (
        f"{sum(counts.values())} final p-values from {len(tests)} tests: {counts['PASSED']} PASSED, "
        f"{counts['WEAK']} WEAK, {counts['FAILED']} FAILED ({time.perf_counter() - start:.0f} s)"
    )
    lines.append(summary)
    print(summary, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 1 if counts["FAILED"] else 0


if __name__ == "__main__":
    sys.exit(main())
