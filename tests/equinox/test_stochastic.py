"""Equinox modules of the dropout family, mirroring the linen/NNX module tests.

The modules are thin wrappers: every training output is compared with the
functional op called on the same key, in Equinox's layout (one example,
channels first). ``Dropout`` with ``sampler="jax"`` is also compared bit for
bit with ``eqx.nn.Dropout``, an oracle independent of jaxreg.
"""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_same_bits

eqx = pytest.importorskip("equinox")

import jaxreg  # noqa: E402
import jaxreg.equinox as jre  # noqa: E402

SHAPE = (3, 8, 8)  # one example, channels first, as eqx.nn.Conv2d


def _nhwc(op):
    """The op on one (C, H, W) example through the NHWC op (DropBlock's layout)."""
    return lambda k, x, *a, **kw: jnp.moveaxis(op(k, jnp.moveaxis(x, 0, -1)[None], *a, **kw)[0], -1, 0)


def _one_example(op):
    """The op on one example through a batch of one (DropPath's batch axis)."""
    return lambda k, x, *a, **kw: op(k, x[None], *a, **kw)[0]


def _spatial(k, x, rate, **kw):
    return jaxreg.spatial_dropout(k, x, rate, channel_axis=0, batch_axis=None, **kw)


# (class name, the op in Equinox's layout, positional hyperparameters)
SPECS = [
    ("Dropout", jaxreg.dropout, (0.5,)),
    ("SpatialDropout", _spatial, (0.5,)),
    ("GaussianDropout", jaxreg.gaussian_dropout, (0.5,)),
    ("GaussianNoise", jaxreg.gaussian_noise, (0.5,)),
    ("AlphaDropout", jaxreg.alpha_dropout, (0.5,)),
    ("DropPath", _one_example(jaxreg.drop_path), (0.5,)),
    ("DropBlock", _nhwc(jaxreg.dropblock), (0.2, 3)),
]
IDS = [s[0] for s in SPECS]


def _x(dtype=jnp.float32, shape=SHAPE):
    return (jax.random.normal(jax.random.key(42), shape) + 2.0).astype(dtype)


@pytest.mark.parametrize("sampler", [None, "jax"])
@pytest.mark.parametrize(("name", "op", "args"), SPECS, ids=IDS)
def test_training_output_is_the_op_on_the_same_key(name, op, args, sampler):
    x, key = _x(), jax.random.key(7)
    layer = getattr(jre, name)(*args, sampler=sampler)
    y = layer(x, key=key)
    np.testing.assert_array_equal(y, op(key, x, *args, sampler=sampler))
    if name != "DropPath":  # one decision for the whole example: may keep it
        assert not np.array_equal(y, x)
    assert y.shape == x.shape and y.dtype == x.dtype


@pytest.mark.parametrize(("name", "op", "args"), SPECS, ids=IDS)
def test_inference_field_call_argument_and_inference_mode(name, op, args):
    x, key = _x(), jax.random.key(0)
    cls = getattr(jre, name)
    np.testing.assert_array_equal(cls(*args, inference=True)(x), x)  # no key needed
    np.testing.assert_array_equal(cls(*args)(x, inference=True), x)
    trained = cls(*args, inference=True)(x, key=key, inference=False)  # the call argument wins
    np.testing.assert_array_equal(trained, op(key, x, *args))
    model = {"layer": cls(*args), "other": eqx.nn.Dropout(0.5)}
    evaluation = eqx.nn.inference_mode(model)
    assert evaluation["layer"].inference and evaluation["other"].inference
    np.testing.assert_array_equal(evaluation["layer"](x), x)
    assert not eqx.nn.inference_mode(evaluation, value=False)["layer"].inference


@pytest.mark.parametrize(("name", "op", "args"), SPECS, ids=IDS)
def test_training_without_a_key_raises_and_says_what_to_do(name, op, args):
    with pytest.raises(ValueError, match=rf"{name} needs a key in training mode.*inference_mode"):
        getattr(jre, name)(*args)(_x())


@pytest.mark.parametrize(("name", "op", "args"), SPECS, ids=IDS)
def test_strength_zero_needs_no_key(name, op, args):
    x = _x()
    np.testing.assert_array_equal(getattr(jre, name)(0.0, *args[1:])(x), x)


@pytest.mark.parametrize(("name", "op", "args"), SPECS, ids=IDS)
def test_dtype_preserved(name, op, args):
    x = _x(jnp.bfloat16)
    y = getattr(jre, name)(*args)(x, key=jax.random.key(1))
    assert y.dtype == jnp.bfloat16 and y.shape == x.shape


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.9])
def test_dropout_with_jax_sampler_is_bit_identical_to_eqx_dropout(rate, dtype):
    x = jax.random.normal(jax.random.key(3), (64, 33)).astype(dtype)
    ours, theirs = jre.Dropout(rate, sampler="jax"), eqx.nn.Dropout(rate)
    for seed in range(3):
        key = jax.random.key(seed)
        assert_same_bits(ours(x, key=key), theirs(x, key=key))


