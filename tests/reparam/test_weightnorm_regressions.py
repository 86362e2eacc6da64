"""Weight normalization at the ends of each dtype's range and on zero-size weights.

Oracle: $g \\cdot v / \\max(\\|v\\|, \\epsilon)$ in float64 NumPy, with the norm taken on values scaled to
order 1 where the squares would leave float64's range.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxreg
import jaxreg.linen as jrl
import jaxreg.nnx as jrx

UNIT_ROUNDOFF = {jnp.float16: 2.0**-11, jnp.bfloat16: 2.0**-8, jnp.float32: 2.0**-24}
_normalize = jax.jit(jaxreg.weight_normalize)  # module level: one compilation per shape and dtype


def _np_norms(v, axis):
    v = np.asarray(v, np.float64)
    m = np.max(np.abs(v), axis=axis, keepdims=True)
    m = np.where(m > 0, m, 1.0)
    return m * np.sqrt(np.sum((v / m) ** 2, axis=axis, keepdims=True))


def _weights(scale, shape=(6, 3), seed=0):
    return np.random.default_rng(seed).uniform(0.5, 1.0, shape) * np.where(
        np.random.default_rng(seed + 1).random(shape) < 0.5, -scale, scale
    )


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [
        (jnp.float32, 1e20),  # squares overflow float32
        (jnp.float32, 3e38),  # the norm is above float32's maximum
        (jnp.float32, 1e-25),  # squares underflow float32
        (jnp.bfloat16, 1e20),
        (jnp.bfloat16, 3e38),
        (jnp.float16, 6e4),
    ],
)
def test_weight_normalize_at_the_ends_of_the_range(dtype, scale):
    v = jnp.asarray(_weights(scale), dtype)
    g = jnp.asarray([1.0, 2.0, 0.5], jnp.float32)
    got = _normalize(v, g)
    assert got.dtype == dtype
    v64 = np.asarray(v).astype(np.float64)  # exact from each of these dtypes
    expected = np.asarray(g, np.float64) * v64 / np.maximum(_np_norms(v64, 0), 1e-12)
    np.testing.assert_allclose(np.asarray(got).astype(np.float64), expected, rtol=4 * UNIT_ROUNDOFF[dtype])


@pytest.mark.parametrize("scale", [1e20, 1e-25])
def test_weight_norm_init_is_the_norm_and_reproduces_v(scale):
    v = jnp.asarray(_weights(scale).astype(np.float32))
    v64 = np.asarray(v, np.float64)
    g, w = _init_and_normalize(v)
    np.testing.assert_allclose(np.asarray(g, np.float64), _np_norms(v64, 0).ravel(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(w, np.float64), v64, rtol=1e-6)


@jax.jit
def _init_and_normalize(v):
    g = jaxreg.weight_norm_init(v)
    return g, jaxreg.weight_normalize(v, g, eps=1e-30)


def test_weight_normalize_float64_extremes():
    with jax.enable_x64(True):
        for scale in (1e200, 1e-200):
            v = jnp.asarray(_weights(scale), jnp.float64)
            g = jnp.asarray([1.0, 2.0, 0.5], jnp.float64)
            got = _normalize(v, g)
            assert got.dtype == jnp.float64
            expected = np.asarray(g) * np.asarray(v) / np.maximum(_np_norms(np.asarray(v), 0), 1e-12)
            np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-14)


def test_weight_normalize_gradients_are_finite_and_match_the_formula():
    # d/dv of <g v / ||v||, C> = g (C - <v_hat, C> v_hat) / ||v|| per column; 0 at v = 0 (below eps
    # the norm is the constant eps: g C / eps).
    rng = np.random.default_rng(3)
    c = rng.standard_normal((4, 2))
    g = np.array([1.5, 0.5])

    @functools.partial(jax.jit, static_argnames="eps")
    def grad_fn(v, g, eps=1e-12):  # the gradient of <weight_normalize(v, g, eps=eps), c> w.r.t. v
        return jax.grad(lambda v: jnp.sum(jaxreg.weight_normalize(v, g, eps=eps) * c))(v)

    for scale in (1e20, 1.0):
        v = _weights(scale, (4, 2), seed=4)
        v32 = v.astype(np.float32)
        grad = grad_fn(jnp.asarray(v32), jnp.asarray(g.astype(np.float32)))
        v64 = v32.astype(np.float64)
        n = _np_norms(v64, 0)
        v_hat = v64 / n
        expected = g * (c - np.sum(v_hat * c, axis=0, keepdims=True) * v_hat) / n
        np.testing.assert_allclose(
            np.asarray(grad, np.float64), expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max()
        )
    grad = grad_fn(jnp.asarray(np.zeros((4, 2), np.float32)), jnp.asarray(np.ones(2, np.float32)), eps=1e-3)
    np.testing.assert_allclose(np.asarray(grad), c / 1e-3, rtol=1e-5)


@pytest.mark.parametrize(
    ("shape", "feature_axes"), [((0, 3), -1), ((3, 0), -1), ((0, 3), None), ((2, 0, 4), -1)]
)
def test_zero_size_weights(shape, feature_axes):
    v = jnp.asarray(np.zeros(shape, np.float32))
    g = jaxreg.weight_norm_init(v, feature_axes=feature_axes)
    np.testing.assert_array_equal(np.asarray(g), 0.0)
    w = jax.jit(lambda v, g: jaxreg.weight_normalize(v, g, feature_axes=feature_axes))(v, g)
    assert w.shape == shape and w.dtype == v.dtype


def test_linen_and_nnx_wrappers_keep_the_output_of_large_kernels_at_init():
    x = jnp.asarray(np.random.default_rng(5).standard_normal((2, 4)).astype(np.float32))
    kernel = jnp.asarray(_weights(1e20, (4, 3), seed=6).astype(np.float32))
    expected = np.asarray(x, np.float64) @ np.asarray(kernel, np.float64)

    model = jrl.WeightNorm(nn.Dense(3, use_bias=False, kernel_init=lambda *_: kernel))
    variables = model.init(jax.random.key(0), x)
    np.testing.assert_allclose(np.asarray(model.apply(variables, x), np.float64), expected, rtol=1e-5)

    layer = nnx.Linear(4, 3, use_bias=False, kernel_init=lambda *_: kernel, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(layer.kernel[...], kernel)
    wrapped = jrx.WeightNorm(layer)
    out = nnx.jit(lambda model, x: model(x))(wrapped, x)
    np.testing.assert_allclose(np.asarray(out, np.float64), expected, rtol=1e-5)
