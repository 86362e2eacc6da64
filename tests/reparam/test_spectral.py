"""spectral_norm_init and spectral_normalize against NumPy SVD and Miyato et al.'s gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import on_device, random_normal, sigma_max

import jaxreg


@jax.jit
def _hundred_calls(key, w):
    """spectral_norm_init from a random u (n_steps=0), then 100 training calls of one iteration each."""
    state = jaxreg.spectral_norm_init(key, w, n_steps=0)
    return jax.lax.fori_loop(
        0,
        100,
        lambda _, out: jaxreg.spectral_normalize(w, out[1], n_steps=1),
        (jnp.zeros_like(w), state),
    )


@pytest.mark.parametrize("shape", [(8, 5), (5, 8), (3, 3, 4, 6)])
def test_spectral_normalize_reaches_unit_top_singular_value(shape):
    w = jnp.asarray(random_normal(0, shape, 3.0))
    w_sn, _ = _hundred_calls(jax.random.key(1), w)  # one program: the init and the 100 calls
    # Power iteration converges geometrically at rate (sigma_2 / sigma_1)^2 per step; 100 steps are
    # ample for these draws, whose top two singular values are well separated.
    assert abs(sigma_max(w_sn) - 1.0) < 1e-3
    assert w_sn.shape == w.shape and w_sn.dtype == w.dtype
    np.testing.assert_allclose(np.asarray(w_sn), np.asarray(w) / sigma_max(w), rtol=1e-3, atol=1e-6)


def test_spectral_norm_init_is_accurate_and_eval_mode_is_deterministic():
    w = jnp.asarray(random_normal(2, (10, 4)))
    state = jaxreg.spectral_norm_init(jax.random.key(0), w)  # 15 power iterations, as torch
    assert state.u.shape == (4,)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(state.u, np.float64)), 1.0, rtol=1e-6)

    @jax.jit
    def evaluate(w, state):
        w_eval, same = jaxreg.spectral_normalize(w, state, update=False)
        assert same is state  # no iteration, state returned unchanged: the same Python object (at trace time)
        return w_eval

    w_eval = evaluate(w, state)
    # sigma = ||W u|| with the stored u.
    sigma = np.linalg.norm(np.asarray(w, np.float64) @ np.asarray(state.u, np.float64))
    np.testing.assert_allclose(np.asarray(w_eval), np.asarray(w) / sigma, rtol=1e-5)
    assert abs(sigma / sigma_max(w) - 1.0) < 1e-2


def test_spectral_normalize_gradient_matches_miyato():
    # L = <W / sigma, C> with sigma = ||W u|| and u held fixed:
    # dL/dW = C / sigma - <W, C> / sigma^2 * v u^T with v = W u / sigma (Miyato et al., eq. 12).
    w = random_normal(3, (6, 4)).astype(np.float64)
    c = random_normal(4, (6, 4)).astype(np.float64)
    state = jaxreg.spectral_norm_init(jax.random.key(0), jnp.asarray(w.astype(np.float32)))
    u = np.asarray(state.u, np.float64)

    def loss(w):
        w_sn, _ = jaxreg.spectral_normalize(w, state, update=False)
        return jnp.sum(w_sn * jnp.asarray(c, jnp.float32))

    grad = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(w.astype(np.float32))))
    sigma = np.linalg.norm(w @ u)
    v = w @ u / sigma
    expected = c / sigma - np.sum(w * c) / sigma**2 * np.outer(v, u)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)


def test_spectral_normalize_zero_weight_is_finite():
    # (3, 4) as in test_spectral_regressions: the two tests share spectral_norm_init's compiled program.
    w = jnp.asarray(np.zeros((3, 4), np.float32))
    state = jaxreg.spectral_norm_init(jax.random.key(0), w)

    @jax.jit
    def call(w, state):  # the training call, and the gradient from the state it returns
        w_sn, state = jaxreg.spectral_normalize(w, state)
        return w_sn, state, jax.grad(lambda w: jnp.sum(jaxreg.spectral_normalize(w, state)[0]))(w)

    w_sn, state, grad = call(w, state)
    assert np.all(np.isfinite(np.asarray(w_sn))) and np.all(np.isfinite(np.asarray(grad)))
    assert np.all(np.isfinite(np.asarray(state.u)))


def test_spectral_normalize_errors_name_the_argument():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"w must have at least 2 dimensions, got shape \(3,\)"):
        jaxreg.spectral_norm_init(key, on_device(np.ones(3)))
    w = on_device(
        np.ones((6, 4))
    )  # the shape of the Miyato test's weight: its spectral_norm_init program serves both
    state = jaxreg.spectral_norm_init(key, w)
    with pytest.raises(ValueError, match="w must have at least 2"):
        jaxreg.spectral_normalize(on_device(np.ones(3)), state)
    with pytest.raises(ValueError, match=r"state.u must have shape \(5,\)"):
        jaxreg.spectral_normalize(on_device(np.ones((4, 5))), state)
    with pytest.raises(ValueError, match="n_steps"):
        jaxreg.spectral_normalize(w, state, n_steps=-1)
    with pytest.raises(TypeError, match="n_steps"):
        jaxreg.spectral_normalize(w, state, n_steps=1.5)
    with pytest.raises(ValueError, match="eps"):
        jaxreg.spectral_normalize(w, state, eps=0.0)


# --- stacks of weights (batch_dims) ------------------------------------------------------------------


def _train_eval(w, u, c, batch_dims):
    """A training step (2 iterations: w_sn, the new u, the gradient of <w_sn, c>), then evaluation."""

    def loss(w):
        w_sn, state = jaxreg.spectral_normalize(
            w, jaxreg.SpectralNormState(u), n_steps=2, batch_dims=batch_dims
        )
        return jnp.sum(w_sn * c), (w_sn, state.u)

    (_, (w_sn, u2)), grad = jax.value_and_grad(loss, has_aux=True)(w)
    w_eval, _ = jaxreg.spectral_normalize(
        w, jaxreg.SpectralNormState(u2), update=False, batch_dims=batch_dims
    )
    return w_sn, u2, grad, w_eval


@pytest.mark.parametrize(("shape", "batch_dims"), [((3, 5, 4), 1), ((2, 2, 2, 3, 4), 2)])
def test_spectral_normalize_of_a_stack_equals_a_loop_over_its_weights(shape, batch_dims):
    # The oracle: a Python loop over the weights of the stack (scanned layers' kernels; a grid of
    # conv kernels for batch_dims=2), each normalized by the unbatched function from its own u.
    w = jnp.asarray(random_normal(5, shape))
    c = jnp.asarray(random_normal(6, shape))
    batch, item = shape[:batch_dims], shape[batch_dims:]
    # spectral_norm_init: the random draws (n_steps=0), and the draws refined by 2 power iterations.
    u_init, refined = jax.jit(
        lambda w: [
            jaxreg.spectral_norm_init(jax.random.key(2), w, n_steps=n, batch_dims=batch_dims).u
            for n in (0, 2)
        ]
    )(w)
    assert u_init.shape == (*batch, shape[-1])
    u0 = np.asarray(u_init).reshape(-1, shape[-1])
    np.testing.assert_allclose(np.linalg.norm(u0, axis=-1), 1.0, rtol=1e-6)
    assert len({tuple(u.round(4)) for u in u0}) == len(u0)  # one independent draw per weight
    got = jax.jit(_train_eval, static_argnums=3)(w, u_init, c, batch_dims)
    got = [np.asarray(x).reshape(-1, *x.shape[batch_dims:]) for x in got]
    one = jax.jit(_train_eval, static_argnums=3)  # batch_dims=0: one compilation for the loop
    w_items, c_items = (np.asarray(a).reshape(-1, *item) for a in (w, c))
    for i, (w_i, c_i) in enumerate(zip(w_items, c_items, strict=True)):
        want = one(jnp.asarray(w_i), jnp.asarray(u0[i]), jnp.asarray(c_i), 0)
        for name, g, x in zip(("w_sn", "u", "grad", "w_eval"), got, want, strict=True):
            np.testing.assert_allclose(g[i], np.asarray(x), rtol=1e-4, atol=1e-6, err_msg=f"{name} {i}")
    # Evaluation divides each weight by ||M u|| with its own stored u (NumPy).
    m = np.asarray(w, np.float64).reshape(len(u0), -1, shape[-1])
    sigma = np.linalg.norm(np.einsum("bij,bj->bi", m, got[1].astype(np.float64)), axis=-1)
    np.testing.assert_allclose(
        got[3], np.asarray(w).reshape(len(u0), *item) / sigma.reshape(-1, *[1] * len(item)), rtol=1e-5
    )
    # spectral_norm_init refines the same draws by the same power iteration, each u on its weight.
    np.testing.assert_allclose(np.asarray(refined).reshape(len(u0), -1), got[1], rtol=1e-5, atol=1e-6)


def test_spectral_normalize_batch_dims_errors_name_the_argument():
    key, w = jax.random.key(0), on_device(np.ones((3, 4, 2)))
    for kwargs in ({}, {"batch_dims": 1}):
        # The shapes of the state spectral_norm_init makes (only shapes are checked: nothing compiled).
        state = jax.eval_shape(lambda kwargs=kwargs: jaxreg.spectral_norm_init(key, w, n_steps=0, **kwargs))
        other = 1 - kwargs.get("batch_dims", 0)
        with pytest.raises(ValueError, match=rf"state.u must have shape .* batch_dims={other}"):
            jaxreg.spectral_normalize(w, state, batch_dims=other)
    for fn in (
        lambda **kw: jaxreg.spectral_norm_init(key, w, **kw),
        lambda **kw: jaxreg.spectral_normalize(w, jaxreg.SpectralNormState(on_device(np.ones(2))), **kw),
    ):
        with pytest.raises(ValueError, match=r"batch_dims=2 needs w with at least 4 dimensions"):
            fn(batch_dims=2)
        with pytest.raises(ValueError, match="batch_dims must be >= 0, got -1"):
            fn(batch_dims=-1)
        with pytest.raises(TypeError, match="batch_dims must be an int"):
            fn(batch_dims=True)