def test_under_filter_jit_bit_identical_for_a_float_rate_one_ulp_for_a_traced_rate():
    """XLA compiles eqx's ``x / q`` by a traced scalar ``q`` as ``x * (1 / q)``: same mask, values to 1 ulp."""
    x = jax.random.normal(jax.random.key(3), (256,))

    @eqx.filter_jit
    def both(ours, theirs, key):
        return ours(x, key=key), theirs(x, key=key)

    a, b = both(jre.Dropout(0.3, sampler="jax"), eqx.nn.Dropout(0.3), jax.random.key(5))
    np.testing.assert_array_equal(a, b)
    r = jnp.float32(0.3)  # an array field: traced under filter_jit
    a, b = both(jre.Dropout(r, sampler="jax"), eqx.nn.Dropout(r), jax.random.key(5))
    np.testing.assert_array_equal(a == 0, b == 0)
    np.testing.assert_allclose(a, b, rtol=2**-22, atol=0)


def test_vmap_with_one_key_per_example_under_filter_jit():
    """Equinox's batching: jax.vmap over examples and keys; DropPath decides per example."""
    xs = jnp.ones((64, 4))
    keys = jax.random.split(jax.random.key(0), 64)
    layer = jre.DropPath(0.5)
    ys = np.asarray(eqx.filter_jit(jax.vmap(lambda x, k: layer(x, key=k)))(xs, keys))
    one = jax.jit(lambda k, x: jaxreg.drop_path(k, x[None], 0.5)[0])  # one example, one key, per call
    for i in range(len(ys)):  # (indexing, not iterating: unstacking 64 arrays is a costly compilation)
        np.testing.assert_array_equal(ys[i], one(keys[i], xs[i]))
    kept = (ys != 0).all(axis=1)
    assert kept.any() and not kept.all()  # each example decided on its own key
    assert ((ys == 0).all(axis=1) | (ys == 2).all(axis=1)).all()


def test_tree_at_changes_the_rate_and_a_traced_rate_works():
    layer = jre.Dropout(0.5)
    off = eqx.tree_at(lambda m: m.rate, layer, 0.0)
    x = _x()
    np.testing.assert_array_equal(off(x), x)
    traced = jax.jit(lambda r, k: eqx.tree_at(lambda m: m.rate, layer, r)(x, key=k))
    np.testing.assert_array_equal(
        traced(jnp.float32(0.5), jax.random.key(2)), layer(x, key=jax.random.key(2))
    )


def test_stacked_layers_with_per_layer_rates():
    """The Equinox form of the stacked-layer pattern: filter_vmap builds, scan slices rate and key."""
    depth, n = 4, 4000
    rates = jaxreg.drop_path_rates(0.6, depth)
    stack = eqx.filter_vmap(lambda r: jre.DropPath(r, batch_axis=0))(rates)
    assert stack.rate.shape == (depth,)
    dynamic, static = eqx.partition(stack, eqx.is_array)

    @jax.jit
    def forward(dynamic, key):
        def layer(h, xs):
            params, k = xs
            return h, eqx.combine(params, static)(h, key=k)

        return jax.lax.scan(layer, jnp.ones((n, 1)), (dynamic, jax.random.split(key, depth)))[1]

    out = np.asarray(forward(dynamic, jax.random.key(0)))
    for layer, rate in enumerate(np.asarray(rates).tolist()):
        kept, p = int((out[layer] != 0).sum()), 1 - rate
        # binomial: |k - n p| < 5 sqrt(n p (1 - p)) (exact for rate 0)
        assert abs(kept - n * p) <= 5 * np.sqrt(n * p * (1 - p)), (layer, kept, n * p)


def test_import_jaxreg_does_not_import_equinox_and_jaxreg_equinox_loads_lazily():
    code = (
        "import sys, jaxreg\n"
        "before = 'equinox' in sys.modules\n"
        "cls = jaxreg.equinox.Dropout\n"
        "print(before, 'equinox' in sys.modules, cls.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "Dropout"]


def test_without_equinox_jaxreg_works_and_jaxreg_equinox_names_the_extra():
    code = (
        "import sys\n"
        "sys.modules['equinox'] = None  # as if Equinox were not installed\n"
        "import jax.numpy as jnp, jaxreg\n"
        "assert jaxreg.dropout(None, jnp.ones(2), 0.5, deterministic=True).tolist() == [1.0, 1.0]\n"
        "try:\n"
        "    jaxreg.equinox\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "jaxreg.equinox needs Equinox: pip install 'jaxreg[equinox]'"
