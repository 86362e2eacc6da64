"""Spectral and weight normalization (functions and Flax wrappers) against NumPy SVD and norms."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxreg
import jaxreg.linen as jrl
import jaxreg.nnx as jrx


def _random(seed, shape, scale=1.0):
    return scale * np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _sigma_max(w):
    w = np.asarray(w, np.float64)
    return np.linalg.svd(w.reshape(-1, w.shape[-1]), compute_uv=False)[0]


# --- spectral_normalize ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 5), (5, 8), (3, 3, 4, 6)])
def test_spectral_normalize_reaches_unit_top_singular_value(shape):
    w = jnp.asarray(_random(0, shape, 3.0))
    state = jaxreg.spectral_norm_init(jax.random.key(1), w, n_steps=0)  # start from a random u
    step = jax.jit(lambda w, s: jaxreg.spectral_normalize(w, s, n_steps=1))
    for _ in range(100):
        w_sn, state = step(w, state)
    # Power iteration converges geometrically at rate (sigma_2 / sigma_1)^2 per step; 100 steps are
    # ample for these draws, whose top two singular values are well separated.
    assert abs(_sigma_max(w_sn) - 1.0) < 1e-3
    assert w_sn.shape == w.shape and w_sn.dtype == w.dtype
    np.testing.assert_allclose(np.asarray(w_sn), np.asarray(w) / _sigma_max(w), rtol=1e-3, atol=1e-6)


def test_spectral_norm_init_is_accurate_and_eval_mode_is_deterministic():
    w = jnp.asarray(_random(2, (10, 4)))
    state = jaxreg.spectral_norm_init(jax.random.key(0), w)  # 15 power iterations, as torch
    assert state.u.shape == (4,)
    np.testing.assert_allclose(float(jnp.linalg.norm(state.u)), 1.0, rtol=1e-6)
    w_eval, same = jaxreg.spectral_normalize(w, state, update=False)
    assert same is state  # no iteration, state returned unchanged
    # sigma = ||W u|| with the stored u.
    sigma = np.linalg.norm(np.asarray(w, np.float64) @ np.asarray(state.u, np.float64))
    np.testing.assert_allclose(np.asarray(w_eval), np.asarray(w) / sigma, rtol=1e-5)
    assert abs(sigma / _sigma_max(w) - 1.0) < 1e-2


def test_spectral_normalize_gradient_matches_miyato():
    # L = <W / sigma, C> with sigma = ||W u|| and u held fixed:
    # dL/dW = C / sigma - <W, C> / sigma^2 * v u^T with v = W u / sigma (Miyato et al., eq. 12).
    w = _random(3, (6, 4)).astype(np.float64)
    c = _random(4, (6, 4)).astype(np.float64)
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


# --- weight_normalize -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "feature_axes", "reduce"),
    [((5, 3), -1, (0,)), ((3, 3, 2, 4), -1, (0, 1, 2)), ((5, 3), None, (0, 1)), ((4, 2, 3), (0, 2), (1,))],
)
def test_weight_normalize_matches_numpy(shape, feature_axes, reduce):
    v = _random(0, shape)
    kept = [d for d in range(len(shape)) if d not in reduce]
    g = np.abs(_random(1, tuple(shape[d] for d in kept))) + 0.5
    norms = np.sqrt(np.sum(v.astype(np.float64) ** 2, axis=reduce, keepdims=True))
    g_b = g.reshape([shape[d] if d in kept else 1 for d in range(len(shape))])
    expected = g_b * v / norms
    got = jax.jit(lambda v, g: jaxreg.weight_normalize(v, g, feature_axes=feature_axes))(v, g)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)
    g0 = jaxreg.weight_norm_init(jnp.asarray(v), feature_axes=feature_axes)
    np.testing.assert_allclose(np.asarray(g0).reshape(-1), norms.reshape(-1), rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(jaxreg.weight_normalize(v, g0, feature_axes=feature_axes)), v, rtol=1e-5, atol=1e-6
    )


def test_weight_normalize_gradients_reach_g_and_v_and_are_finite_at_zero():
    v, c = jnp.asarray(_random(0, (5, 3))), jnp.asarray(_random(1, (5, 3)))
    g = jaxreg.weight_norm_init(v)
    gv, gg = jax.grad(lambda v, g: jnp.sum(jaxreg.weight_normalize(v, g) * c), argnums=(0, 1))(v, g)
    assert np.all(np.abs(np.asarray(gg)) > 0) and np.any(np.abs(np.asarray(gv)) > 0)
    # The gradient w.r.t. v is orthogonal to v per column (the norm is invariant to scaling v).
    np.testing.assert_allclose(np.sum(np.asarray(gv) * np.asarray(v), axis=0), 0.0, atol=1e-5)
    zero = jnp.zeros((5, 3))
    grads = jax.grad(lambda v, g: jnp.sum(jaxreg.weight_normalize(v, g)), argnums=(0, 1))(zero, g)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in grads)


def test_weight_normalize_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"g must have shape \(3,\)"):
        jaxreg.weight_normalize(jnp.ones((5, 3)), jnp.ones(5))
    with pytest.raises(ValueError, match="feature_axes"):
        jaxreg.weight_normalize(jnp.ones((5, 3)), jnp.ones(3), feature_axes=2)
    with pytest.raises(ValueError, match="eps"):
        jaxreg.weight_normalize(jnp.ones((5, 3)), jnp.ones(3), eps=-1.0)


# --- Flax NNX wrappers -----------------------------------------------------------------------------


def test_nnx_spectral_norm_keeps_param_and_normalizes_output():
    model = jrx.SpectralNorm(nnx.Linear(6, 4, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    kernel0 = np.asarray(model.layer_instance.kernel[...]).copy()
    x = jnp.asarray(_random(2, (3, 6)))

    @nnx.jit
    def forward(model, x):
        return model(x)

    for _ in range(30):
        y = forward(model, x)
    kernel = np.asarray(model.layer_instance.kernel[...])
    np.testing.assert_array_equal(kernel, kernel0)  # flax#5576: never overwritten
    expected = np.asarray(x) @ (kernel / _sigma_max(kernel)) + np.asarray(model.layer_instance.bias[...])
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-3, atol=1e-4)
    # u is a BatchStat, not a Param: trainable state is exactly the layer's params.
    assert isinstance(model.u["kernel"], nnx.BatchStat)
    assert set(nnx.to_flat_state(nnx.state(model, nnx.Param)).paths) == {
        ("layer_instance", "kernel"),
        ("layer_instance", "bias"),
    }
    # eval(): the stored u no longer changes.
    model.eval()
    u0 = np.asarray(model.u["kernel"][...]).copy()
    forward(model, x)
    np.testing.assert_array_equal(np.asarray(model.u["kernel"][...]), u0)
    assert model.use_running_average
    model.train()
    assert not model.use_running_average


def _np_power_step(kernel, u):
    # One power iteration (Miyato et al., Algorithm 1) on M = kernel, output axis last.
    m = np.asarray(kernel, np.float64)
    v = m @ u
    v /= np.linalg.norm(v)
    u = m.T @ v
    return u / np.linalg.norm(u)


def test_nnx_spectral_norm_trains_raw_param_not_u():
    # Training mode (the default update_stats=True): every step refines u by one power iteration,
    # and the kernel Param changes by exactly the optimizer's update -lr * grad, nothing else.
    lr = 0.1
    model = jrx.SpectralNorm(nnx.Linear(4, 3, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    optimizer = nnx.Optimizer(model, optax.sgd(lr), wrt=nnx.Param)
    x, y = jnp.asarray(_random(0, (8, 4))), jnp.asarray(_random(1, (8, 3)))

    @nnx.jit
    def step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        optimizer.update(model, grads)
        return loss, grads

    losses = []
    for _ in range(5):
        k0 = np.asarray(model.layer_instance.kernel[...]).copy()
        u0 = np.asarray(model.u["kernel"][...], np.float64).copy()
        loss, grads = step(model, optimizer, x, y)
        losses.append(float(loss))
        # u is not trained: the gradients are those of the Params only.
        assert set(nnx.to_flat_state(grads).paths) == {
            ("layer_instance", "kernel"),
            ("layer_instance", "bias"),
        }
        k1 = np.asarray(model.layer_instance.kernel[...])
        grad = np.asarray(grads["layer_instance"]["kernel"][...])
        np.testing.assert_allclose(k1, k0 - lr * grad, rtol=1e-6, atol=1e-7)
        u1 = np.asarray(model.u["kernel"][...], np.float64)
        assert not np.array_equal(u1, u0)
        np.testing.assert_allclose(u1, _np_power_step(k0, u0), rtol=1e-5, atol=1e-6)
    assert losses[-1] < losses[0]
    # Evaluation mode leaves u alone.
    u0 = np.asarray(model.u["kernel"][...]).copy()
    model(x, update_stats=False)
    np.testing.assert_array_equal(np.asarray(model.u["kernel"][...]), u0)


def test_nnx_weight_norm_output_unchanged_at_init_and_g_v_train():
    bare = nnx.Linear(5, 3, rngs=nnx.Rngs(0))
    model = jrx.WeightNorm(nnx.Linear(5, 3, rngs=nnx.Rngs(0)))
    x = jnp.asarray(_random(0, (4, 5)))
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(bare(x)), rtol=1e-5, atol=1e-6)  # flax#4138
    assert isinstance(model.scales["kernel"], nnx.Param)  # flax#5577
    grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
    assert np.all(np.abs(np.asarray(grads["scales"]["kernel"][...])) > 0)
    assert np.any(np.abs(np.asarray(grads["layer_instance"]["kernel"][...])) > 0)
    v0, g0 = (
        np.asarray(model.layer_instance.kernel[...]).copy(),
        np.asarray(model.scales["kernel"][...]).copy(),
    )
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    optimizer.update(model, grads)
    assert not np.array_equal(np.asarray(model.scales["kernel"][...]), g0)
    assert not np.array_equal(np.asarray(model.layer_instance.kernel[...]), v0)
    # After the step the layer computes with g * v / ||v||, and v itself is stored as is.
    v, g = np.asarray(model.layer_instance.kernel[...]), np.asarray(model.scales["kernel"][...])
    expected = np.asarray(x) @ (g * v / np.linalg.norm(v, axis=0)) + np.asarray(
        model.layer_instance.bias[...]
    )
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-5, atol=1e-5)


def test_nnx_weight_norm_conv_and_state_passthrough():
    conv = nnx.Conv(2, 4, kernel_size=(3, 3), rngs=nnx.Rngs(0))
    model = jrx.WeightNorm(conv)
    x = jnp.asarray(_random(1, (1, 5, 5, 2)))
    bare = nnx.Conv(2, 4, kernel_size=(3, 3), rngs=nnx.Rngs(0))
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(bare(x)), rtol=1e-5, atol=1e-5)
    assert model.scales["kernel"].shape == (4,)
    # Non-Param state the wrapped layer updates (BatchNorm statistics) is kept.
    bn = jrx.WeightNorm(nnx.BatchNorm(3, rngs=nnx.Rngs(0)), variable_filter=nnx.PathContains("scale"))
    xb = _random(2, (8, 3)) + 5.0
    bn(jnp.asarray(xb))
    # nnx.BatchNorm's running mean after one step from 0 with momentum 0.99: 0.01 * batch mean.
    np.testing.assert_allclose(np.asarray(bn.layer_instance.mean[...]), 0.01 * xb.mean(axis=0), rtol=1e-4)


# --- Flax linen wrappers ---------------------------------------------------------------------------


class _SN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        return jrl.SpectralNorm(nn.Dense(4))(x, update_stats=train)


class _WN(nn.Module):
    @nn.compact
    def __call__(self, x):
        return jrl.WeightNorm(nn.Dense(3))(x)


class _Bare(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(self.features)(x)


def test_linen_spectral_norm_stored_param_never_changes():
    x = jnp.asarray(_random(0, (3, 6)))
    variables = _SN().init(jax.random.key(0), x, train=False)
    bare = _Bare(4).init(jax.random.key(0), x)
    kernel = np.asarray(variables["params"]["Dense_0"]["kernel"])
    np.testing.assert_array_equal(kernel, np.asarray(bare["params"]["Dense_0"]["kernel"]))  # also at init
    assert set(variables["batch_stats"]["SpectralNorm_0"]) == {"Dense_0/kernel/u"}
    apply = jax.jit(lambda v, x: _SN().apply(v, x, train=True, mutable=True))
    for _ in range(30):
        y, updates = apply(variables, x)
        np.testing.assert_array_equal(np.asarray(updates["params"]["Dense_0"]["kernel"]), kernel)
        variables = {"params": variables["params"], "batch_stats": updates["batch_stats"]}
    expected = np.asarray(x) @ (kernel / _sigma_max(kernel)) + np.asarray(
        variables["params"]["Dense_0"]["bias"]
    )
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-3, atol=1e-4)
    y_eval = _SN().apply(variables, x, train=False)  # no mutable collection needed in eval
    np.testing.assert_allclose(np.asarray(y_eval), expected, rtol=1e-3, atol=1e-4)


def test_linen_weight_norm_output_unchanged_at_init_and_both_params_get_gradients():
    x = jnp.asarray(_random(0, (4, 5)))
    variables = _WN().init(jax.random.key(0), x)
    params = variables["params"]
    bare = {"params": {"Dense_0": params["Dense_0"]}}
    np.testing.assert_allclose(
        np.asarray(_WN().apply(variables, x)), np.asarray(_Bare(3).apply(bare, x)), rtol=1e-5, atol=1e-6
    )
    scale = params["WeightNorm_0"]["Dense_0/kernel/scale"]
    np.testing.assert_allclose(
        np.asarray(scale), np.linalg.norm(np.asarray(params["Dense_0"]["kernel"]), axis=0), rtol=1e-6
    )
    grads = jax.grad(lambda p: jnp.sum(_WN().apply({"params": p}, x) ** 2))(params)
    assert np.all(np.abs(np.asarray(grads["WeightNorm_0"]["Dense_0/kernel/scale"])) > 0)
    assert np.any(np.abs(np.asarray(grads["Dense_0"]["kernel"])) > 0)
