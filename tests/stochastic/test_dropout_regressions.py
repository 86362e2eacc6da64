"""The dropout family's argument checks: float inputs, swapped keys, flags, broadcast dims, keys, near-1 rates.

Oracles: ``jax.random`` draws (``sampler="jax"``) combined with the published
formulas in NumPy, and the documented rule that a keep probability which
quantizes to 0 gives zeros.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg

KEY = jax.random.key(1234)
SHAPE = (4, 8, 8, 3)  # NHWC, valid for every op


def _x(shape=SHAPE, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(0).standard_normal(shape).astype(np.float32), dtype)


# (name, op(key, x, rate, **kw), signature) for every op of the family with an ``x``.
OPS = [
    ("dropout", jaxreg.dropout, r"dropout\(key, x, rate\)"),
    ("spatial_dropout", jaxreg.spatial_dropout, r"spatial_dropout\(key, x, rate\)"),
    ("drop_path", jaxreg.drop_path, r"drop_path\(key, x, rate\)"),
    ("gaussian_dropout", jaxreg.gaussian_dropout, r"gaussian_dropout\(key, x, rate\)"),
    ("gaussian_noise", jaxreg.gaussian_noise, r"gaussian_noise\(key, x, stddev\)"),
    ("alpha_dropout", jaxreg.alpha_dropout, r"alpha_dropout\(key, x, rate\)"),
    (
        "dropblock",
        lambda k, x, r, **kw: jaxreg.dropblock(k, x, r, 3, **kw),
        r"dropblock\(key, x, rate, block_size\)",
    ),
]
IDS = [o[0] for o in OPS]
FNS = [o[1] for o in OPS]
SIGNATURES = [pytest.param(o[1], o[2], id=o[0]) for o in OPS]


# ---------------------------------------------------------------- non-float inputs


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, jnp.bool_])
@pytest.mark.parametrize("sampler", ["fast", "jax"])
@pytest.mark.parametrize("op", FNS, ids=IDS)
def test_non_float_x_raises_naming_x_and_its_dtype(op, sampler, dtype):
    x = jnp.ones(SHAPE, dtype)
    name = jnp.dtype(dtype).name
    with pytest.raises(TypeError, match=rf"x must be a real floating-point array, got dtype {name}"):
        op(KEY, x, 0.3, sampler=sampler)
    with pytest.raises(TypeError, match=rf"x must be a real floating-point array, got dtype {name}"):
        op(None, x, 0.3, deterministic=True)


def test_classic_deterministic_dropout_of_ints_is_an_error_not_zeros():
    with pytest.raises(TypeError, match="x must be a real floating-point array, got dtype int32"):
        jaxreg.dropout(None, jnp.ones(4, jnp.int32), 0.3, deterministic=True, mode="classic")


def test_dropconnect_passes_integer_leaves_through():
    out = jaxreg.dropconnect(KEY, {"w": jnp.ones(4), "step": jnp.arange(3)}, 1.0)
    np.testing.assert_array_equal(np.asarray(out["w"]), 0.0)
    np.testing.assert_array_equal(np.asarray(out["step"]), [0, 1, 2])


def test_spectral_normalize_rejects_integer_weights():
    w = jnp.ones((3, 2), jnp.int32)
    with pytest.raises(TypeError, match="w must be a real floating-point array, got dtype int32"):
        jaxreg.spectral_norm_init(KEY, w)
    # A float state (one program; without the power iterations, which this check does not need).
    state = jax.jit(functools.partial(jaxreg.spectral_norm_init, n_steps=0))(KEY, jnp.ones((3, 2)))
    with pytest.raises(TypeError, match="w must be a real floating-point array, got dtype int32"):
        jaxreg.spectral_normalize(w, state)


def test_python_and_numpy_float_inputs_are_accepted():
    x = np.linspace(-1, 1, 64).astype(np.float32)
    want = np.where(np.asarray(jax.random.bernoulli(KEY, 0.5, (64,))), x / 0.5, 0.0)
    np.testing.assert_allclose(np.asarray(jaxreg.dropout(KEY, x, 0.5, sampler="jax")), want, rtol=1e-6)
    assert float(jaxreg.dropout(KEY, 2.0, 0.0)) == 2.0


# ---------------------------------------------------------------- swapped arguments


@pytest.mark.parametrize(("op", "signature"), SIGNATURES)
def test_key_in_the_wrong_position_names_the_signature(op, signature):
    x = _x()
    with pytest.raises(TypeError, match=rf"is a PRNG key; the signature is {signature}"):
        op(x, 0.5, KEY)  # key last
    with pytest.raises(TypeError, match=rf"x is a PRNG key; the signature is {signature}"):
        op(x, KEY, 0.5)  # key and x swapped
    with pytest.raises(TypeError, match=rf"looks like legacy PRNG key data.*{signature}"):
        op(x, 0.5, jax.random.PRNGKey(0))


def test_dropconnect_key_in_the_wrong_position():
    with pytest.raises(
        TypeError, match=r"rate is a PRNG key; the signature is dropconnect\(key, params, rate\)"
    ):
        jaxreg.dropconnect({"w": jnp.ones(3)}, 0.5, KEY)


def test_float_array_as_key_names_the_signature():
    with pytest.raises(
        TypeError, match=r"key must be a typed key.*got dtype float32; the signature is dropout"
    ):
        jaxreg.dropout(jnp.ones(3), jnp.ones(3), 0.5)


# ---------------------------------------------------------------- deterministic and broadcast_dims


@pytest.mark.parametrize("bad", ["no", "", 0, 1, None, 0.0])
@pytest.mark.parametrize("op", FNS, ids=IDS)
def test_deterministic_must_be_a_bool(op, bad):
    with pytest.raises(TypeError, match=r"deterministic must be a bool, got"):
        op(KEY, _x(), 0.5, deterministic=bad)


def test_deterministic_accepts_numpy_and_concrete_jax_bools():
    x = _x()
    for flag in (np.bool_(True), jnp.bool_(True), jnp.array(True)):
        np.testing.assert_array_equal(
            np.asarray(jaxreg.dropout(KEY, x, 0.5, deterministic=flag)), np.asarray(x)
        )


def test_broadcast_dims_accepts_an_int():
    # The mask of shape (4, 1, 8, 3), shared along axis 1, drawn by jax.random.bernoulli.
    x = _x()
    keep = np.asarray(jax.random.bernoulli(KEY, 0.5, (4, 1, 8, 3)))
    want = np.where(keep, np.asarray(x) / 0.5, 0.0)
    for dims in (1, -3, (1,), [1]):
        got = jaxreg.dropout(KEY, x, 0.5, broadcast_dims=dims, sampler="jax")
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
    fast = np.asarray(jaxreg.dropout(KEY, x, 0.5, broadcast_dims=1))
    assert ((fast == 0).all(axis=1) | (fast != 0).all(axis=1)).all()


@pytest.mark.parametrize("bad", ["1", 1.0, None])
def test_broadcast_dims_of_the_wrong_type_is_named(bad):
    with pytest.raises(TypeError, match="broadcast_dims must be an int"):
        jaxreg.dropout(KEY, _x(), 0.5, broadcast_dims=bad)


# ---------------------------------------------------------------- malformed keys


@pytest.mark.parametrize(
    "key",
    [jnp.zeros((0,), jnp.uint32), jnp.zeros((), jnp.uint32), jnp.zeros((3, 0), jnp.uint32)],
    ids=["shape0", "scalar", "shape3x0"],
)
@pytest.mark.parametrize("op", FNS, ids=IDS)
def test_malformed_legacy_keys_get_one_message_for_both_samplers(op, key):
    messages = []
    for sampler in ("fast", "jax"):
        with pytest.raises(ValueError, match="legacy key data has shape") as e:
            op(key, _x(), 0.5, sampler=sampler)
        messages.append(str(e.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("op", FNS, ids=IDS)
def test_batched_keys_get_one_message_for_both_samplers(op):
    messages = []
    for sampler in ("fast", "jax"):
        with pytest.raises(ValueError, match=r"use jax\.vmap") as e:
            op(jax.random.split(KEY, 2), _x(), 0.5, sampler=sampler)
        messages.append(str(e.value))
    assert messages[0] == messages[1]


# ---------------------------------------------------------------- gaussian_dropout near rate 1


@functools.partial(jax.jit, static_argnames="sampler")
def _traced_gaussian_dropout(x, rate, sampler):
    """gaussian_dropout with the rate traced: one program per sampler for every rate."""
    return jaxreg.gaussian_dropout(KEY, x, rate, sampler=sampler)


@pytest.mark.parametrize("sampler", ["fast", "jax"])
@pytest.mark.parametrize("rate", [1 - 1e-9, 1 - 2.0**-26, 1 - 2.0**-25])
def test_gaussian_dropout_rate_within_2_pow_minus_25_of_one_gives_zeros(rate, sampler):
    # round((1 - rate) * 2**24) = 0: the keep probability quantizes to 0, so the output is 0,
    # for a Python rate as for the same rate traced under jit.
    assert round((1 - rate) * 2**24) == 0
    x = jnp.ones(4096)
    eager = jaxreg.gaussian_dropout(KEY, x, rate, sampler=sampler)
    traced = _traced_gaussian_dropout(x, rate, sampler)
    np.testing.assert_array_equal(np.asarray(eager), 0.0)
    np.testing.assert_array_equal(np.asarray(traced), 0.0)


def test_gaussian_dropout_just_above_the_quantum_is_noise_for_both():
    # 1 - rate = 2**-24: a keep probability of one quantum, sigma = sqrt(rate / (1 - rate)) ~ 4096,
    # the same (float32-exact) rate eagerly and traced: y = x * (1 + sigma z), z ~ jax.random.normal.
    rate = 1 - 2.0**-24
    x = jnp.ones(4096)
    z = np.asarray(jax.random.normal(KEY, (4096,)), np.float64)
    want = 1.0 + np.sqrt(rate / (1 - rate)) * z
    eager = jaxreg.gaussian_dropout(KEY, x, rate, sampler="jax")
    traced = _traced_gaussian_dropout(x, rate, "jax")
    np.testing.assert_allclose(np.asarray(eager), want, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(np.asarray(traced), want, rtol=1e-4, atol=1e-2)


# ---------------------------------------------------------------- integer stddev


def test_gaussian_noise_integer_stddev_beyond_int32():
    x = _x((256,))
    z = np.asarray(jax.random.normal(KEY, (256,)), np.float64)
    got = jaxreg.gaussian_noise(KEY, x, 2**31, sampler="jax")
    want = np.asarray(x, np.float64) + 2.0**31 * z
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
