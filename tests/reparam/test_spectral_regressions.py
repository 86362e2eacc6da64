"""Spectral normalization at the edges: zero weights, a collapsed power-iteration vector, the ends of
each float dtype's range, zero-size weights, and the Flax wrappers around attention (zero biases).

Oracles: NumPy's SVD in float64 (W / sigma_max(W)) and Flax's convention sigma = 1 for sigma = 0.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import on_device

import jaxreg
import jaxreg.linen as jrl
import jaxreg.nnx as jrx


def _sigma_max(w):
    m = np.asarray(w, np.float64)
    m = m.reshape(-1, m.shape[-1])
    return np.linalg.svd(m, compute_uv=False)[0]


@jax.jit
def _run(w, state, calls):
    """``calls`` training calls of spectral_normalize (``calls >= 1``) in one program: the last output and state.

    Module level, ``calls`` traced: one compilation per shape and dtype, shared by the tests.
    """
    return jax.lax.fori_loop(
        0, calls, lambda _, out: jaxreg.spectral_normalize(w, out[1]), (jnp.zeros_like(w), state)
    )


_normalize = functools.partial(jax.jit, static_argnames="update")(jaxreg.spectral_normalize)


# --- a zero weight, then a nonzero one ------------------------------------------------------------


def test_state_initialized_on_a_zero_column_recovers_when_the_weight_becomes_nonzero():
    state = jaxreg.spectral_norm_init(jax.random.key(0), on_device(np.zeros((4, 1))))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(state.u, np.float64)), 1.0, rtol=1e-6)
    w = jnp.asarray(np.full((4, 1), 1e-3, np.float32))
    w_sn, state = _run(w, state, 1)  # one call
    # W / sigma_max(W): a column of four entries 1e-3 has sigma = 2e-3.
    np.testing.assert_allclose(np.asarray(w_sn), np.full((4, 1), 0.5), rtol=1e-6)
    np.testing.assert_allclose(np.abs(np.asarray(state.u)), [1.0], rtol=1e-6)


@pytest.mark.parametrize("shape", [(3, 4), (6, 2), (2, 3, 5)])
def test_state_initialized_on_zeros_recovers_on_a_random_weight(shape):
    state = jaxreg.spectral_norm_init(jax.random.key(1), on_device(np.zeros(shape)))
    w = jnp.asarray(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    w_sn, state = _run(w, state, 60)
    np.testing.assert_allclose(
        np.asarray(w_sn), np.asarray(w, np.float64) / _sigma_max(w), rtol=1e-4, atol=1e-6
    )


def test_a_collapsed_u_recovers_in_one_call():
    # u = 0 (what the iteration used to produce on a zero weight) and a u orthogonal to the rows of W.
    w = jnp.asarray([[0.0, 2.0], [0.0, 0.0]])
    for u in ([0.0, 0.0], [1.0, 0.0]):
        w_sn, state = _run(w, jaxreg.SpectralNormState(jnp.asarray(u)), 1)  # one call
        np.testing.assert_allclose(np.asarray(w_sn), np.asarray(w) / 2.0, rtol=1e-6)
        np.testing.assert_allclose(np.abs(np.asarray(state.u)), [0.0, 1.0], atol=1e-7)
        # ...and for a random weight after a few calls.
        w_r = jnp.asarray(np.random.default_rng(2).standard_normal((5, 2)).astype(np.float32))
        w_sn, _ = _run(w_r, jaxreg.SpectralNormState(jnp.asarray(u)), 40)
        np.testing.assert_allclose(np.asarray(w_sn), np.asarray(w_r, np.float64) / _sigma_max(w_r), rtol=1e-4)


def test_zero_weight_uses_sigma_one_and_keeps_u_a_unit_vector():
    # Flax's convention (flax.linen.SpectralNorm divides by 1 where sigma == 0): at W = 0 the output is
    # 0 and the gradient of <W_sn, C> is C itself, not C / eps.
    w = on_device(np.zeros((3, 4)))
    state = jaxreg.spectral_norm_init(jax.random.key(0), w)
    c = jnp.asarray(np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32))

    @jax.jit
    def call(w, state):  # the gradient at W, then the training call
        grad = jax.grad(lambda w: jnp.sum(jaxreg.spectral_normalize(w, state)[0] * c))(w)
        return grad, *jaxreg.spectral_normalize(w, state)

    for _ in range(3):
        grad, w_sn, state = call(w, state)
        np.testing.assert_array_equal(np.asarray(w_sn), np.zeros((3, 4)))
        np.testing.assert_allclose(np.asarray(grad), np.asarray(c), rtol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(np.asarray(state.u, np.float64)), 1.0, rtol=1e-6)


# --- the ends of the dtype ranges -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [
        (jnp.float32, 1e20),
        (jnp.float32, 1e37),  # sigma = 4e37 * ... above the float32 maximum for the 8 x 8 below
        (jnp.float32, 1e-30),
        (jnp.bfloat16, 1e20),
        (jnp.bfloat16, 1e37),
        (jnp.float16, 6e3),
        (jnp.float16, 1e-3),
    ],
)
def test_extreme_magnitudes_give_w_over_sigma(dtype, scale):
    base = np.random.default_rng(4).uniform(0.5, 1.0, (8, 8))
    w = jnp.asarray(base * scale, dtype)
    w64 = np.asarray(w).astype(np.float64)
    state = jaxreg.spectral_norm_init(jax.random.key(0), w)
    w_sn, _ = _run(w, state, 5)
    sigma = _sigma_max(w64)
    expected = w64 / max(sigma, 1e-12)
    tol = {jnp.float32: 1e-4, jnp.bfloat16: 1e-2, jnp.float16: 2e-3}[dtype]
    assert w_sn.dtype == dtype
    np.testing.assert_allclose(np.asarray(w_sn).astype(np.float64), expected, rtol=tol, atol=tol * 1e-3)


def test_float64_extremes():
    with jax.enable_x64(True):
        for scale in (1e300, 1e-300):
            w = jnp.asarray(np.random.default_rng(5).uniform(0.5, 1.0, (4, 3)) * scale, jnp.float64)
            w_sn, _ = _run(w, jaxreg.spectral_norm_init(jax.random.key(0), w), 30)
            assert w_sn.dtype == jnp.float64
            sigma = _sigma_max(np.asarray(w) / scale) * scale
            np.testing.assert_allclose(np.asarray(w_sn), np.asarray(w) / max(sigma, 1e-12), rtol=1e-8)


# --- zero-size weights ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 0), (0, 5), (0, 3, 4), (2, 0, 3)])
def test_zero_size_weights(shape):
    w = on_device(np.zeros(shape))
    state = jaxreg.spectral_norm_init(jax.random.key(0), w)
    assert state.u.shape == (shape[-1],)
    if shape[-1]:
        np.testing.assert_allclose(np.linalg.norm(np.asarray(state.u, np.float64)), 1.0, rtol=1e-6)
    for update in (True, False):
        w_sn, new = _normalize(w, state, update=update)
        assert w_sn.shape == shape and w_sn.dtype == w.dtype
        np.testing.assert_array_equal(np.asarray(new.u), np.asarray(state.u))


# --- Flax wrappers around attention (query/key/value biases of shape (heads, head_dim) start at 0) -


def _attention_data():
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.standard_normal((4, 5, 8)).astype(np.float32))
    y = jnp.asarray(rng.standard_normal((4, 5, 8)).astype(np.float32))
    return x, y


def test_linen_spectral_norm_around_attention_trains_with_adam():
    x, y = _attention_data()
    model = jrl.SpectralNorm(nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8))
    tx = optax.adam(1e-2)

    @jax.jit
    def train(key):  # init, then 10 training steps: one program
        variables = model.init(key, x, update_stats=False)
        params, stats = variables["params"], variables["batch_stats"]

        def step(carry, _):
            params, stats, opt_state = carry

            def loss_fn(params):
                out, updates = model.apply(
                    {"params": params, "batch_stats": stats}, x, update_stats=True, mutable=["batch_stats"]
                )
                return jnp.mean((out - y) ** 2), updates["batch_stats"]

            (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), stats, opt_state), loss

        (_, stats, _), losses = jax.lax.scan(step, (params, stats, tx.init(params)), length=10)
        return losses, stats

    losses, stats = train(jax.random.key(0))
    losses = np.asarray(losses).tolist()
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses
    assert max(losses) < 2 * losses[0], losses
    # Every stored u is a unit vector.
    for u in jax.tree.leaves(stats):
        np.testing.assert_allclose(np.linalg.norm(np.asarray(u, np.float64)), 1.0, rtol=1e-5)


def test_nnx_spectral_norm_around_attention_trains_with_adam():
    x, y = _attention_data()
    model = jrx.SpectralNorm(
        nnx.MultiHeadAttention(num_heads=2, in_features=8, qkv_features=8, decode=False, rngs=nnx.Rngs(0)),
        rngs=nnx.Rngs(1),
    )
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        def loss_fn(model):
            return jnp.mean((model(x) - y) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer)) for _ in range(10)]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses
    assert max(losses) < 2 * losses[0], losses
    for u in jax.tree.leaves(nnx.state(model.u)):
        np.testing.assert_allclose(np.linalg.norm(np.asarray(u, np.float64)), 1.0, rtol=1e-5)
