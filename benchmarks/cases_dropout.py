"""Dropout-family cases: every op in training mode, forward and forward+backward.

Each op is timed against (a) ``flax.linen.Dropout`` where Flax has an
equivalent, (b) a straightforward ``jax.random`` implementation of the same
formula, and (c) ``x * 2`` over the same array, which reads and writes the
same bytes and stands for the memory-bandwidth limit. Forward+backward is
``y, vjp(dy)``: the output and the input cotangent, as in training (the
backward of ``x * 2`` is ``2 * dy``, so the limit reads and writes the same
four arrays). GB/s counts the arrays read and written (x, y; plus dy, dx for
forward+backward), not random bits.

Every op also runs in bfloat16 (cases named ``... bf16``), the dtype of
accelerator training, against ``x * 2`` in bfloat16 only. Their memory floor
is half of float32's: 4 bytes per element forward (read x, write y) and 8
forward+backward (x, y, dy, dx), while the mask costs the same per element
in either dtype (the hash; DropBlock's uint8 seeds and max-pools, and the
count of kept units, which XLA on CPU computes from a float32 copy of the
mask): against ``x * 2`` it weighs twice as much, so expect higher ratios
than in float32 where drawing the mask, not memory, is the limit.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

import jaxreg
from benchmarks._harness import (
    ELEMENTWISE,
    FLAX,
    REFERENCE,
    Baseline,
    Bench,
    Case,
    Config,
    normal,
    tree_nbytes,
)

JAX_SAMPLER = "jax-sampler"  # baseline kind: the same jaxreg op with sampler="jax"
RATE = 0.1
STDDEV = 0.1  # gaussian_noise
BLOCK_SIZE = 5  # dropblock, on 16x16 feature maps
ROW = 4096  # flat cases are (n // 4096, 4096): 2^24 elements is the 4096 x 4096
HWC = (16, 16, 64)  # NHWC cases are (n // 16384, 16, 16, 64)
TARGET_SIZE = 2**24  # the dropout targets are stated for float32 4096 x 4096

# SELU's constants (Klambauer et al. 2017), as in PyTorch and Keras.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_ALPHA_P = -_SELU_ALPHA * _SELU_SCALE


def flat_shape(n: int) -> tuple[int, ...]:
    return (n // ROW, ROW) if n >= ROW else (1, n)


def nhwc_shape(n: int) -> tuple[int, ...]:
    return (max(1, n // math.prod(HWC)), *HWC)


# --- Flax equivalents ------------------------------------------------------------


def _flax_dropout(key, x, broadcast_dims=()):
    return nn.Dropout(RATE, broadcast_dims=broadcast_dims, deterministic=False).apply(
        {}, x, rngs={"dropout": key}
    )


def _flax_on_leaves(key, params):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([_flax_dropout(k, w) for k, w in zip(keys, leaves, strict=True)])


# --- jax.random references of each formula ---------------------------------------


def _ref_dropout(key, x, mask_shape=None):
    keep = jax.random.bernoulli(key, 1.0 - RATE, x.shape if mask_shape is None else mask_shape)
    return jnp.where(keep, x / (1.0 - RATE), 0.0).astype(x.dtype)


def _ref_spatial(key, x):
    b, _, _, c = x.shape
    return _ref_dropout(key, x, (b, 1, 1, c))


def _ref_drop_path(key, x):
    return _ref_dropout(key, x, (x.shape[0],) + (1,) * (x.ndim - 1))


def _ref_gaussian_dropout(key, x):
    std = math.sqrt(RATE / (1.0 - RATE))
    return x * (1.0 + std * jax.random.normal(key, x.shape, x.dtype))


def _ref_gaussian_noise(key, x):
    return x + STDDEV * jax.random.normal(key, x.shape, x.dtype)


def _ref_alpha_dropout(key, x):
    a = ((1.0 - RATE) * (1.0 + RATE * _ALPHA_P**2)) ** -0.5
    b = -a * _ALPHA_P * RATE
    keep = jax.random.bernoulli(key, 1.0 - RATE, x.shape)
    return a * jnp.where(keep, x, _ALPHA_P) + b


def _ref_dropblock(key, x):
    # Ghiasi et al. 2018 / timm: seeds with probability gamma at centres whose block
    # fits in the map, grown to block_size x block_size by a max-pool, kept values
    # rescaled by numel / kept.
    _, h, w, _ = x.shape
    bs = BLOCK_SIZE
    gamma = RATE / bs**2 * (h * w) / ((h - bs + 1) * (w - bs + 1))
    ii = jnp.arange(h)[:, None]
    jj = jnp.arange(w)[None, :]
    lo, hi = bs // 2, (bs - 1) // 2
    valid = (ii >= lo) & (ii < h - hi) & (jj >= lo) & (jj < w - hi)
    seeds = jax.random.bernoulli(key, gamma, x.shape) & valid[None, :, :, None]
    dropped = lax.reduce_window(seeds.astype(x.dtype), 0.0, lax.max, (1, bs, bs, 1), (1, 1, 1, 1), "SAME")
    keep = 1.0 - dropped
    return x * keep * (keep.size / jnp.maximum(keep.sum(), 1.0))


def _ref_on_leaves(key, params):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([_ref_dropout(k, w) for k, w in zip(keys, leaves, strict=True)])


# --- the ops ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Op:
    name: str
    make_input: Callable[[int], Any]  # size -> input pytree of that many float32 elements
    call: Callable[[Callable, Any, Any], Any]  # (jaxreg op, key, x) -> y
    reference: Callable[[Any, Any], Any]
    flax: Callable[[Any, Any], Any] | None = None
    flax_label: str = "flax.linen.Dropout"


def _array(shape_fn):
    def make(n):
        return normal(1, shape_fn(n))

    return make


def _params(n):
    return {"kernel": _array(flat_shape)(n)}


OPS: tuple[Op, ...] = (
    Op("dropout", _array(flat_shape), lambda f, k, x: f(k, x, RATE), _ref_dropout, _flax_dropout),
    Op(
        "spatial_dropout",
        _array(nhwc_shape),
        lambda f, k, x: f(k, x, RATE, channel_axis=-1, batch_axis=0),
        _ref_spatial,
        functools.partial(_flax_dropout, broadcast_dims=(1, 2)),
        "flax.linen.Dropout(broadcast_dims=(1, 2))",
    ),
    Op("gaussian_dropout", _array(flat_shape), lambda f, k, x: f(k, x, RATE), _ref_gaussian_dropout),
    Op("gaussian_noise", _array(flat_shape), lambda f, k, x: f(k, x, STDDEV), _ref_gaussian_noise),
    Op("alpha_dropout", _array(flat_shape), lambda f, k, x: f(k, x, RATE), _ref_alpha_dropout),
    Op(
        "drop_path",
        _array(flat_shape),
        lambda f, k, x: f(k, x, RATE, batch_axis=0),
        _ref_drop_path,
        functools.partial(_flax_dropout, broadcast_dims=(1,)),
        "flax.linen.Dropout(broadcast_dims=(1,))",
    ),
    Op("dropblock", _array(nhwc_shape), lambda f, k, x: f(k, x, RATE, BLOCK_SIZE), _ref_dropblock),
    Op(
        "dropconnect",
        _params,
        lambda f, k, p: f(k, p, RATE),
        _ref_on_leaves,
        _flax_on_leaves,
        "flax.linen.Dropout on each leaf",
    ),
)
OP_NAMES = tuple(op.name for op in OPS)


def _times_two(key, x):
    del key
    return jax.tree.map(lambda a: a * 2, x)


def _with_backward(f):
    """``(key, x, dy) -> (f(key, x), vjp of f at x applied to dy)``."""

    def fwd_bwd(key, x, dy):
        y, pullback = jax.vjp(lambda x: f(key, x), x)
        return y, pullback(dy)[0]

    return fwd_bwd


@functools.cache
def _jitted(op_name: str, which: str, backward: bool) -> Callable:
    """One jitted function per (op, implementation, mode), shared by all sizes."""
    op = next(o for o in OPS if o.name == op_name)
    if which == "jaxreg":
        f = getattr(jaxreg, op_name)
        fn = functools.partial(op.call, f)
    elif which == "flax":
        fn = op.flax
    elif which == "reference":
        fn = op.reference
    elif which == "jax-sampler":
        f = getattr(jaxreg, op_name)
        fn = functools.partial(op.call, functools.partial(f, sampler="jax"))
    else:
        raise ValueError(which)
    return jax.jit(_with_backward(fn) if backward else fn)


_X2 = jax.jit(_times_two)
_X2_BWD = jax.jit(_with_backward(_times_two))


DTYPES = ("float32", "bfloat16")  # bfloat16 cases are timed against x * 2 only


def _build(op: Op, n: int, backward: bool, cfg: Config, dtype: str = "float32") -> Bench | str:
    if not hasattr(jaxreg, op.name):
        return f"jaxreg.{op.name} does not exist yet"
    key = jax.random.key(0)
    x = jax.tree.map(lambda a: a.astype(dtype), op.make_input(n))
    args: tuple[Any, ...] = (key, x)
    if backward:
        args = (key, x, jax.tree.map(lambda a: normal(2, a.shape).astype(dtype), x))
    nbytes = tree_nbytes(x) * (4 if backward else 2)

    def thunk(fn):
        return lambda: fn(*args)

    mode = "fwd+bwd" if backward else "fwd"
    target = n == TARGET_SIZE and not backward and op.name == "dropout" and dtype == "float32"
    baselines = [
        Baseline(
            "x * 2",
            thunk(_X2_BWD if backward else _X2),
            ELEMENTWISE,
            nbytes,
            ("jaxreg <= 1.3x the time of x * 2", lambda r: r >= 1 / 1.3) if target else None,
        )
    ]
    # The smoke test (--quick) times forward+backward against the memory limit only.
    full = not (cfg.quick and backward) and dtype == "float32"
    if full and op.flax is not None:
        baselines.append(
            Baseline(
                op.flax_label,
                thunk(_jitted(op.name, "flax", backward)),
                FLAX,
                nbytes,
                ("jaxreg >= 5x faster than flax.linen.Dropout", lambda r: r >= 5.0) if target else None,
            )
        )
    if full:
        baselines.append(
            Baseline(
                "jax.random reference", thunk(_jitted(op.name, "reference", backward)), REFERENCE, nbytes
            )
        )
    if full and op.name == "dropout" and "sampler" in inspect.signature(jaxreg.dropout).parameters:
        # The same op with jax.random.bernoulli's bits: what the fast sampler saves.
        fn = _jitted(op.name, "jax-sampler", backward)
        baselines.append(Baseline("jaxreg.dropout(sampler='jax')", thunk(fn), JAX_SAMPLER, nbytes))
    shape = [list(a.shape) for a in jax.tree.leaves(x)]
    return Bench(
        name=_case_name(op, backward, dtype),
        size=n,
        group="dropout",
        jaxreg=thunk(_jitted(op.name, "jaxreg", backward)),
        baselines=baselines,
        nbytes=nbytes,
        extra={
            "op": op.name,
            "mode": mode,
            "dtype": dtype,
            "shape": shape[0] if len(shape) == 1 else shape,
            "rate": RATE,
        },
    )


def _case_name(op: Op, backward: bool, dtype: str) -> str:
    suffix = "" if dtype == "float32" else " bf16"
    return f"{op.name} {'fwd+bwd' if backward else 'fwd'}{suffix}"


def cases(cfg: Config) -> Iterator[Case]:
    for dtype in DTYPES:
        for op in OPS:
            for backward in (False, True):
                for n in cfg.sizes:
                    build = functools.partial(_build, op, n, backward, cfg, dtype)
                    yield Case(_case_name(op, backward, dtype), n, "dropout", build)
