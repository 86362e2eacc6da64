"""Matrix penalties (and the group lasso's group norms) on zero-size weights and at the ends of each
dtype's range.

Oracles: the formulas in float64 NumPy; for zero-size weights, the conventions of the empty sum
(orthogonal penalties) and of the zero map (sigma_max = 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg

EPS = 1e-7  # Keras's normalize floor, used by orthogonal_penalty


def _np_normalize_rows(m):
    m = np.asarray(m, np.float64)
    s = np.max(np.abs(m), axis=1, keepdims=True, initial=0.0)
    s = np.where(s > 0, s, 1.0)
    norms = s * np.sqrt(np.sum((m / s) ** 2, axis=1, keepdims=True))
    return m / np.maximum(norms, EPS)


def _np_orthogonal(w, mode):
    m = np.asarray(w, np.float64)
    m = m if mode == "rows" else m.T
    n = m.shape[0]
    if n < 2:
        return 0.0
    m_hat = _np_normalize_rows(m)
    gram = np.abs(m_hat @ m_hat.T) * (1 - np.eye(n))
    return np.sum(gram) / (n * (n - 1))


@pytest.mark.parametrize("shape", [(5, 0), (0, 5), (0, 0), (0, 3, 4), (3, 0, 4), (2, 3, 0)])
def test_spectral_penalty_of_a_zero_size_weight_is_zero(shape):
    got, grad = jax.jit(jax.value_and_grad(jaxreg.spectral_penalty))(
        jax.device_put(np.zeros(shape, np.float32))
    )
    assert got.shape == () and got.dtype == jnp.float32
    assert float(got) == 0.0
    assert grad.shape == shape


@pytest.mark.parametrize("shape", [(5, 0), (0, 5), (0, 0)])
def test_orthogonal_penalties_of_zero_size_weights(shape):
    w = np.zeros(shape)
    rows, columns, soft = jax.jit(  # one compilation for the three
        lambda w: (
            jaxreg.orthogonal_penalty(w, "rows"),
            jaxreg.orthogonal_penalty(w, "columns"),
            jaxreg.soft_orthogonal_penalty(w),
        )
    )(jax.device_put(np.asarray(w, np.float32)))
    assert float(rows) == _np_orthogonal(w, "rows")
    assert float(columns) == _np_orthogonal(w, "columns")
    # ||W^T W - I||_F^2 with W^T W the (out, out) zero matrix: out.
    assert float(soft) == float(shape[1])


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [
        (jnp.float32, 1e20),
        (jnp.float32, 3e38),
        (jnp.bfloat16, 1e20),
        (jnp.bfloat16, 3e38),
        (jnp.float16, 6e4),
    ],
)
@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_penalty_on_huge_rows_is_the_mean_cosine(dtype, scale, mode):
    rng = np.random.default_rng(0)
    w = jax.device_put((rng.uniform(-1.0, 1.0, (4, 3)) * scale).astype(dtype))
    w64 = np.asarray(w).astype(np.float64)
    got = float(jax.jit(jaxreg.orthogonal_penalty, static_argnums=1)(w, mode))
    np.testing.assert_allclose(got, _np_orthogonal(w64, mode), rtol=1e-5)


def test_orthogonal_penalty_float64_extremes():
    with jax.enable_x64(True):
        w = np.random.default_rng(1).uniform(-1.0, 1.0, (4, 3)) * 1e200
        got = float(jax.jit(jaxreg.orthogonal_penalty)(jax.device_put(w)))
        np.testing.assert_allclose(got, _np_orthogonal(w, "rows"), rtol=1e-12)


@pytest.mark.parametrize(
    ("scale", "dtype"), [(1e20, jnp.float32), (1e-25, jnp.float32), (1e20, jnp.bfloat16)]
)
def test_group_lasso_penalty_norms_neither_overflow_nor_underflow(scale, dtype):
    w = jax.device_put((np.random.default_rng(2).uniform(0.5, 1.0, (3, 4)) * scale).astype(dtype))
    w64 = np.asarray(w).astype(np.float64)
    s = np.max(np.abs(w64), axis=1, keepdims=True)
    expected = np.sum(s * np.sqrt(np.sum((w64 / s) ** 2, axis=1, keepdims=True)))
    got = float(jax.jit(lambda p: jaxreg.group_lasso_penalty(p, axis=0))({"w": w}))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
