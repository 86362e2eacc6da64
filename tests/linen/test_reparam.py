"""jaxreg.linen.SpectralNorm and WeightNorm: the stored param never changes, both params get gradients."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import conv_matrix_jax, random_normal, sigma_max

import jaxreg
import jaxreg.linen as jrl


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
    x = jnp.asarray(random_normal(0, (3, 6)))
    variables, bare = jax.jit(lambda k: (_SN().init(k, x, train=False), _Bare(4).init(k, x)))(
        jax.random.key(0)
    )
    kernel = np.asarray(variables["params"]["Dense_0"]["kernel"])
    np.testing.assert_array_equal(kernel, np.asarray(bare["params"]["Dense_0"]["kernel"]))  # also at init
    assert set(variables["batch_stats"]["SpectralNorm_0"]) == {"Dense_0/kernel/u"}
    apply = jax.jit(lambda v, x: _SN().apply(v, x, train=True, mutable=True))
    for _ in range(30):
        y, updates = apply(variables, x)
        np.testing.assert_array_equal(np.asarray(updates["params"]["Dense_0"]["kernel"]), kernel)
        variables = {"params": variables["params"], "batch_stats": updates["batch_stats"]}
    expected = np.asarray(x) @ (kernel / sigma_max(kernel)) + np.asarray(
        variables["params"]["Dense_0"]["bias"]
    )
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-3, atol=1e-4)
    # Evaluation needs no mutable collection.
    y_eval = jax.jit(lambda v, x: _SN().apply(v, x, train=False))(variables, x)
    np.testing.assert_allclose(np.asarray(y_eval), expected, rtol=1e-3, atol=1e-4)


def test_linen_weight_norm_output_unchanged_at_init_and_both_params_get_gradients():
    x = jnp.asarray(random_normal(0, (4, 5)))
    params = jax.jit(_WN().init)(jax.random.key(0), x)["params"]

    @jax.jit
    def run(params):  # the wrapped and the bare layer's outputs, and the gradients of the wrapped one's
        bare = {"params": {"Dense_0": params["Dense_0"]}}
        grads = jax.grad(lambda p: jnp.sum(_WN().apply({"params": p}, x) ** 2))(params)
        return _WN().apply({"params": params}, x), _Bare(3).apply(bare, x), grads

    y, y_bare, grads = run(params)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_bare), rtol=1e-5, atol=1e-6)
    scale = params["WeightNorm_0"]["Dense_0/kernel/scale"]
    np.testing.assert_allclose(
        np.asarray(scale), np.linalg.norm(np.asarray(params["Dense_0"]["kernel"]), axis=0), rtol=1e-6
    )
    assert np.all(np.abs(np.asarray(grads["WeightNorm_0"]["Dense_0/kernel/scale"])) > 0)
    assert np.any(np.abs(np.asarray(grads["Dense_0"]["kernel"])) > 0)


CONV = {"strides": 2, "padding": "SAME"}  # nn.Conv's options, also those of conv_spectral_normalize


def test_linen_spectral_norm_conv_operator_train_and_eval():
    # The wrapped conv computes conv(x, W / sigma) with W / sigma from conv_spectral_normalize on the
    # same state: refined by n_steps iterations and stored in training, the stored u in evaluation.
    x = jnp.asarray(random_normal(0, (2, 7, 7, 2)))
    model = jrl.SpectralNorm(nn.Conv(3, (3, 3), **CONV), n_steps=2, operator="conv")
    bare = nn.Conv(3, (3, 3), **CONV)

    @jax.jit
    def run(x):
        variables = model.init(jax.random.key(0), x, update_stats=False)
        y, updates = model.apply(variables, x, update_stats=True, mutable=["batch_stats"])
        y_eval, after_eval = model.apply(
            {**variables, **updates}, x, update_stats=False, mutable=["batch_stats"]
        )
        return variables, y, updates, y_eval, after_eval

    @jax.jit
    def oracle(params, u0):
        w_sn, state = jaxreg.conv_spectral_normalize(
            params["kernel"], jaxreg.ConvSpectralNormState(u0), n_steps=2, **CONV
        )
        w_eval, _ = jaxreg.conv_spectral_normalize(params["kernel"], state, update=False, **CONV)
        outputs = [bare.apply({"params": {**params, "kernel": w}}, x) for w in (w_sn, w_eval)]
        return w_sn, state.u, *outputs

    variables, y, updates, y_eval, after_eval = run(x)
    params = variables["params"]["layer_instance"]
    u0 = variables["batch_stats"]["layer_instance/kernel/u"]
    assert u0.shape == (7, 7, 2)  # one input example
    w_sn, u1, expected, expected_eval = oracle(params, u0)
    sigma = np.linalg.norm(params["kernel"]) / np.linalg.norm(w_sn)
    assert abs(sigma - 1) > 0.1  # the stored kernel is W, not W / sigma, at init too
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(updates["batch_stats"]["layer_instance/kernel/u"], u1, rtol=1e-5, atol=1e-6)
    assert not np.allclose(u1, u0, atol=1e-4)
    np.testing.assert_allclose(y_eval, expected_eval, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(after_eval["batch_stats"]["layer_instance/kernel/u"], u1)  # eval: unchanged


def test_linen_spectral_norm_conv_operator_converges_to_the_convolutions_norm():
    # After many power iterations the wrapped conv is conv(x, W / sigma) with sigma the top singular
    # value of the convolution's matrix (jacfwd through nn.Conv, NumPy's SVD), not the reshaped kernel's.
    x = jnp.asarray(random_normal(1, (2, 7, 7, 2)))
    model = jrl.SpectralNorm(nn.Conv(3, (3, 3), use_bias=False, **CONV), n_steps=1000, operator="conv")

    @jax.jit
    def run(x):  # one training call: sigma after 1000 iterations; the bare conv, the conv's matrix
        variables = model.init(jax.random.key(2), x, update_stats=False)
        y, _ = model.apply(variables, x, update_stats=True, mutable=["batch_stats"])
        kernel = variables["params"]["layer_instance"]["kernel"]
        bare = nn.Conv(3, (3, 3), use_bias=False, **CONV).apply({"params": {"kernel": kernel}}, x)
        return kernel, y, bare, conv_matrix_jax(kernel, (7, 7, 2), **CONV)

    kernel, y, bare, matrix = run(x)
    sigma = np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)[0]
    assert abs(sigma - sigma_max(kernel)) > 0.05 * sigma  # the reshaped kernel's norm is another number
    # bias-free: y = conv(x, W) / sigma, linear in the kernel.
    np.testing.assert_allclose(y, np.asarray(bare, np.float64) / sigma, rtol=1e-3, atol=1e-5)


def test_linen_spectral_norm_conv_operator_errors():
    x = jax.ShapeDtypeStruct((1, 6, 6, 2), jnp.float32)  # shapes only: nothing to compute or compile

    def init(layer, x, **options):  # shapes only: the errors are raised while tracing
        return jax.eval_shape(
            lambda x: jrl.SpectralNorm(layer, **options).init(jax.random.key(0), x, update_stats=False), x
        )

    with pytest.raises(ValueError, match=r"operator='conv' needs an nn\.Conv layer .* got a Dense"):
        init(nn.Dense(3), x, operator="conv")
    with pytest.raises(ValueError, match=r"operator must be one of \('matrix', 'conv'\), got 'svd'"):
        init(nn.Conv(3, (3, 3)), x, operator="svd")
    with pytest.raises(ValueError, match=r"does not support an nn\.Conv with a mask"):
        init(nn.Conv(3, (3, 3), mask=np.ones((3, 3, 2, 3), np.float32)), x, operator="conv")
    model = jrl.SpectralNorm(nn.Conv(3, (3, 3)), operator="conv")
    variables = init(nn.Conv(3, (3, 3)), x, operator="conv")
    apply = jax.jit(lambda v, x: model.apply(v, x, update_stats=False))
    batched = jax.ShapeDtypeStruct((4, 5, 6, 6, 2), jnp.float32)
    assert apply.eval_shape(variables, batched).shape == (4, 5, 6, 6, 3)  # any batch axes
    with pytest.raises(
        ValueError,
        match=r"holds u for inputs of shape \(\.\.\., 6, 6, 2\).*got an input of shape \(1, 8, 8, 2\)",
    ):
        apply.eval_shape(variables, jax.ShapeDtypeStruct((1, 8, 8, 2), jnp.float32))


class _Block(nn.Module):
    """One layer of a scanned stack: a spectrally normalized Dense, then a weight-normalized one."""

    @nn.compact
    def __call__(self, x, _, train: bool = True):
        h = jnp.tanh(jrl.SpectralNorm(nn.Dense(4))(x, update_stats=train))
        return jrl.WeightNorm(nn.Dense(4))(h), None


def _np_power_step(kernel, u):
    # One power iteration (Miyato et al., Algorithm 1) on M = kernel, output axis last.
    m = np.asarray(kernel, np.float64)
    v = m @ u
    u = m.T @ (v / np.linalg.norm(v))
    return u / np.linalg.norm(u)


def test_linen_wrappers_in_nn_scan_equal_the_layers_applied_in_a_loop():
    # nn.scan stacks each layer's params, u and scale along axis 0 (variable_axes): every layer has
    # its own u (split "params" rng) and is normalized on its own, exactly as a Python loop over the
    # three layers, each applied to its slice of the variables.
    stack = nn.scan(
        _Block, variable_axes={"params": 0, "batch_stats": 0}, split_rngs={"params": True}, length=3
    )()
    x = jnp.asarray(random_normal(0, (2, 4)))
    variables = jax.jit(lambda k, x: stack.init(k, x, None))(jax.random.key(0), x)
    u0 = np.asarray(variables["batch_stats"]["SpectralNorm_0"]["Dense_0/kernel/u"])
    assert u0.shape == (3, 4) and len({tuple(u.round(4)) for u in u0}) == 3  # one u per layer
    assert variables["params"]["WeightNorm_0"]["Dense_1/kernel/scale"].shape == (3, 4)
    (y, _), updates = jax.jit(lambda v, x: stack.apply(v, x, None, mutable=["batch_stats"]))(variables, x)
    u1 = np.asarray(updates["batch_stats"]["SpectralNorm_0"]["Dense_0/kernel/u"])
    layer = jax.jit(lambda v, x: _Block().apply(v, x, None, mutable=["batch_stats"]))  # one compilation
    h = x
    for i in range(3):
        (h, _), layer_updates = layer(jax.tree.map(lambda a, i=i: np.asarray(a)[i], variables), h)
        np.testing.assert_allclose(
            np.asarray(layer_updates["batch_stats"]["SpectralNorm_0"]["Dense_0/kernel/u"]), u1[i], rtol=1e-6
        )
        kernel = np.asarray(variables["params"]["Dense_0"]["kernel"])[i]
        np.testing.assert_allclose(u1[i], _np_power_step(kernel, u0[i]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(y), np.asarray(h), rtol=1e-6, atol=1e-7)
