"""Helpers shared by several test modules: ``from helpers import ...``.

The suite runs with ``--import-mode=importlib``, which puts no test folder on ``sys.path``;
``tests/conftest.py`` puts this one there, in the pytest process and in every pytest-xdist
worker, so that any ``tests/<area>/test_*.py`` can import this module by its bare name.
"""

from __future__ import annotations

import importlib
import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg

TESTS = pathlib.Path(__file__).resolve().parent
ROOT = TESTS.parent  # the repository: README.md, examples/, benchmarks/


def benchmarks_module(name: str):
    """``benchmarks.<name>`` (``"__main__"``, ``"readme"``, ...), imported with the repository root briefly on ``sys.path``."""
    sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module(f"benchmarks.{name}")
    finally:
        sys.path.remove(str(ROOT))


DATA = TESTS / "data"
EXAMPLES = ROOT / "examples"


def assert_device_script_refuses_a_cpu(script: pathlib.Path, out: pathlib.Path) -> None:
    """Runs ``bash script`` (a ``*/device_*.sh``) with jax on the CPU: it exits 2, says so, writes nothing."""
    import os
    import subprocess

    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "OUT": str(out),
        "PATH": os.pathsep.join([str(pathlib.Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no accelerator" in proc.stderr and list(out.iterdir()) == []


ON_CPU = jax.default_backend() == "cpu"


def assert_same_bits(got, want, *, ulps_elsewhere=1):
    """``got`` equals ``want`` bit for bit on the CPU; on a GPU or TPU, the same zeros, signs, NaNs and
    infinities as ``want`` and every other value within ``ulps_elsewhere`` units in the last place of it.

    For the tests that tie an op to an oracle's exact roundings (Flax's, Equinox's, NumPy's). XLA's
    GPU compiler does not keep every rounding of a program: it may compute bfloat16 and float16
    intermediates in float32 without rounding them back, and float32 results of a division were seen
    one or two ulps off (on an H200). The mask must match everywhere.
    """
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    unsigned = np.dtype(f"u{got.dtype.itemsize}")
    got_bits, want_bits = got.view(unsigned), want.view(unsigned)
    if ON_CPU or not jnp.issubdtype(got.dtype, jnp.floating):
        np.testing.assert_array_equal(got_bits, want_bits)
        return
    wide_got, wide_want = got.astype(np.float64), want.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(wide_got), np.isnan(wide_want))
    np.testing.assert_array_equal(np.signbit(wide_got), np.signbit(wide_want))
    exact = (wide_want == 0) | np.isinf(wide_want)  # the zeros (the mask) and infinities
    np.testing.assert_array_equal(got_bits[exact], want_bits[exact])
    # Same sign: the distance between the bit patterns counts the representable values between them.
    distance = np.abs(got_bits.astype(np.int64) - want_bits.astype(np.int64))
    finite = ~np.isnan(wide_want)
    assert np.all(distance[finite] <= ulps_elsewhere), int(distance[finite].max())


# --- arrays and NumPy oracles ----------------------------------------------------------------------


def random_normal(seed, shape, scale=1.0):
    """``scale`` times a float32 standard normal NumPy array (no JAX dispatch)."""
    return scale * np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def params_tree(seed=0):
    """A params pytree with float leaves of 1, 2 and 4 dimensions, an int leaf and a None."""
    rng = np.random.default_rng(seed)
    return {
        "dense": {
            "kernel": rng.normal(size=(4, 3)).astype(np.float32),
            "bias": rng.normal(size=3).astype(np.float32),
        },
        "conv": rng.normal(size=(2, 2, 3, 5)).astype(np.float32),
        "step": np.array(3, np.int32),
        "empty": None,
    }


def sigma_max(w):
    """The largest singular value of ``w`` reshaped to ``(-1, out)``, in float64."""
    w = np.asarray(w, np.float64)
    return np.linalg.svd(w.reshape(-1, w.shape[-1]), compute_uv=False)[0]


def conv_matrix(kernel, example_shape, **conv):
    """The (out_size, in_size) matrix of ``x -> flax.linen.Conv(x)`` (no bias) on one example, float64 NumPy.

    Built column by column with ``jax.jacfwd`` through Flax's own layer, so the padding,
    stride and dilation conventions are Flax's; ``conv`` are ``nn.Conv``'s options.
    """
    return np.asarray(conv_matrix_jax(kernel, example_shape, **conv), np.float64)


def conv_matrix_jax(kernel, example_shape, **conv):
    """:func:`conv_matrix` as a JAX array of the kernel's dtype (not yet float64): traceable, to build inside a jitted test."""
    layer = nn.Conv(kernel.shape[-1], kernel.shape[:-2], use_bias=False, **conv)
    variables = {"params": {"kernel": kernel}}

    def apply(x_flat):
        return layer.apply(variables, x_flat.reshape(1, *example_shape)).reshape(-1)

    return jax.jacfwd(apply)(jnp.zeros(int(np.prod(example_shape))))


def group_slices(shape, axes):
    """NumPy index tuples of the groups of the group lasso, by a loop over the group axes.

    ``axes`` (an int or a tuple of ints, negative counting from the end) index the groups: one
    group per ``np.ndindex`` of the sizes along them, every other axis taken whole (``:``).
    """
    axes = tuple(a % len(shape) for a in ((axes,) if isinstance(axes, int) else axes))
    for index in np.ndindex(*(shape[a] for a in axes)):
        selection = [slice(None)] * len(shape)
        for a, i in zip(axes, index, strict=True):
            selection[a] = i
        yield tuple(selection)


def np_group_lasso(w, axes):
    """``sum_g ||w_g||_2`` over :func:`group_slices` (float64; ``ndim < 2``: one group)."""
    w = np.asarray(w, np.float64)
    if w.ndim < 2:
        return np.linalg.norm(w)
    return sum(np.linalg.norm(w[g]) for g in group_slices(w.shape, axes))


def np_group_shrink(z, t, axes):
    """Block soft-thresholding ``z_g max(1 - t / ||z_g||, 0)`` group by group (float64)."""
    z = np.asarray(z, np.float64)
    out = np.zeros_like(z)
    for g in group_slices(z.shape, axes) if z.ndim >= 2 else [...]:
        norm = np.linalg.norm(z[g])
        out[g] = z[g] * max(1.0 - t / norm, 0.0) if norm > 0 else 0.0
    return out


# Keras 3 (keras/src/constraints/constraints.py, keras/src/regularizers/regularizers.py) adds this
# epsilon to the norms that it divides by.
KERAS_EPS = 1e-7


# --- optax ----------------------------------------------------------------------------------------


def land(tx, params, updates, *, jit=False):
    """Where ``params`` land after one ``tx`` step with incoming ``updates`` (``tx.update`` jitted if asked)."""
    update = jax.jit(tx.update) if jit else tx.update
    new_updates, _ = update(updates, tx.init(params), params)
    return optax.apply_updates(params, new_updates)


def land_all(cases):
    """:func:`land` for each ``(tx, params, updates)`` of ``cases``, all in one jitted program.

    One compilation for the whole list instead of one per case: each case is its own
    ``tx.update`` + ``optax.apply_updates`` on its own leaves, as in a step of its own.
    Returns the list of landed params, in the order of ``cases``.
    """
    txs = [tx for tx, _, _ in cases]

    @jax.jit
    def step(params, updates):
        out = []
        for tx, p, u in zip(txs, params, updates, strict=True):
            new_updates, _ = tx.update(u, tx.init(p), p)
            out.append(optax.apply_updates(p, new_updates))
        return out

    return step([p for _, p, _ in cases], [u for _, _, u in cases])


# --- the dropout family -------------------------------------------------------------------------------

SAMPLERS = ["fast", "jax"]
KEY = jax.random.key(1234)  # the key of the dropout-family tests (the sampler tests use their own)
BIG = (1024, 1024)  # 2**20 >= 1e6 elements
NBIG = BIG[0] * BIG[1]
SHAPE = (4, 8, 8, 3)  # NHWC, valid for every op
KEY_IMPLS = ["threefry2x32", "rbg", "unsafe_rbg"]


def every_key_kind(seed):
    """One key of each implementation, and a legacy raw ``uint32`` key, as pytest params."""
    return [
        pytest.param(jax.random.key(seed), id="threefry"),
        pytest.param(jax.random.key(seed, impl="rbg"), id="rbg"),
        pytest.param(jax.random.key(seed, impl="unsafe_rbg"), id="unsafe_rbg"),
        pytest.param(jax.random.PRNGKey(seed), id="legacy_uint32"),
    ]


def on_device(x, dtype=np.float32):
    """``x`` cast to ``dtype`` in NumPy, then put on the device as it is.

    The bits of ``jnp.asarray(x, dtype)`` (which casts a NumPy input the same way, one rounding
    to nearest even), without the copy program that ``jnp.asarray`` compiles for each new shape
    and dtype.
    """
    return jax.device_put(np.asarray(x).astype(dtype))


def drop_input(shape=SHAPE, dtype=jnp.float32, seed=7):
    """Standard normal with no zeros (so ``y / x`` recovers the multiplier); drawn in NumPy."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return on_device(x + np.where(x >= 0, 0.1, -0.1).astype(np.float32), dtype)


def keep_prob(rate, sampler):
    """The keep probability a sampler uses (quantized for "fast", see _sampling)."""
    return round((1 - rate) * 2**24) / 2**24 if sampler == "fast" else 1 - rate


# --- the Flax modules of the dropout family -----------------------------------------------------------

# (class name, functional op, positional hyperparameters, options shared by op and module).
MODULE_SPECS = [
    ("Dropout", jaxreg.dropout, (0.5,), {}),
    ("SpatialDropout", jaxreg.spatial_dropout, (0.5,), {}),
    ("GaussianDropout", jaxreg.gaussian_dropout, (0.5,), {}),
    ("GaussianNoise", jaxreg.gaussian_noise, (0.5,), {}),
    ("AlphaDropout", jaxreg.alpha_dropout, (0.5,), {}),
    ("DropPath", jaxreg.drop_path, (0.5,), {}),
    ("DropBlock", jaxreg.dropblock, (0.2, 3), {}),
]
MODULE_IDS = [s[0] for s in MODULE_SPECS]
# NHWC, valid for every op (DropBlock needs 4-D); 16 examples so that DropPath
# keeps every example of a draw with probability 2^-16 only.
MODULE_SHAPE = (16, 8, 8, 3)


def module_input(dtype=jnp.float32):
    return jax.random.normal(jax.random.key(42), MODULE_SHAPE).astype(dtype) + 2.0


def zero_rate(args):
    """The module's positional hyperparameters with the rate (the first) set to 0."""
    return (0.0, *args[1:])
