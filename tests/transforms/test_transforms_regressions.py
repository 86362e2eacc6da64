"""Transforms: float scalar leaves, None updates, states, soft_threshold's arguments, huge strengths.

Oracles: optax's own transforms (``add_decayed_weights``,
``keep_params_nonnegative``, ``masked``) for the optax conventions, and the
formulas evaluated in NumPy float64 and rounded to the leaf's dtype.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg


def _update(tx, updates, params):
    return tx.update(updates, tx.init(params), params)


def _soft_threshold_np(z, t):
    z = np.asarray(z, np.float64)
    return np.sign(z) * np.maximum(np.abs(z) - t, 0.0)


def _to_dtype(x, dtype):
    # NumPy's rounding of float64 values to ``dtype`` (inf where they overflow).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(x, np.float64).astype(dtype)


# ---------------------------------------------------------------- Python float leaves


def test_add_decayed_weights_on_python_float_params_matches_optax():
    params = {"w": 3.0, "v": np.float32(-2.0), "n": 5}
    grads = {"w": 1.0, "v": np.float32(1.0), "n": 0}
    want, _ = _update(optax.add_decayed_weights(0.5), grads, params)
    got, _ = _update(jaxreg.add_decayed_weights(0.5), grads, params)
    assert float(got["w"]) == float(want["w"]) == 2.5
    assert float(got["v"]) == float(want["v"]) == 0.0
    assert got["n"] == 0  # int leaves pass through


def test_add_l1_on_a_python_float_param():
    got, _ = _update(jaxreg.add_l1(0.5), {"w": 1.0, "z": 0.0}, {"w": -3.0, "z": 0.0})
    assert float(got["w"]) == 1.0 - 0.5 and float(got["z"]) == 0.0


def test_prox_l1_on_python_float_params_lands_on_the_soft_threshold():
    params = {"a": 2.0, "b": -0.25, "c": np.float32(-1.5)}
    tx = jaxreg.prox_l1(0.5, 1.0)
    u, _ = _update(tx, jax.tree.map(lambda _: 0.0, params), params)
    landed = optax.apply_updates(params, u)
    for k, w in params.items():
        np.testing.assert_allclose(float(landed[k]), _soft_threshold_np(float(w), 0.5), rtol=1e-6)


def test_non_negative_on_python_floats_matches_optax_projection():
    # optax.keep_params_nonnegative (and jaxopt's projection) map (-1.0, {..}, 1.0) to (0.0, {..}, 1.0).
    params = (-1.0, {"a": np.float32(2.0)}, 1.0)
    updates = (0.0, {"a": np.float32(-3.0)}, 0.5)
    ref = optax.keep_params_nonnegative()
    want = optax.apply_updates(params, _update(ref, updates, params)[0])
    got = optax.apply_updates(params, _update(jaxreg.non_negative(), updates, params)[0])
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert float(g) == float(w)
    assert [float(v) for v in jax.tree.leaves(got)] == [0.0, 0.0, 1.5]


def test_python_float_param_with_traced_strength_under_jit():
    tx = optax.inject_hyperparams(jaxreg.add_decayed_weights)(weight_decay=0.5)
    params = {"w": 3.0}
    state = tx.init(params)
    update = jax.jit(tx.update)
    u, state = update({"w": 1.0}, state, params)
    assert float(u["w"]) == 2.5
    state.hyperparams["weight_decay"] = jnp.asarray(2.0)
    u, _ = update({"w": 1.0}, state, params)
    assert float(u["w"]) == 7.0


# ---------------------------------------------------------------- None updates and states

TRANSFORMS = [
    ("add_l1", lambda mask=None: jaxreg.add_l1(0.1, mask=mask)),
    ("add_decayed_weights", lambda mask=None: jaxreg.add_decayed_weights(0.1, mask=mask)),
    ("prox_l1", lambda mask=None: jaxreg.prox_l1(0.1, 1.0, mask=mask)),
    ("prox_elastic_net", lambda mask=None: jaxreg.prox_elastic_net(0.1, 0.1, 1.0, mask=mask)),
    ("prox_group_lasso", lambda mask=None: jaxreg.prox_group_lasso(0.1, 1.0, mask=mask)),
    ("max_norm", lambda mask=None: jaxreg.max_norm(1.0, mask=mask)),
    ("unit_norm", lambda mask=None: jaxreg.unit_norm(mask=mask)),
    ("min_max_norm", lambda mask=None: jaxreg.min_max_norm(0.5, 1.0, mask=mask)),
    ("non_negative", lambda mask=None: jaxreg.non_negative(mask=mask)),
]
IDS = [t[0] for t in TRANSFORMS]
FACTORIES = [t[1] for t in TRANSFORMS]
PARAMS = {"w": jnp.array([[3.0, -4.0], [1.0, 2.0]]), "b": jnp.array([0.5, -0.5])}


def test_add_decayed_weights_none_updates_like_optax():
    want, _ = _update(optax.add_decayed_weights(0.1), None, PARAMS)
    got, state = _update(jaxreg.add_decayed_weights(0.1), None, PARAMS)
    assert want is None and got is None
    assert int(state.count) == 1


@pytest.mark.parametrize("factory", FACTORIES, ids=IDS)
def test_none_updates_give_none_and_advance_the_count(factory):
    tx = factory()
    updates, state = jax.jit(tx.update)(None, tx.init(PARAMS), PARAMS)
    assert updates is None
    assert int(optax.tree_utils.tree_get(state, "count")) == 1


@pytest.mark.parametrize("factory", FACTORIES, ids=IDS)
def test_none_update_leaves_stay_none(factory):
    tx = factory()
    grads = {"w": jnp.zeros((2, 2)), "b": None}
    u, _ = jax.jit(tx.update)(grads, tx.init(PARAMS), PARAMS)
    assert u["b"] is None and u["w"].shape == (2, 2)


def test_none_update_leaf_matches_optax_add_decayed_weights():
    grads = {"w": jnp.ones((2, 2)), "b": None}
    want, _ = _update(optax.add_decayed_weights(0.1), grads, PARAMS)
    got, _ = _update(jaxreg.add_decayed_weights(0.1), grads, PARAMS)
    assert want["b"] is None and got["b"] is None
    np.testing.assert_allclose(np.asarray(got["w"]), np.asarray(want["w"]), rtol=1e-6)


@pytest.mark.parametrize("factory", FACTORIES, ids=IDS)
def test_state_is_count_state_without_a_mask_and_masked_state_with_one(factory):
    # optax's own pattern: wrap in masked only when there is a mask.
    assert isinstance(factory().init(PARAMS), jaxreg.CountState)
    masked_state = factory(mask={"w": True, "b": False}).init(PARAMS)
    assert isinstance(masked_state, optax.MaskedState)
    assert isinstance(masked_state.inner_state, jaxreg.CountState)


# ---------------------------------------------------------------- soft_threshold arguments


def test_soft_threshold_rejects_a_negative_threshold():
    with pytest.raises(ValueError, match=r"threshold must be >= 0, got -1\.0"):
        jaxreg.soft_threshold(jnp.array([2.0, -3.0]), -1.0)
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        jaxreg.soft_threshold(jnp.array([2.0, -3.0]), np.float32(-0.5))
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        jaxreg.soft_threshold(jnp.array([2.0, -3.0]), jnp.float32(float("nan")))
    with pytest.raises(ValueError, match="threshold must be >= 0 everywhere"):
        jaxreg.soft_threshold(jnp.array([2.0, -3.0]), np.array([0.5, -0.5]))


@pytest.mark.parametrize("bad", ["0.1", "", None, True])
def test_soft_threshold_rejects_non_numbers(bad):
    with pytest.raises(TypeError, match="threshold must be"):
        jaxreg.soft_threshold(jnp.array([2.0, -3.0]), bad)


def test_soft_threshold_rejects_integer_z():
    with pytest.raises(TypeError, match="z must be a real floating-point array, got dtype int32"):
        jaxreg.soft_threshold(jnp.array([2, -3]), 0.5)


def test_soft_threshold_traced_and_array_thresholds_still_work():
    z = np.array([2.0, 0.5, -3.0], np.float32)
    f = jax.jit(jaxreg.soft_threshold)
    np.testing.assert_allclose(np.asarray(f(z, 1.0)), _soft_threshold_np(z, 1.0))
    t = np.array([0.5, 1.0, 4.0], np.float32)
    np.testing.assert_allclose(np.asarray(jaxreg.soft_threshold(z, t)), _soft_threshold_np(z, t))
    np.testing.assert_array_equal(np.asarray(jaxreg.soft_threshold(z, float("inf"))), 0.0)
    assert float(jaxreg.soft_threshold(2.0, 0.5)) == 1.5


# ---------------------------------------------------------------- Python ints and huge strengths


def test_integer_strengths_beyond_int32_are_floats():
    w = np.array([0.5, -1.0], np.float32)
    g = np.array([1.0, 1.0], np.float32)
    params, grads = {"w": jax.device_put(w)}, {"w": jax.device_put(g)}
    k = jnp.array([[3.0, 1.0], [4.0, 0.0]])
    # The four updates in one compilation; the strengths stay Python ints, closed over.
    cases = (
        (jaxreg.add_decayed_weights(2**31), grads, params),
        (jaxreg.add_l1(2**31), grads, params),
        (jaxreg.max_norm(2**31), jnp.zeros((2, 2)), k),
        (jaxreg.prox_l1(2**31, 1), {"w": jax.device_put(w)}, params),
    )
    decayed, l1, max_norm, prox = jax.jit(
        lambda args: [_update(tx, u, p)[0] for (tx, _, _), (u, p) in zip(cases, args, strict=True)]
    )([(u, p) for _, u, p in cases])
    np.testing.assert_array_equal(
        np.asarray(decayed["w"]), _to_dtype(g + 2.0**31 * w.astype(np.float64), np.float32)
    )
    np.testing.assert_array_equal(
        np.asarray(l1["w"]), _to_dtype(g + 2.0**31 * np.sign(w).astype(np.float64), np.float32)
    )
    # max_norm(2**31): every column is feasible, so params + updates is kept.
    np.testing.assert_array_equal(np.asarray(max_norm), 0.0)
    np.testing.assert_array_equal(np.asarray(prox["w"]), -w)  # threshold 2**31: lands on 0


def test_schedule_returning_a_python_int_beyond_int32():
    params = {"w": jnp.array([0.5, -1.0])}
    tx = jaxreg.add_decayed_weights(lambda count: 2**31)
    u, _ = jax.jit(tx.update)(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    np.testing.assert_array_equal(np.asarray(u["w"]), [2.0**30, -(2.0**31)])


def test_add_l1_strength_beyond_float32_gives_no_nan():
    # g + s * sign(w) with s = 3.5e38 > float32 max: +-inf where w != 0 (the exact value does not
    # fit in float32), and g itself where w == 0 (s * 0 = 0, not inf * 0 = NaN).
    w = np.array([1.0, 0.0, -1.0], np.float32)
    g = np.array([0.25, 0.25, 0.25], np.float32)
    u, _ = _update(jaxreg.add_l1(3.5e38), {"w": jax.device_put(g)}, {"w": jax.device_put(w)})
    want = _to_dtype(g.astype(np.float64) + 3.5e38 * np.sign(w).astype(np.float64), np.float32)
    np.testing.assert_array_equal(np.asarray(u["w"]), want)
    assert not np.isnan(np.asarray(u["w"])).any()


@pytest.mark.parametrize(
    ("dtype", "strength"),
    [(np.float32, 1e39), (np.float16, 1e5), (jnp.bfloat16, 1e39)],
    ids=["float32", "float16", "bfloat16"],
)
def test_add_decayed_weights_beyond_the_leaf_range_is_finite_where_the_math_is(dtype, strength):
    w = np.array([1e-3, 0.0, -1e-4, 1.0], np.float64)
    g = np.zeros(4)
    params = {"w": jax.device_put(w.astype(dtype))}
    u, _ = _update(jaxreg.add_decayed_weights(strength), {"w": jax.device_put(g.astype(dtype))}, params)
    got = np.asarray(u["w"], np.float64)
    wd = np.asarray(params["w"], np.float64)  # the leaf as stored
    want = np.asarray(_to_dtype(strength * wd, dtype), np.float64)
    np.testing.assert_allclose(got[:3], want[:3], rtol=2e-2 if dtype is jnp.bfloat16 else 2e-3)
    assert got[1] == 0.0 and np.isinf(got[3])


def test_integer_eps_beyond_int32_squared():
    v = np.array([[3.0, 0.0], [4.0, 2.0]], np.float32)
    g = np.array([1.0, 1.0], np.float32)

    @jax.jit  # both in one compilation; eps stays a Python int, closed over
    def normalized(v, g, key):
        state = jaxreg.spectral_norm_init(key, v, eps=46341)
        return jaxreg.weight_normalize(v, g, eps=46341), jaxreg.spectral_normalize(v, state, eps=46341)[0]

    got, spectral = normalized(v, g, jax.random.key(0))
    want = v * g / np.maximum(np.linalg.norm(v, axis=0), 46341.0)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
    got = spectral
    # sigma(v) = 5.0...: far below eps, so the result is v / eps.
    np.testing.assert_allclose(np.asarray(got), v / 46341.0, rtol=1e-6)


@pytest.mark.parametrize("mask", [None, {"w": True, "b": False}], ids=["no_mask", "mask"])
def test_tree_map_params_reaches_through_jaxreg_transforms(mask):
    # optax.tree_utils.tree_map_params calls init with a placeholder: a mask must not be resolved on it.
    tx = optax.chain(jaxreg.add_l1(0.1, mask=mask), optax.adam(1e-3))
    state = tx.init(PARAMS)
    doubled = optax.tree_utils.tree_map_params(tx, lambda p: 2 * p, state)
    np.testing.assert_array_equal(np.asarray(doubled[1][0].mu["w"]), 0.0)
    assert isinstance(doubled[0], optax.MaskedState if mask else jaxreg.CountState)
