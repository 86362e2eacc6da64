"""Flax NNX modules of the dropout family, in the spirit of flax's own dropout tests.

The modules are thin wrappers: every training output is compared with the
functional op called on the key the module must have drawn (the next key of
a stream forked from the same ``nnx.Rngs``). Plain ``Dropout`` with
``sampler="jax"`` is also compared bit for bit with ``flax.nnx.Dropout``,
an oracle independent of jaxreg.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import MODULE_IDS, MODULE_SPECS, module_input, zero_rate

import jaxreg.nnx as jrx


def _nnx(name, args, opts, **kw):
    return getattr(jrx, name)(*args, **opts, **kw)


@pytest.mark.parametrize(("name", "op", "args", "opts"), MODULE_SPECS, ids=MODULE_IDS)
def test_nnx_keys_come_from_a_forked_stream_and_advance(name, op, args, opts):
    x = module_input()
    layer = _nnx(name, args, opts, rngs=nnx.Rngs(dropout=5))
    ref = nnx.Rngs(dropout=5)["dropout"].fork()  # the stream the module must hold
    assert layer.rngs.count[...] == 0
    y1, y2 = layer(x), layer(x)
    assert layer.rngs.count[...] == 2
    np.testing.assert_array_equal(y1, op(ref(), x, *args, **opts))
    np.testing.assert_array_equal(y2, op(ref(), x, *args, **opts))
    assert not np.array_equal(y1, y2)  # a new mask at every call


@pytest.mark.parametrize(("name", "op", "args", "opts"), MODULE_SPECS, ids=MODULE_IDS)
def test_nnx_call_time_rngs_take_precedence(name, op, args, opts):
    x, key = module_input(), jax.random.key(8)
    layer = _nnx(name, args, opts)  # no rngs at construction
    np.testing.assert_array_equal(layer(x, rngs=key), op(key, x, *args, **opts))
    rngs = nnx.Rngs(dropout=3)
    ref = nnx.Rngs(dropout=3)
    np.testing.assert_array_equal(layer(x, rngs=rngs), op(ref.dropout(), x, *args, **opts))
    np.testing.assert_array_equal(layer(x, rngs=rngs.dropout), op(ref.dropout(), x, *args, **opts))
    with pytest.raises(ValueError, match="no `rngs` argument was provided"):
        layer(x)
    with pytest.raises(TypeError, match="rngs must be"):
        _nnx(name, args, opts, rngs=0)


@pytest.mark.parametrize(("name", "op", "args", "opts"), MODULE_SPECS, ids=MODULE_IDS)
def test_nnx_train_eval_view_and_call_override(name, op, args, opts):
    class Model(nnx.Module):
        def __init__(self, rngs):
            self.layer = _nnx(name, args, opts, rngs=rngs)

        def __call__(self, x, **kw):
            return self.layer(x, **kw)

    x = module_input()
    model = Model(nnx.Rngs(0))  # "dropout" falls back to the default stream
    assert model.layer.deterministic is False
    model.eval()
    assert model.layer.deterministic is True
    np.testing.assert_array_equal(model(x), x)
    count = model.layer.rngs.count[...]
    assert not np.array_equal(model(x, deterministic=False), x)  # the call argument wins
    assert model.layer.rngs.count[...] == count + 1
    model.train()
    assert model.layer.deterministic is False
    assert not np.array_equal(model(x), x)
    np.testing.assert_array_equal(model(x, deterministic=True), x)
    np.testing.assert_array_equal(nnx.view(model, deterministic=True)(x), x)
    model.layer.set_attributes(deterministic=None)
    with pytest.raises(ValueError, match="No `deterministic` argument"):
        model(x)


@pytest.mark.parametrize(("name", "op", "args", "opts"), MODULE_SPECS, ids=MODULE_IDS)
def test_nnx_jit_advances_the_stream_like_eager(name, op, args, opts):
    x = module_input()
    traces = 0

    @nnx.jit
    def f(m, x):
        nonlocal traces
        traces += 1
        return m(x)

    jitted = _nnx(name, args, opts, rngs=nnx.Rngs(dropout=1))
    eager = _nnx(name, args, opts, rngs=nnx.Rngs(dropout=1))
    y1, y2 = f(jitted, x), f(jitted, x)
    assert traces == 1
    assert not np.array_equal(y1, y2)
    assert jitted.rngs.count[...] == 2
    np.testing.assert_allclose(y1, eager(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y2, eager(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("name", "op", "args", "opts"), MODULE_SPECS, ids=MODULE_IDS)
def test_nnx_rate_zero_needs_no_rngs(name, op, args, opts):
    x = module_input()
    np.testing.assert_array_equal(_nnx(name, zero_rate(args), opts)(x), x)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize(("name", "op", "args", "opts"), MODULE_SPECS, ids=MODULE_IDS)
def test_nnx_dtype_preserved(name, op, args, opts, dtype):
    x = module_input(dtype)
    y = _nnx(name, args, opts, rngs=nnx.Rngs(dropout=0))(x)
    assert y.dtype == dtype and y.shape == x.shape


def test_nnx_dropout_with_jax_sampler_equals_flax_nnx_dropout():
    """Independent oracle: flax.nnx.Dropout with the same Rngs, two successive calls."""
    x = jax.random.normal(jax.random.key(0), (4, 16, 8))
    for dims in ((), (1,)):
        ours = jrx.Dropout(0.3, broadcast_dims=dims, sampler="jax", rngs=nnx.Rngs(dropout=2))
        ref = nnx.Dropout(0.3, broadcast_dims=dims, rngs=nnx.Rngs(dropout=2))
        for _ in range(2):
            np.testing.assert_array_equal(ours(x), ref(x))


def test_nnx_modules_inside_a_model_under_nnx_jit_and_grad():
    class Block(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(8, 8, rngs=rngs)
            self.drop = jrx.Dropout(0.5, rngs=rngs)
            self.path = jrx.DropPath(0.5, rngs=rngs)

        def __call__(self, x):
            return x + self.path(self.drop(self.linear(x)))

    model = Block(nnx.Rngs(params=0, dropout=1))
    x = jnp.ones((32, 8))

    @nnx.jit
    def loss_and_grad(model, x):
        return nnx.value_and_grad(lambda m: jnp.mean(m(x) ** 2))(model)

    (l1, g1), (l2, _) = loss_and_grad(model, x), loss_and_grad(model, x)
    assert l1 != l2  # fresh masks at every step
    assert np.isfinite(g1.linear.kernel[...]).all()
    model.eval()
    np.testing.assert_allclose(model(x), x + model.linear(x), rtol=1e-6)
