"""spectral_norm_init and spectral_normalize against NumPy SVD and Miyato et al.'s gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_normal, sigma_max

import jaxreg


@pytest.mark.parametrize("shape", [(8, 5), (5, 8), (3, 3, 4, 6)])
def test_spectral_normalize_reaches_unit_top_singular_value(shape):
    w = jnp.asarray(random_normal(0, shape, 3.0))
    state = jaxreg.spectral_norm_init(jax.random.key(1), w, n_steps=0)  # start from a random u
    step = jax.jit(lambda w, s: jaxreg.spectral_normalize(w, s, n_steps=1))
    for _ in range(100):
        w_sn, state = step(w, state)
    # Power iteration converges geometrically at rate (sigma_2 / sigma_1)^2 per step; 100 steps are
    # ample for these draws, whose top two singular values are well separated.
    assert abs(sigma_max(w_sn) - 1.0) < 1e-3
    assert w_sn.shape == w.shape and w_sn.dtype == w.dtype
    np.testing.assert_allclose(np.asarray(w_sn), np.asarray(w) / sigma_max(w), rtol=1e-3, atol=1e-6)


def test_spectral_norm_init_is_accurate_and_eval_mode_is_deterministic():
    w = jnp.asarray(random_normal(2, (10, 4)))
    state = jaxreg.spectral_norm_init(jax.random.key(0), w)  # 15 power iterations, as torch
    assert state.u.shape == (4,)
    np.testing.assert_allclose(float(jnp.linalg.norm(state.u)), 1.0, rtol=1e-6)
    w_eval, same = jaxreg.spectral_normalize(w, state, update=False)
    assert same is state  # no iteration, state returned unchanged
    # sigma = ||W u|| with the stored u.
    sigma = np.linalg.norm(np.asarray(w, np.float64) @ np.asarray(state.u, np.float64))
    np.testing.assert_allclose(np.asarray(w_eval), np.asarray(w) / sigma, rtol=1e-5)
    assert abs(sigma / sigma_max(w) - 1.0) < 1e-2


def test_spectral_normalize_gradient_matches_miyato():
    # L = <W / sigma, C> with sigma = ||W u|| and u held fixed:
    # dL/dW = C / sigma - <W, C> / sigma^2 * v u^T with v = W u / sigma (Miyato et al., eq. 12).
    w = random_normal(3, (6, 4)).astype(np.float64)
    c = random_normal(4, (6, 4)).astype(np.float64)
    state = jaxreg.spectral_norm_init(jax.random.key(0), jnp.asarray(w, jnp.float32))
    u = np.asarray(state.u, np.float64)

    def loss(w):
        w_sn, _ = jaxreg.spectral_normalize(w, state, update=False)
        return jnp.sum(w_sn * jnp.asarray(c, jnp.float32))

    grad = np.asarray(jax.grad(loss)(jnp.asarray(w, jnp.float32)))
    sigma = np.linalg.norm(w @ u)
    v = w @ u / sigma
    expected = c / sigma - np.sum(w * c) / sigma**2 * np.outer(v, u)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)


def test_spectral_normalize_zero_weight_is_finite():
    w = jnp.zeros((3, 2))
    state = jaxreg.spectral_norm_init(jax.random.key(0), w)
    w_sn, state = jaxreg.spectral_normalize(w, state)
    grad = jax.grad(lambda w: jnp.sum(jaxreg.spectral_normalize(w, state)[0]))(w)
    assert np.all(np.isfinite(np.asarray(w_sn))) and np.all(np.isfinite(np.asarray(grad)))
    assert np.all(np.isfinite(np.asarray(state.u)))


def test_spectral_normalize_errors_name_the_argument():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"w must have at least 2 dimensions, got shape \(3,\)"):
        jaxreg.spectral_norm_init(key, jnp.ones(3))
    state = jaxreg.spectral_norm_init(key, jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="w must have at least 2"):
        jaxreg.spectral_normalize(jnp.ones(3), state)
    with pytest.raises(ValueError, match=r"state.u must have shape \(5,\)"):
        jaxreg.spectral_normalize(jnp.ones((4, 5)), state)
    with pytest.raises(ValueError, match="n_steps"):
        jaxreg.spectral_normalize(jnp.ones((4, 3)), state, n_steps=-1)
    with pytest.raises(TypeError, match="n_steps"):
        jaxreg.spectral_normalize(jnp.ones((4, 3)), state, n_steps=1.5)
    with pytest.raises(ValueError, match="eps"):
        jaxreg.spectral_normalize(jnp.ones((4, 3)), state, eps=0.0)
