"""Quick timing of train-mode dropout against ``x * 2`` and ``flax.linen.Dropout``.

Usage: ``python benchmarks/dropout_timing.py [--repeats 20]``. Float32 4096x4096,
rate 0.1, every function compiled first, then timed interleaved (one call of
each per round) and reported as medians, in ms and as a multiple of ``x * 2``.
The full benchmark suite is ``python -m benchmarks``; this script is the
sanity check behind the dropout section of the README.
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import numpy as np

import jaxreg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    key = jax.random.key(0)
    x = jax.random.normal(jax.random.key(1), (4096, 4096))
    xb = x.reshape(64, 512, 512)
    keys = jax.random.split(key, 64)

    def flax_dropout(k, x):
        return nn.Dropout(0.1, deterministic=False).apply({}, x, rng=k)

    cases = {
        "x * 2": (jax.jit(lambda k, x: x * 2), (key, x)),
        "jaxreg.dropout (fast)": (jax.jit(lambda k, x: jaxreg.dropout(k, x, 0.1)), (key, x)),
        "flax.linen.Dropout": (jax.jit(flax_dropout), (key, x)),
        "jaxreg.dropout (sampler=jax)": (
            jax.jit(lambda k, x: jaxreg.dropout(k, x, 0.1, sampler="jax")),
            (key, x),
        ),
        "jaxreg.dropout, one key, (64,512,512)": (jax.jit(lambda k, x: jaxreg.dropout(k, x, 0.1)), (key, xb)),
        "vmap jaxreg.dropout, 64 keys": (
            jax.jit(jax.vmap(lambda k, x: jaxreg.dropout(k, x, 0.1))),
            (keys, xb),
        ),
        "jaxreg.gaussian_noise (fast)": (jax.jit(lambda k, x: jaxreg.gaussian_noise(k, x, 0.1)), (key, x)),
        "jaxreg.gaussian_noise (sampler=jax)": (
            jax.jit(lambda k, x: jaxreg.gaussian_noise(k, x, 0.1, sampler="jax")),
            (key, x),
        ),
    }
    for fn, a in cases.values():
        fn(*a).block_until_ready()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, (fn, a) in cases.items():
            start = time.perf_counter()
            fn(*a).block_until_ready()
            times[name].append(time.perf_counter() - start)
    med = {name: float(np.median(t)) for name, t in times.items()}
    print(
        f"jax {jax.__version__}, {jax.devices()[0].device_kind}, float32 4096x4096, medians of {args.repeats}"
    )
    for name, t in med.items():
        print(f"{name:40s} {t * 1e3:8.1f} ms  {t / med['x * 2']:5.2f}x of x * 2")
    print(
        f"flax.linen.Dropout / jaxreg.dropout: {med['flax.linen.Dropout'] / med['jaxreg.dropout (fast)']:.2f}x"
    )


if __name__ == "__main__":
    main()
