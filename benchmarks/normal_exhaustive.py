"""The fast sampler's normals over every one of the 2**32 words: how far their law is from N(0, 1).

Usage::

    python benchmarks/normal_exhaustive.py                    # the library's construction
    python benchmarks/normal_exhaustive.py --construction split-full

A normal of the fast sampler is a function of one ``uint32`` word, and the
hash makes every word equally likely, so the law of ``z`` is exactly the
histogram of ``z(h)`` over all ``h < 2**32``. This script computes ``z(h)`` for
every word as the library does (``jaxreg._sampling._box_muller``, float32) and
reports the largest distance between its distribution function and the normal
one (``D_inf``, on a grid of 12,000 points in [-6, 6] and geometrically spaced
points down to ``2**-30`` on both sides of 0), the exact zeros, the largest
``|z|``, the moments, and the mass of ``|z| < 2**-12`` (what the statistical
test counts on 2**20 draws).

``--construction`` also evaluates the bit splits that the library's
construction replaced: 20 bits of the word for the radius and 12 for the angle,
either ``split-full`` (``u1 = h >> 12`` over 2**20, ``z = sqrt(-2 ln(1 - u1))
cos(2 pi a / 4096)`` with ``a`` the low 12 bits) or ``split-half`` (cell
midpoints: ``z = sqrt(-2 ln((k + 1/2) / 2**20)) sin(pi ((a + 1/2) / 4096 - 1/2))``).
About 5 minutes per construction on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from scipy.special import ndtr

from jaxreg._stochastic import _sampling

CHUNK = 2**24  # words per step
LINEAR_BINS = 2000  # per unit of |z|, on [0, 6]
LINEAR_MAX = 6
LOG_BINS = 16  # per octave of |z|, on [2**-30, 2**-4)
LOG_MIN, LOG_MAX = -30, -4


def _split_full(h: jax.Array) -> jax.Array:
    u1 = (h >> 12).astype(jnp.float32) * (1 / 2**20)
    u2 = (h & 0xFFF).astype(jnp.float32) * (1 / 4096)
    # cos(2 pi u2) = sin(pi (2 |u2 - 1/2| - 1/2)), the library's polynomial sine
    return jnp.sqrt(-2 * jnp.log(1 - u1)) * _sampling._sin_pi(2 * jnp.abs(u2 - 0.5) - 0.5)


def _split_half(h: jax.Array) -> jax.Array:
    k = (h >> 12).astype(jnp.float32)
    a = (h & 0xFFF).astype(jnp.float32)
    return jnp.sqrt(-2 * jnp.log((k + 0.5) * (1 / 2**20))) * _sampling._sin_pi((a + 0.5) * (1 / 4096) - 0.5)


CONSTRUCTIONS = {"lattice": _sampling._box_muller, "split-full": _split_full, "split-half": _split_half}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--construction", choices=sorted(CONSTRUCTIONS), default="lattice")
    args = parser.parse_args(argv)
    normal = CONSTRUCTIONS[args.construction]

    @jax.jit
    def chunk(start):
        return normal(start + lax.iota(jnp.uint32, CHUNK))

    n_lin = LINEAR_BINS * LINEAR_MAX
    n_log = LOG_BINS * (LOG_MAX - LOG_MIN)
    lin = np.zeros((2, n_lin + 1), np.int64)  # [negative, positive] side, bins of |z|; last: beyond 6
    log = np.zeros((2, n_log + 1), np.int64)  # bins of log2 |z|; bin 0 also holds |z| < 2**-30
    zeros = nonfinite = 0
    zmax = 0.0
    sums = np.zeros(4)
    start = time.perf_counter()
    for c in range(2**32 // CHUNK):
        z = np.asarray(chunk(jnp.uint32(c * CHUNK)))
        nonfinite += int((~np.isfinite(z)).sum())
        zeros += int((z == 0).sum())
        z = z[z != 0]
        a = np.abs(z)
        zmax = max(zmax, float(a.max()))
        side = (z > 0).astype(np.int64)
        zd = z.astype(np.float64)
        z2 = zd * zd
        sums += [zd.sum(), z2.sum(), (z2 * zd).sum(), (z2 * z2).sum()]
        i = np.minimum((a * LINEAR_BINS).astype(np.int64), n_lin)
        lin += np.bincount(side * (n_lin + 1) + i, minlength=2 * (n_lin + 1)).reshape(2, -1)
        small = a < 2.0**LOG_MAX
        j = np.clip(np.floor((np.log2(a[small]) - LOG_MIN) * LOG_BINS).astype(np.int64) + 1, 0, n_log)
        log += np.bincount(side[small] * (n_log + 1) + j, minlength=2 * (n_log + 1)).reshape(2, -1)
    total = 2.0**32
    # P(0 < +-z < e) at the bins' edges; exact zeros are an atom at 0.
    zero_mass = zeros / total
    edges_lin = np.arange(1, n_lin + 1) / LINEAR_BINS
    edges_log = 2.0 ** (LOG_MIN + np.arange(n_log) / LOG_BINS)  # cumsum of bins 0..m: |z| < edge m
    worst = (0.0, 0.0)
    neg_mass = lin[0].sum() / total
    for edges, hist in ((edges_lin, lin), (edges_log, log)):
        for sgn in (0, 1):
            cum = np.cumsum(hist[sgn])[: edges.size] / total
            if sgn:  # F(e) = P(z < 0) + P(z = 0) + P(0 < z < e)
                dev = neg_mass + zero_mass + cum - ndtr(edges)
            else:  # F(-e) = P(z < -e) = P(z < 0) - P(-e < z < 0)
                dev = neg_mass - cum - ndtr(-edges)
            k = int(np.abs(dev).argmax())
            if abs(dev[k]) > worst[0]:
                worst = (abs(dev[k]), float(edges[k]) * (1 if sgn else -1))
    dev0 = max(abs(neg_mass - 0.5), abs(neg_mass + zero_mass - 0.5))
    if dev0 > worst[0]:
        worst = (dev0, 0.0)
    mean, m2, m3, m4 = sums / total
    # P(|z| < 2**-12): the log bins up to that edge, plus exact zeros
    k12 = (-12 - LOG_MIN) * LOG_BINS
    near0 = (log[:, : k12 + 1].sum() + zeros) / total
    lines = [
        f"fast normals, construction {args.construction}, all 2**32 words, jax {jax.__version__}",
        f"D_inf = {worst[0]:.2e} (largest |F(z) - Phi(z)|, at z = {worst[1]:.3g})",
        f"exact zeros: {zeros} ({zeros / total:.2e}); non-finite: {nonfinite}; max |z| = {zmax:.6f}",
        f"mean {mean:.2e}, variance {m2:.9f}, skewness {m3 / m2**1.5:.2e}, excess kurtosis {m4 / m2**2 - 3:.2e}",
        f"P(|z| < 2**-12) = {near0:.4e}, normal {2 * ndtr(2.0**-12) - 1:.4e}",
        *(
            f"P(|z| > {x}) = {lin[:, x * LINEAR_BINS :].sum() / total:.3e}, normal {2 * ndtr(-x):.3e}"
            for x in (3, 4, 5)
        ),
        f"({time.perf_counter() - start:.0f} s)",
    ]
    print("\n".join(lines))
    return 0 if nonfinite == 0 and math.isfinite(worst[0]) else 1


if __name__ == "__main__":
    sys.exit(main())
