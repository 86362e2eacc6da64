"""Transformer block forward+backward: drop path on the full batch against drop_path_subset.

A pre-LayerNorm block ``x + drop(attention(ln(x)))`` then ``x + drop(mlp(ln(x)))``,
differentiated with respect to its weights and its input. ``drop_path`` computes
both branches on the whole batch and zeroes the dropped examples;
``drop_path_subset`` computes them on ``round((1 - rate) B)`` examples only and
scatters them back scaled by ``B / k`` (the same expected output). The branches
are most of the block's FLOPs, so the saving in FLOPs is close to the rate's
share (10%, 20%, 40% at rates 0.1, 0.2, 0.4); the time saved also depends on how
well the backend's kernels run at the odd batch size ``k`` (58, 51 and 38 of 64
here) and on the cost of the gather and the scatter. On a shared 2-core CPU
(XLA's CPU backend) a run measured in process time: drop_path 130, 137, 146 ms;
drop_path_subset 196, 169, 134 ms; a static slice to the first ``k`` examples
(the ideal subset, no gather) 174, 155, 121 ms: there the smaller odd batch
costs more than the FLOPs it saves, except at 0.4.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp

import jaxreg
from benchmarks._harness import NONE, Baseline, Bench, Case, Config, normal

RATES = (0.1, 0.2, 0.4)
FULL = (64, 64, 128, 4)  # batch, tokens, width, heads
QUICK = (8, 16, 32, 2)


def _ln(x):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-6)


def _attention(p, x, heads):
    b, t, d = x.shape
    h = _ln(x)
    q, k, v = ((h @ p[n]).reshape(b, t, heads, d // heads) for n in ("wq", "wk", "wv"))
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.float32(d // heads))
    out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v).reshape(b, t, d)
    return out @ p["wo"]


def _mlp(p, x):
    return jax.nn.gelu(_ln(x) @ p["w1"]) @ p["w2"]


def _block(p, x, key, rate, heads, subset):
    k1, k2 = jax.random.split(key)
    branches = (functools.partial(_attention, p, heads=heads), functools.partial(_mlp, p))
    for k, f in zip((k1, k2), branches, strict=True):
        if subset:
            x = x + jaxreg.drop_path_subset(k, x, f, rate)
        else:
            x = x + jaxreg.drop_path(k, f(x), rate)
    return x


@functools.cache
def _train_fn(rate, heads, subset):
    def loss(p, x, key):
        return jnp.mean(_block(p, x, key, rate, heads, subset) ** 2)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def _build(dims, rate) -> Bench | str:
    if not hasattr(jaxreg, "drop_path_subset"):
        return "jaxreg.drop_path_subset does not exist yet"
    batch, tokens, d, heads = dims
    shapes = {"wq": (d, d), "wk": (d, d), "wv": (d, d), "wo": (d, d), "w1": (d, 4 * d), "w2": (4 * d, d)}
    params = {n: normal(i, s, s[0] ** -0.5) for i, (n, s) in enumerate(shapes.items())}
    x = normal(9, (batch, tokens, d))
    key = jax.random.key(0)

    def thunk(r, subset):
        fn = _train_fn(r, heads, subset)
        return lambda: fn(params, x, key)

    return Bench(
        name=f"transformer block fwd+bwd, drop path {rate}",
        size=batch * tokens * d,
        group="depth",
        jaxreg=thunk(rate, True),
        baselines=[
            Baseline("jaxreg.drop_path (whole batch)", thunk(rate, False), "drop_path"),
            Baseline("no drop path", thunk(0.0, False), NONE),
        ],
        extra={
            "dims": {"batch": batch, "tokens": tokens, "width": d, "heads": heads},
            "rate": rate,
            "subset": max(round((1 - rate) * batch), 1),  # the examples the branches run on
        },
    )


def cases(cfg: Config) -> Iterator[Case]:
    dims = QUICK if cfg.quick else FULL
    for rate in RATES[-1:] if cfg.quick else RATES:
        yield Case(
            f"transformer block fwd+bwd, drop path {rate}",
            dims[0] * dims[1] * dims[2],
            "depth",
            functools.partial(_build, dims, rate),
        )
