"""Flax linen and NNX modules of the dropout family, in the spirit of flax's own dropout tests.

The modules are thin wrappers: every training output is compared with the
functional op called on the key the module must have drawn (linen: the first
``make_rng("dropout")`` of the top-level scope; nnx: the next key of a stream
forked from the same ``nnx.Rngs``). Plain ``Dropout`` with ``sampler="jax"`` is
also compared bit for bit with ``flax.linen.Dropout`` and ``flax.nnx.Dropout``,
an oracle independent of jaxreg.
"""

from __future__ import annotations

import pathlib
import re

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxreg
import jaxreg.linen as jrl
import jaxreg.nnx as jrx

# (class name, functional op, positional hyperparameters, options shared by op and module).
SPECS = [
    ("Dropout", jaxreg.dropout, (0.5,), {}),
    ("SpatialDropout", jaxreg.spatial_dropout, (0.5,), {}),
    ("GaussianDropout", jaxreg.gaussian_dropout, (0.5,), {}),
    ("GaussianNoise", jaxreg.gaussian_noise, (0.5,), {}),
    ("AlphaDropout", jaxreg.alpha_dropout, (0.5,), {}),
    ("DropPath", jaxreg.drop_path, (0.5,), {}),
    ("DropBlock", jaxreg.dropblock, (0.2, 3), {}),
]
IDS = [s[0] for s in SPECS]
# NHWC, valid for every op (DropBlock needs 4-D); 16 examples so that DropPath
# keeps every example of a draw with probability 2^-16 only.
SHAPE = (16, 8, 8, 3)


def _x(dtype=jnp.float32):
    return jax.random.normal(jax.random.key(42), SHAPE).astype(dtype) + 2.0


def _zero_args(args):
    return (0.0, *args[1:])


class _LinenKey(nn.Module):
    """Returns the first key ``make_rng("dropout")`` gives a top-level module."""

    def __call__(self):
        return self.make_rng("dropout")


# --------------------------------------------------------------------------- linen


@pytest.mark.parametrize(("name", "op", "args", "opts"), SPECS, ids=IDS)
def test_linen_training_output_is_the_op_on_the_make_rng_key(name, op, args, opts):
    x, rngs = _x(), {"dropout": jax.random.key(7)}
    layer = getattr(jrl, name)(*args, **opts)
    y = layer.apply({}, x, deterministic=False, rngs=rngs)
    key = _LinenKey().apply({}, rngs=rngs)
    np.testing.assert_array_equal(y, op(key, x, *args, **opts))
    assert not np.array_equal(y, x)  # the op really perturbed the input


@pytest.mark.parametrize(("name", "op", "args", "opts"), SPECS, ids=IDS)
def test_linen_call_time_rng_takes_precedence_and_needs_no_collection(name, op, args, opts):
    x, key = _x(), jax.random.key(3)
    layer = getattr(jrl, name)(*args, deterministic=False, **opts)
    np.testing.assert_array_equal(layer.apply({}, x, rng=key), op(key, x, *args, **opts))
    # the rng argument wins over the collection
    y = layer.apply({}, x, rng=key, rngs={"dropout": jax.random.key(4)})
    np.testing.assert_array_equal(y, op(key, x, *args, **opts))


@pytest.mark.parametrize(("name", "op", "args", "opts"), SPECS, ids=IDS)
def test_linen_training_without_dropout_rng_raises(name, op, args, opts):
    layer = getattr(jrl, name)(*args, deterministic=False, **opts)
    with pytest.raises(flax.errors.InvalidRngError, match='needs PRNG for "dropout"'):
        layer.apply({}, _x())


@pytest.mark.parametrize(("name", "op", "args", "opts"), SPECS, ids=IDS)
def test_linen_deterministic_attribute_and_call_argument_merge(name, op, args, opts):
    x, rngs = _x(), {"dropout": jax.random.key(0)}
    cls = getattr(jrl, name)
    # attribute only: identity, and no rng needed
    np.testing.assert_array_equal(cls(*args, deterministic=True, **opts).apply({}, x), x)
    # call argument only
    np.testing.assert_array_equal(cls(*args, **opts).apply({}, x, deterministic=True), x)
    assert not np.array_equal(cls(*args, **opts).apply({}, x, deterministic=False, rngs=rngs), x)
    # both, or neither: flax.linen.merge_param's errors
    with pytest.raises(ValueError, match="passed to the constructor and at call time"):
        cls(*args, deterministic=True, **opts).apply({}, x, deterministic=False, rngs=rngs)
    with pytest.raises(ValueError, match='"deterministic" must be passed'):
        cls(*args, **opts).apply({}, x, rngs=rngs)


@pytest.mark.parametrize(("name", "op", "args", "opts"), SPECS, ids=IDS)
def test_linen_rate_zero_needs_no_rng(name, op, args, opts):
    x = _x()
    layer = getattr(jrl, name)(*_zero_args(args), deterministic=False, **opts)
    np.testing.assert_array_equal(layer.apply({}, x), x)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize(("name", "op", "args", "opts"), SPECS, ids=IDS)
def test_linen_dtype_preserved(name, op, args, opts, dtype):
    x = _x(dtype)
    y = getattr(jrl, name)(*args, **opts).apply({}, x, deterministic=False, rng=jax.random.key(1))
    assert y.dtype == dtype and y.shape == x.shape


