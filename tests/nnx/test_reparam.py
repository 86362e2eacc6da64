"""jaxreg.nnx.SpectralNorm and WeightNorm: the raw Param is kept and trained, u is a BatchStat."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import conv_matrix_jax, random_normal, sigma_max

import jaxreg
import jaxreg.nnx as jrx


def test_nnx_spectral_norm_keeps_param_and_normalizes_output():
    model = jrx.SpectralNorm(nnx.Linear(6, 4, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    kernel0 = np.asarray(model.layer_instance.kernel[...]).copy()
    x = jnp.asarray(random_normal(2, (3, 6)))

    @nnx.jit
    def forward(model, x):
        return model(x)

    for _ in range(30):
        y = forward(model, x)
    kernel = np.asarray(model.layer_instance.kernel[...])
    np.testing.assert_array_equal(kernel, kernel0)  # flax#5576: never overwritten
    expected = np.asarray(x) @ (kernel / sigma_max(kernel)) + np.asarray(model.layer_instance.bias[...])
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
    x, y = jnp.asarray(random_normal(0, (8, 4))), jnp.asarray(random_normal(1, (8, 3)))

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
    nnx.jit(lambda model, x: model(x, update_stats=False))(model, x)
    np.testing.assert_array_equal(np.asarray(model.u["kernel"][...]), u0)


def test_nnx_weight_norm_output_unchanged_at_init_and_g_v_train():
    bare = nnx.Linear(5, 3, rngs=nnx.Rngs(0))
    model = jrx.WeightNorm(nnx.Linear(5, 3, rngs=nnx.Rngs(0)))
    x = jnp.asarray(random_normal(0, (4, 5)))
    y, y_bare = nnx.jit(lambda model, bare: (model(x), bare(x)))(model, bare)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_bare), rtol=1e-5, atol=1e-6)  # flax#4138
    assert isinstance(model.scales["kernel"], nnx.Param)  # flax#5577
    grads = nnx.jit(nnx.grad(lambda m: jnp.sum(m(x) ** 2)))(model)
    assert np.all(np.abs(np.asarray(grads["scales"]["kernel"][...])) > 0)
    assert np.any(np.abs(np.asarray(grads["layer_instance"]["kernel"][...])) > 0)
    v0, g0 = (
        np.asarray(model.layer_instance.kernel[...]).copy(),
        np.asarray(model.scales["kernel"][...]).copy(),
    )
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    nnx.jit(lambda optimizer, model, grads: optimizer.update(model, grads))(optimizer, model, grads)
    assert not np.array_equal(np.asarray(model.scales["kernel"][...]), g0)
    assert not np.array_equal(np.asarray(model.layer_instance.kernel[...]), v0)
    # After the step the layer computes with g * v / ||v||, and v itself is stored as is.
    v, g = np.asarray(model.layer_instance.kernel[...]), np.asarray(model.scales["kernel"][...])
    expected = np.asarray(x) @ (g * v / np.linalg.norm(v, axis=0)) + np.asarray(
        model.layer_instance.bias[...]
    )
    np.testing.assert_allclose(np.asarray(nnx.jit(lambda m: m(x))(model)), expected, rtol=1e-5, atol=1e-5)


def test_nnx_weight_norm_conv_and_state_passthrough():
    conv = nnx.Conv(2, 4, kernel_size=(3, 3), rngs=nnx.Rngs(0))
    model = jrx.WeightNorm(conv)
    x = jnp.asarray(random_normal(1, (1, 5, 5, 2)))
    bare = nnx.Conv(2, 4, kernel_size=(3, 3), rngs=nnx.Rngs(0))
    y, y_bare = nnx.jit(lambda model, bare, x: (model(x), bare(x)))(model, bare, x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_bare), rtol=1e-5, atol=1e-5)
    assert model.scales["kernel"].shape == (4,)
    # Non-Param state the wrapped layer updates (BatchNorm statistics) is kept.
    bn = jrx.WeightNorm(nnx.BatchNorm(3, rngs=nnx.Rngs(0)), variable_filter=nnx.PathContains("scale"))
    xb = random_normal(2, (8, 3)) + 5.0
    nnx.jit(lambda bn, x: bn(x))(bn, jnp.asarray(xb))  # the update of the statistics leaves the jit
    # nnx.BatchNorm's running mean after one step from 0 with momentum 0.99: 0.01 * batch mean.
    np.testing.assert_allclose(np.asarray(bn.layer_instance.mean[...]), 0.01 * xb.mean(axis=0), rtol=1e-4)


# nnx.Conv's options (strides=None is Flax's 1), and the same for conv_spectral_normalize.
CONV = {"strides": None, "padding": 1, "feature_group_count": 2, "kernel_dilation": (2, 1)}
OPTIONS = {**CONV, "strides": 1}


def _conv_layer(**kwargs):
    return nnx.Conv(2, 4, (3, 3), **CONV, **kwargs, rngs=nnx.Rngs(0))


def test_nnx_spectral_norm_conv_operator_train_and_eval():
    # The wrapped conv computes conv(x, W / sigma) with W / sigma from conv_spectral_normalize on the
    # same state: refined by n_steps iterations and stored in training, the stored u in evaluation.
    x = jnp.asarray(random_normal(0, (2, 6, 6, 2)))
    model = jrx.SpectralNorm(_conv_layer(), n_steps=2, operator="conv", input_shape=x.shape, rngs=nnx.Rngs(1))
    bare = _conv_layer()
    kernel = np.asarray(model.layer_instance.kernel[...]).copy()
    np.testing.assert_array_equal(kernel, bare.kernel[...])
    u0 = np.asarray(model.u["kernel"][...]).copy()
    assert u0.shape == (6, 6, 2) and isinstance(model.u["kernel"], nnx.BatchStat)

    @jax.jit
    def oracle(kernel, u0):
        w_sn, state = jaxreg.conv_spectral_normalize(
            kernel, jaxreg.ConvSpectralNormState(u0), n_steps=2, **OPTIONS
        )
        return w_sn, state.u, jaxreg.conv_spectral_normalize(kernel, state, update=False, **OPTIONS)[0]

    forward = nnx.jit(lambda model, x: model(x))
    y = forward(model, x)  # training: the default mode
    w_sn, u1, w_eval = oracle(kernel, u0)
    bare.kernel[...] = w_sn
    np.testing.assert_allclose(y, bare(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.u["kernel"][...], u1, rtol=1e-5, atol=1e-6)
    assert not np.allclose(u1, u0, atol=1e-4)
    np.testing.assert_array_equal(model.layer_instance.kernel[...], kernel)  # never overwritten
    model.eval()
    y_eval = forward(model, x)
    np.testing.assert_allclose(model.u["kernel"][...], u1, rtol=1e-5, atol=1e-6)  # eval: unchanged
    bare.kernel[...] = w_eval
    np.testing.assert_allclose(y_eval, bare(x), rtol=1e-5, atol=1e-6)


def test_nnx_spectral_norm_conv_operator_converges_to_the_convolutions_norm():
    # After many power iterations the wrapped conv is conv(x, W) / sigma with sigma the top singular
    # value of the convolution's matrix (jacfwd through flax.linen.Conv, NumPy's SVD).
    x = jnp.asarray(random_normal(1, (2, 6, 6, 2)))
    layer = _conv_layer(use_bias=False)
    model = jrx.SpectralNorm(layer, n_steps=1000, operator="conv", input_shape=(6, 6, 2), rngs=nnx.Rngs(2))
    bare = _conv_layer(use_bias=False)

    @nnx.jit
    def run(model, bare, x):  # one training call: sigma after 1000 iterations; the bare conv, its matrix
        return model(x), bare(x), conv_matrix_jax(bare.kernel[...], (6, 6, 2), **CONV)

    y, y_bare, matrix = run(model, bare, x)
    sigma = np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)[0]
    assert abs(sigma - sigma_max(bare.kernel[...])) > 0.05 * sigma  # not the reshaped kernel's norm
    np.testing.assert_allclose(y, np.asarray(y_bare, np.float64) / sigma, rtol=1e-3, atol=1e-5)


def test_nnx_spectral_norm_conv_operator_errors():
    with pytest.raises(ValueError, match=r"operator='conv' needs an nnx\.Conv layer .* got a Linear"):
        jrx.SpectralNorm(
            nnx.Linear(4, 3, rngs=nnx.Rngs(0)), operator="conv", input_shape=(4,), rngs=nnx.Rngs(1)
        )
    with pytest.raises(ValueError, match=r"operator='conv' needs input_shape"):
        jrx.SpectralNorm(_conv_layer(), operator="conv", rngs=nnx.Rngs(1))
    with pytest.raises(ValueError, match=r"operator must be one of \('matrix', 'conv'\), got 'svd'"):
        jrx.SpectralNorm(_conv_layer(), operator="svd", rngs=nnx.Rngs(1))
    masked = _conv_layer(mask=jnp.asarray(np.ones((3, 3, 1, 4), np.float32)))
    with pytest.raises(ValueError, match=r"does not support an nnx\.Conv with a mask"):
        jrx.SpectralNorm(masked, operator="conv", input_shape=(6, 6, 2), rngs=nnx.Rngs(1))
    model = jrx.SpectralNorm(_conv_layer(), operator="conv", input_shape=(6, 6, 2), rngs=nnx.Rngs(1))
    with pytest.raises(
        ValueError,
        match=r"holds u for inputs of shape \(\.\.\., 6, 6, 2\).*got an input of shape \(1, 7, 6, 2\)",
    ):
        model(jnp.asarray(np.ones((1, 7, 6, 2), np.float32)))


class _Block(nnx.Module):
    """One layer of a stack: a spectrally normalized Linear, then a weight-normalized one."""

    def __init__(self, rngs: nnx.Rngs):
        self.sn = jrx.SpectralNorm(nnx.Linear(4, 4, rngs=rngs), rngs=rngs)
        self.wn = jrx.WeightNorm(nnx.Linear(4, 4, rngs=rngs))

    def __call__(self, x):
        return self.wn(jnp.tanh(self.sn(x)))


def test_nnx_wrappers_in_a_vmap_scan_stack_equal_the_layers_applied_in_a_loop():
    # nnx.vmap builds three layers with stacked Params, u (BatchStat) and scales, each from its own
    # split rng; nnx.scan hands each layer its slice and writes the updated u back. The oracle: the
    # same three layers applied in a Python loop, each merged from its slice of the state before the
    # call; and one NumPy power iteration per layer for the new u.
    @nnx.jit  # jitted: eager, spectral_norm_init's 15 vmapped power iterations dispatch op by op
    @nnx.split_rngs(splits=3)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def make_stack(rngs):
        return _Block(rngs)

    @nnx.jit
    def forward(stack, x):
        @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
        def body(x, block):
            return block(x)

        return body(x, stack)

    stack = make_stack(nnx.Rngs(0))
    assert stack.sn.u["kernel"].shape == (3, 4) and stack.wn.scales["kernel"].shape == (3, 4)
    graphdef, state = nnx.split(stack)
    state = jax.tree.map(np.array, state)  # a copy: the call below updates the stack's u in place
    u0 = state["sn"]["u"]["kernel"][...]
    assert len({tuple(u.round(4)) for u in u0}) == 3  # one u per layer
    x = jnp.asarray(random_normal(0, (2, 4)))
    y = forward(stack, x)
    u1 = np.asarray(stack.sn.u["kernel"][...])
    layer_forward = nnx.jit(lambda block, x: block(x))  # one compilation for the loop
    h = x
    for i in range(3):
        block = nnx.merge(graphdef, jax.tree.map(lambda a, i=i: jnp.asarray(a[i]), state))
        h = layer_forward(block, h)
        np.testing.assert_allclose(np.asarray(block.sn.u["kernel"][...]), u1[i], rtol=1e-6)
        kernel = state["sn"]["layer_instance"]["kernel"][...][i]
        np.testing.assert_allclose(u1[i], _np_power_step(kernel, u0[i]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(y), np.asarray(h), rtol=1e-6, atol=1e-7)
    # The stored kernels are untouched (the normalized ones are ephemeral).
    np.testing.assert_array_equal(
        np.asarray(stack.sn.layer_instance.kernel[...]), state["sn"]["layer_instance"]["kernel"][...]
    )
