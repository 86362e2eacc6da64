"""Flax linen modules of the dropout family, in the spirit of flax's own dropout tests.

The modules are thin wrappers: every training output is compared with the
functional op called on the key the module must have drawn (the first
``make_rng("dropout")`` of the top-level scope). Plain ``Dropout`` with
``sampler="jax"`` is also compared bit for bit with ``flax.linen.Dropout``,
an oracle independent of jaxreg.
"""

from __future__ import annotations

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import MODULE_IDS, MODULE_SPECS, module_input, zero_rate

import jaxreg.linen as jrl


class _LinenKey(nn.Module):
    """Returns the first key ``make_rng("dropout")`` gives a top-level module."""

    def __call__(self):
        return self.make_rng("dropout")


@pytest.mark.parametrize(("name", "op", "args", "opts"), MODULE_SPECS, ids=MODULE_IDS)
def test_linen_training_output_is_the_op_on_the_make_rng_key(name, op, args, opts):
    x, rngs = module_input(), {"dropout": jax.random.key(7)}
    layer = getattr(jrl, name)(*args, **opts)
    y = layer.apply({}, x, deterministic=False, rngs=rngs)
    key = _LinenKey().apply({}, rngs=rngs)
    np.testing.assert_array_equal(y, op(key, x, *args, **opts))
    assert not np.array_equal(y, x)  # the op really perturbed the input


@pytest.mark.parametrize(("name", "op", "args", "opts"), MODULE_SPECS, ids=MODULE_IDS)
def test_linen_call_time_rng_takes_precedence_and_needs_no_collection(name, op, args, opts):
    x, key = module_input(), jax.random.key(3)
    layer = getattr(jrl, name)(*args, deterministic=False, **opts)
    np.testing.assert_array_equal(layer.apply({}, x, rng=key), op(key, x, *args, **opts))
    # the rng argument wins over the collection
    y = layer.apply({}, x, rng=key, rngs={"dropout": jax.random.key(4)})
    np.testing.assert_array_equal(y, op(key, x, *args, **opts))


@pytest.mark.parametrize(("name", "op", "args", "opts"), MODULE_SPECS, ids=MODULE_IDS)
def test_linen_training_without_dropout_rng_raises(name, op, args, opts):
    layer = getattr(jrl, name)(*args, deterministic=False, **opts)
    with pytest.raises(flax.errors.InvalidRngError, match='needs PRNG for "dropout"'):
        layer.apply({}, module_input())


@pytest.mark.parametrize(("name", "op", "args", "opts"), MODULE_SPECS, ids=MODULE_IDS)
def test_linen_deterministic_attribute_and_call_argument_merge(name, op, args, opts):
    x, rngs = module_input(), {"dropout": jax.random.key(0)}
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


@pytest.mark.parametrize(("name", "op", "args", "opts"), MODULE_SPECS, ids=MODULE_IDS)
def test_linen_rate_zero_needs_no_rng(name, op, args, opts):
    x = module_input()
    layer = getattr(jrl, name)(*zero_rate(args), deterministic=False, **opts)
    np.testing.assert_array_equal(layer.apply({}, x), x)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize(("name", "op", "args", "opts"), MODULE_SPECS, ids=MODULE_IDS)
def test_linen_dtype_preserved(name, op, args, opts, dtype):
    x = module_input(dtype)
    y = getattr(jrl, name)(*args, **opts).apply({}, x, deterministic=False, rng=jax.random.key(1))
    assert y.dtype == dtype and y.shape == x.shape


def test_linen_dropout_with_jax_sampler_equals_flax_dropout():
    """Independent oracle: flax.linen.Dropout, same key, same broadcast_dims, bit for bit."""
    x = jax.random.normal(jax.random.key(0), (4, 16, 8))
    cases = ((0.1, ()), (0.5, (1,)), (0.9, (0, 2)))

    def run(k):
        """(ours, flax's) per case, in one program (jit keeps every rounding of flax's eager output)."""
        rngs = {"dropout": k}
        return [
            (
                jrl.Dropout(rate, dims, sampler="jax").apply({}, x, deterministic=False, rngs=rngs),
                nn.Dropout(rate, dims).apply({}, x, deterministic=False, rngs=rngs),
            )
            for rate, dims in cases
        ]

    for (rate, dims), (ours, ref) in zip(cases, jax.jit(run)(jax.random.key(11)), strict=True):
        np.testing.assert_array_equal(ours, ref, err_msg=f"rate={rate}, broadcast_dims={dims}")


def test_linen_broadcast_dims_share_the_mask():
    x = jnp.ones((4, 16, 8))
    y = jrl.Dropout(0.5, broadcast_dims=(1,)).apply({}, x, deterministic=False, rng=jax.random.key(5))
    dropped = np.asarray(y) == 0
    assert (dropped == dropped[:, :1, :]).all()  # constant along axis 1
    assert 0 < dropped.mean() < 1


def test_linen_classic_mode_scales_at_inference():
    x = module_input()
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