def test_linen_dropout_with_jax_sampler_equals_flax_dropout():
    """Independent oracle: flax.linen.Dropout, same key, same broadcast_dims, bit for bit."""
    x = jax.random.normal(jax.random.key(0), (4, 16, 8))
    for rate, dims in ((0.1, ()), (0.5, (1,)), (0.9, (0, 2))):
        rngs = {"dropout": jax.random.key(11)}
        ours = jrl.Dropout(rate, dims, sampler="jax").apply({}, x, deterministic=False, rngs=rngs)
        ref = nn.Dropout(rate, dims).apply({}, x, deterministic=False, rngs=rngs)
        np.testing.assert_array_equal(ours, ref)


def test_linen_broadcast_dims_share_the_mask():
    x = jnp.ones((4, 16, 8))
    y = jrl.Dropout(0.5, broadcast_dims=(1,)).apply({}, x, deterministic=False, rng=jax.random.key(5))
    dropped = np.asarray(y) == 0
    assert (dropped == dropped[:, :1, :]).all()  # constant along axis 1
    assert 0 < dropped.mean() < 1


def test_linen_classic_mode_scales_at_inference():
    x = _x()
    np.testing.assert_allclose(jrl.Dropout(0.25, mode="classic").apply({}, x, deterministic=True), 0.75 * x)


def test_linen_in_a_model_under_jit_with_distinct_keys_per_layer():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            a = jrl.Dropout(0.5, deterministic=not train)(x)
            b = jrl.Dropout(0.5, deterministic=not train)(x)
            return a, b

    x = jnp.ones((64, 32))
    variables = Net().init(jax.random.key(0), x, train=False)  # no "dropout" rng needed
    apply = jax.jit(Net().apply, static_argnames="train")
    a, b = apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
    assert not np.array_equal(a, b)  # each layer gets its own make_rng key
    a2, _ = apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
    assert not np.array_equal(a, a2)
    a3, b3 = apply(variables, x, train=False)
    np.testing.assert_array_equal(a3, x)
    np.testing.assert_array_equal(b3, x)


def test_linen_kept_fraction():
    # kept count ~ Binomial(n, 0.7): 4 sigma = 4 * sqrt(n * 0.7 * 0.3) / n
    n, keep = 200_000, 0.7
    y = jrl.Dropout(1 - keep).apply({}, jnp.ones(n), deterministic=False, rng=jax.random.key(9))
    frac = float(jnp.mean(y != 0))
    assert abs(frac - keep) < 4 * np.sqrt(keep * (1 - keep) / n)
    np.testing.assert_allclose(float(y.max()), 1 / keep, rtol=1e-6)


# --------------------------------------------------------------------------- nnx


def _nnx(name, args, opts, **kw):
    return getattr(jrx, name)(*args, **opts, **kw)


@pytest.mark.parametrize(("name", "op", "args", "opts"), SPECS, ids=IDS)
def test_nnx_keys_come_from_a_forked_stream_and_advance(name, op, args, opts):
    x = _x()
    layer = _nnx(name, args, opts, rngs=nnx.Rngs(dropout=5))
    ref = nnx.Rngs(dropout=5)["dropout"].fork()  # the stream the module must hold
    assert layer.rngs.count[...] == 0
    y1, y2 = layer(x), layer(x)
    assert layer.rngs.count[...] == 2
    np.testing.assert_array_equal(y1, op(ref(), x, *args, **opts))
    np.testing.assert_array_equal(y2, op(ref(), x, *args, **opts))
    assert not np.array_equal(y1, y2)  # a new mask at every call


@pytest.mark.parametrize(("name", "op", "args", "opts"), SPECS, ids=IDS)
def test_nnx_call_time_rngs_take_precedence(name, op, args, opts):
    x, key = _x(), jax.random.key(8)
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


@pytest.mark.parametrize(("name", "op", "args", "opts"), SPECS, ids=IDS)
def test_nnx_train_eval_view_and_call_override(name, op, args, opts):
    class Model(nnx.Module):
        def __init__(self, rngs):
            self.layer = _nnx(name, args, opts, rngs=rngs)

        def __call__(self, x, **kw):
            return self.layer(x, **kw)

    x = _x()
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


@pytest.mark.parametrize(("name", "op", "args", "opts"), SPECS, ids=IDS)
def test_nnx_jit_advances_the_stream_like_eager(name, op, args, opts):
    x = _x()
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


@pytest.mark.parametrize(("name", "op", "args", "opts"), SPECS, ids=IDS)
def test_nnx_rate_zero_needs_no_rngs(name, op, args, opts):
    x = _x()
    np.testing.assert_array_equal(_nnx(name, _zero_args(args), opts)(x), x)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize(("name", "op", "args", "opts"), SPECS, ids=IDS)
def test_nnx_dtype_preserved(name, op, args, opts, dtype):
    x = _x(dtype)
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


def test_submodules_are_reachable_from_the_package():
    import jaxreg as pkg

    assert pkg.linen.Dropout is jrl.Dropout
    assert pkg.nnx.Dropout is jrx.Dropout


def test_readme_flax_module_examples_run():
    """The README's "Flax modules" code blocks run (they assert their own claims)."""
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Flax modules", 1)[1].split("<!-- END dropout -->", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3  # linen, NNX, per-layer rates in a stacked NNX model
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})
