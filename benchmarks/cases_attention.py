"""Attention block forward+backward with dropout on the probabilities and on the residual.

One multi-head self-attention block ``x + drop(proj(softmax(q k^T / sqrt(d)) v))``
with ``drop`` also applied to the attention probabilities, differentiated with
respect to its weights and its input. Three variants timed side by side: no
dropout, ``jaxreg.dropout`` and Flax-style dropout (``flax.linen.Dropout``,
i.e. ``jax.random.bernoulli`` and a select), plus a multiply by ``1 - rate``
in the same places, which shows what XLA's fusion of an elementwise op there
costs or saves without any random bits. Issue 4 measured flax-style
dropout(0.1) at about +51% of the time without dropout, and targets at most
+10% for jaxreg.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp

import jaxreg
from benchmarks._harness import ELEMENTWISE, FLAX, NONE, Baseline, Bench, Case, Config, normal

RATE = 0.1
FULL = (4, 8, 512, 64)  # batch, heads, tokens, head dim
QUICK = (1, 2, 64, 16)


def _no_dropout(key, x):
    del key
    return x


def _jaxreg_dropout(key, x):
    return jaxreg.dropout(key, x, RATE)


def _scale(key, x):
    # Not dropout: an elementwise multiply in the same places. Adding any elementwise op
    # there changes how XLA fuses the block; this separates that from the random bits.
    del key
    return x * jnp.asarray(1.0 - RATE, x.dtype)


def _flax_dropout(key, x):
    return nn.Dropout(RATE, deterministic=False).apply({}, x, rngs={"dropout": key})


def _block(params, x, key, drop, heads):
    b, t, d = x.shape
    dh = d // heads
    k_probs, k_resid = jax.random.split(key)

    def split_heads(w):
        return (x @ w).reshape(b, t, heads, dh)

    q, k, v = split_heads(params["wq"]), split_heads(params["wk"]), split_heads(params["wv"])
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.float32(dh))
    probs = drop(k_probs, jax.nn.softmax(logits, axis=-1))
    out = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, t, d) @ params["wo"]
    return x + drop(k_resid, out)


def _loss(params, x, key, drop, heads):
    return jnp.mean(_block(params, x, key, drop, heads) ** 2)


@functools.cache
def _train_fn(drop, heads):
    return jax.jit(jax.value_and_grad(functools.partial(_loss, drop=drop, heads=heads), argnums=(0, 1)))


def _build(dims, repeats_factor: int) -> Bench | str:
    if not hasattr(jaxreg, "dropout"):
        return "jaxreg.dropout does not exist yet"
    batch, heads, tokens, dh = dims
    d = heads * dh
    params = {n: normal(i, (d, d), d**-0.5) for i, n in enumerate(("wq", "wk", "wv", "wo"))}
    x = normal(4, (batch, tokens, d))
    key = jax.random.key(0)

    def thunk(drop):
        fn = _train_fn(drop, heads)
        return lambda: fn(params, x, key)

    return Bench(
        name=f"attention fwd+bwd dropout({RATE})",
        size=batch * heads * tokens * tokens,  # elements of the probabilities
        group="attention",
        jaxreg=thunk(_jaxreg_dropout),
        baselines=[
            Baseline(
                "no dropout",
                thunk(_no_dropout),
                NONE,
                target=("jaxreg dropout adds <= 10% to the time without dropout", lambda r: r >= 1 / 1.1),
            ),
            Baseline("flax-style dropout (flax.linen.Dropout)", thunk(_flax_dropout), FLAX),
            Baseline(f"x * {1 - RATE} in place of dropout (no random bits)", thunk(_scale), ELEMENTWISE),
        ],
        extra={"dims": {"batch": batch, "heads": heads, "tokens": tokens, "head_dim": dh}, "rate": RATE},
        repeats_factor=repeats_factor,
    )


def cases(cfg: Config) -> Iterator[Case]:
    dims = QUICK if cfg.quick else FULL
    size = dims[0] * dims[1] * dims[2] * dims[2]
    yield Case(
        f"attention fwd+bwd dropout({RATE})",
        size,
        "attention",
        functools.partial(_build, dims, 1 if cfg.quick else 2),
    )
