"""Constraints (max_norm, unit_norm, min_max_norm, non_negative) against NumPy reimplementations of Keras's.

The Keras oracles below are written from ``keras/src/constraints/constraints.py`` (Keras 3):
norms over ``axis`` with ``keepdims``, ``epsilon = 1e-7`` added to the norm.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import KERAS_EPS, land, land_all, random_normal

import jaxreg


def _norms(w, axis):
    return np.sqrt(np.sum(np.square(w), axis=axis, keepdims=True))


def keras_max_norm(w, max_value, axis):
    n = _norms(w, axis)
    return w * (np.clip(n, 0, max_value) / (KERAS_EPS + n))


def keras_unit_norm(w, axis):
    return w / (KERAS_EPS + _norms(w, axis))


def keras_min_max_norm(w, min_value, max_value, rate, axis):
    n = _norms(w, axis)
    desired = rate * np.clip(n, min_value, max_value) + (1 - rate) * n
    return w * (desired / (KERAS_EPS + n))


CASES = [((5, 4), 0), ((5, 4), 1), ((5, 4), -1), ((5, 4), (0, 1)), ((5, 4), None), ((3, 3, 2, 4), (0, 1, 2))]
NAMES = ["max_norm", "unit_norm", "min_max_norm", "min_max_norm_half"]


def _keras_case(name, shape, axis):
    """``(tx, w, u, expected)``: the transform, the params and updates, Keras's landing."""
    w, u = random_normal(0, shape, 2.0), random_normal(1, shape)
    z = (w + u).astype(np.float64)
    if name == "max_norm":
        tx, expected = jaxreg.max_norm(1.5, axis=axis), keras_max_norm(z, 1.5, axis)
    elif name == "unit_norm":
        tx, expected = jaxreg.unit_norm(axis=axis), keras_unit_norm(z, axis)
    elif name == "min_max_norm":
        tx, expected = jaxreg.min_max_norm(2.0, 4.0, axis=axis), keras_min_max_norm(z, 2.0, 4.0, 1.0, axis)
    else:
        tx = jaxreg.min_max_norm(2.0, 4.0, rate=0.5, axis=axis)
        expected = keras_min_max_norm(z, 2.0, 4.0, 0.5, axis)
    return tx, w, u, expected


@functools.cache
def _keras_landed():
    """``{(name, case index): (landed w, Keras's)}`` for every case below: one jitted program."""
    keys = [(name, i) for name in NAMES for i in range(len(CASES))]
    cases = [_keras_case(name, *CASES[i]) for name, i in keys]
    landed = land_all([(tx, {"w": w}, {"w": u}) for tx, w, u, _ in cases])
    return {key: (got["w"], case[3]) for key, got, case in zip(keys, landed, cases, strict=True)}


@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize("name", NAMES)
def test_constraints_match_keras(name, shape, axis):
    got, expected = _keras_landed()[name, CASES.index((shape, axis))]
    # Keras's additive epsilon differs from ours by a relative 1e-7 / norm; float32 rounding ~1e-6.
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)


def test_non_negative_matches_keras():
    # Eagerly (land without jit), as a user may call a transform outside jit.
    w, u = random_normal(0, (4, 3)), random_normal(1, (4, 3))
    got = land(jaxreg.non_negative(), {"w": jax.device_put(w)}, {"w": jax.device_put(u)})["w"]
    np.testing.assert_array_equal(np.asarray(got) >= 0, True)
    np.testing.assert_allclose(np.asarray(got), np.maximum(w + u, 0), atol=1e-6)


@pytest.mark.parametrize(
    "tx",
    [
        jaxreg.max_norm(1.0, axis=0),
        jaxreg.unit_norm(axis=1),
        jaxreg.min_max_norm(0.5, 1.0, axis=(0, 1)),
        jaxreg.min_max_norm(0.5, 1.0, rate=1.0, axis=None),
        jaxreg.non_negative(),
    ],
)
def test_projection_is_idempotent(tx):
    params = {"w": random_normal(2, (6, 3), 3.0)}
    (once,) = land_all([(tx, params, {"w": random_normal(3, (6, 3))})])
    (twice,) = land_all([(tx, once, {"w": np.zeros((6, 3), np.float32)})])
    np.testing.assert_allclose(np.asarray(twice["w"]), np.asarray(once["w"]), rtol=1e-6, atol=1e-7)


def test_feasible_points_are_left_alone_and_zero_vectors_stay_zero():
    w = np.zeros((3, 4), np.float32)
    w[:, 1] = [0.1, 0.2, 0.2]  # norm 0.3 < 1: feasible for max_norm(1)
    zeros = np.zeros((3, 4), np.float32)
    txs = (jaxreg.max_norm(1.0), jaxreg.unit_norm(), jaxreg.min_max_norm(1.0, 2.0))
    landed = [np.asarray(out["w"]) for out in land_all([(tx, {"w": w}, {"w": zeros}) for tx in txs])]
    for got in landed:
        assert np.all(np.isfinite(got))
        np.testing.assert_array_equal(got[:, [0, 2, 3]], 0.0)  # zero columns stay exactly zero
    np.testing.assert_array_equal(landed[0], w)  # max_norm(1): scale is exactly 1 inside the ball


def test_mask_dtypes_and_passthrough():
    params = {
        "kernel": jax.device_put(random_normal(0, (4, 3), 5.0)),
        "bias": jax.device_put(random_normal(1, (3,), 5.0)),
        "half": jax.device_put(random_normal(2, (4, 3), 5.0).astype(jnp.bfloat16)),
        "step": jnp.array(7, jnp.int32),
    }
    zeros = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), params)  # jit arguments: no fill compiled
    got, unmasked = land_all(
        [
            (jaxreg.max_norm(1.0, mask=jaxreg.masks.weights_only), params, zeros),
            (jaxreg.max_norm(1.0), params, zeros),
        ]
    )
    np.testing.assert_array_equal(np.asarray(got["bias"]), np.asarray(params["bias"]))
    assert got["step"] == 7 and got["step"].dtype == jnp.int32
    assert got["half"].dtype == jnp.bfloat16
    np.testing.assert_array_less(np.linalg.norm(np.asarray(got["kernel"]), axis=0), 1.0 + 1e-6)
    # bf16 keeps 8 mantissa bits: landing on w + (P(z) - w) with |w| ~ 5 is off by up to ~5 * 2**-8 per entry.
    half_norms = np.linalg.norm(np.asarray(got["half"], np.float32), axis=0)
    np.testing.assert_allclose(half_norms, 1.0, atol=0.05)
    # Without the mask the bias is one vector (Keras's bias_constraint semantics).
    assert np.linalg.norm(np.asarray(unmasked["bias"])) == pytest.approx(1.0, rel=1e-5)


def test_constraint_last_in_chain_under_jit_with_schedule():
    # A linear model trained by SGD + momentum, max-norm with a decaying radius as the last transform.
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.standard_normal((64, 5)).astype(np.float32))
    y = x @ jax.device_put((3.0 * rng.standard_normal((5, 2))).astype(np.float32))
    radius = optax.linear_schedule(2.0, 1.0, 20)
    tx = optax.chain(optax.sgd(0.05, momentum=0.9), jaxreg.max_norm(radius, axis=0))
    params = {"w": jnp.zeros((5, 2))}
    state = tx.init(params)
    traces = 0

    @jax.jit
    def step(params, state):
        nonlocal traces
        traces += 1
        grads = jax.grad(lambda p: jnp.mean((x @ p["w"] - y) ** 2))(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    radii = np.asarray(jax.jit(jax.vmap(radius))(np.arange(30)))  # radius(t): one compilation
    for t in range(30):
        params, state = step(params, state)
        norms = np.linalg.norm(np.asarray(params["w"]), axis=0)
        assert np.all(norms <= float(radii[t]) * (1 + 1e-6))
    assert traces == 1
    # The unconstrained solution has column norms well above 1, so the constraint is active.
    np.testing.assert_allclose(np.linalg.norm(np.asarray(params["w"]), axis=0), 1.0, rtol=1e-5)


def test_constraint_with_inject_hyperparams():
    tx = optax.inject_hyperparams(jaxreg.max_norm, static_args=("axis",))(max_value=2.0, axis=0)
    params = {"w": 3.0 * jnp.ones((4, 2))}  # column norms 6
    state = tx.init(params)

    @jax.jit  # one compilation: the injected radius is an array in the state
    def step(state):
        updates, state = tx.update({"w": jnp.zeros((4, 2))}, state, params)
        return optax.apply_updates(params, updates), state

    for radius in (2.0, 1.0):
        state.hyperparams["max_value"] = jnp.asarray(radius)
        landed, state = step(state)
        norms = np.linalg.norm(np.asarray(landed["w"]), axis=0)
        np.testing.assert_allclose(norms, radius, rtol=1e-6)


def test_min_max_norm_rate_schedule_and_concrete_jax_values():
    # rate as a schedule is evaluated at the step count (0 then 1): rate 0 leaves the norm, 1 clips it.
    rate = lambda count: jnp.where(count == 0, 0.0, 1.0)  # noqa: E731
    tx = jaxreg.min_max_norm(0.5, 1.0, rate=rate, axis=None)
    params = {"w": jnp.array([3.0, 4.0])}
    state = tx.init(params)

    @jax.jit  # one compilation for both steps: the count is in the state
    def step(state):
        u, state = tx.update({"w": jnp.zeros(2)}, state, params)
        return optax.apply_updates(params, u)["w"], state

    landed, state = step(state)
    np.testing.assert_allclose(landed, [3.0, 4.0], rtol=1e-6)
    landed, state = step(state)
    np.testing.assert_allclose(landed, [0.6, 0.8], rtol=1e-6)
    # Concrete JAX scalars are checked like Python numbers (traced ones are not inspected).
    with pytest.raises(ValueError, match=r"^rate must lie in \[0, 1\]"):
        jaxreg.min_max_norm(0.0, 1.0, rate=jnp.asarray(1.5))
    with pytest.raises(ValueError, match=r"^max_value must be finite and > 0"):
        jaxreg.max_norm(jnp.asarray(-2.0))
    with pytest.raises(ValueError, match="min_value must be <= max_value"):
        jaxreg.min_max_norm(jnp.asarray(3.0), jnp.asarray(2.0))


@pytest.mark.parametrize(
    "factory",
    [
        lambda **k: optax.inject_hyperparams(jaxreg.max_norm)(max_value=1.0, **k),
        lambda **k: optax.inject_hyperparams(jaxreg.unit_norm)(**k),
        lambda **k: optax.inject_hyperparams(jaxreg.min_max_norm)(
            min_value=0.5, max_value=1.0, rate=0.5, **k
        ),
    ],
)
def test_constraint_axis_under_inject_hyperparams_needs_static_args(factory):
    params = {"w": jnp.ones((3, 2))}
    msg = r"^axis must be a Python int.*with optax.inject_hyperparams pass static_args=\('axis',\)"
    for kwargs in ({}, {"axis": 0}):
        with pytest.raises(TypeError, match=msg):
            factory(**kwargs).init(params)
    factory(axis=(0, 1)).init(params)  # a tuple is not converted by optax: it works as is
    with pytest.raises(TypeError, match=msg):
        jaxreg.max_norm(1.0, axis=np.asarray(0))


def test_out_of_range_axis_hint_only_for_vectors():
    # A 2-D kernel with axis=2 is a wrong axis, not a bias that weights_only would exclude.
    params = {"kernel": jnp.ones((3, 2))}
    tx = jaxreg.max_norm(1.0, axis=2)
    with pytest.raises(ValueError) as info:
        tx.update(params, tx.init(params), params)
    assert re.search(r"params leaf 'kernel' of shape \(3, 2\): axis=2 is out of range", str(info.value))
    assert "weights_only" not in str(info.value)
    tx = jaxreg.unit_norm(axis=(0, 0))
    with pytest.raises(ValueError, match="repeats an axis") as info:
        tx.update(params, tx.init(params), params)
    assert "weights_only" not in str(info.value)
    # A bias (ndim < 2) under a kernel's axes gets the hint.
    tx = jaxreg.max_norm(1.0, axis=1)
    with pytest.raises(ValueError, match=r"params leaf 'b'.*mask=jaxreg.masks.weights_only"):
        tx.update({"b": jnp.ones(3)}, tx.init({"b": jnp.ones(3)}), {"b": jnp.ones(3)})


def test_constraint_errors_name_the_argument():
    with pytest.raises(ValueError, match="max_value"):
        jaxreg.max_norm(0.0)
    with pytest.raises(ValueError, match="max_value"):
        jaxreg.max_norm(-1.0)
    with pytest.raises(ValueError, match="min_value must be <= max_value"):
        jaxreg.min_max_norm(3.0, 2.0)
    with pytest.raises(ValueError, match="rate"):
        jaxreg.min_max_norm(0.0, 1.0, rate=1.5)
    with pytest.raises(ValueError, match="rate"):
        jaxreg.min_max_norm(0.0, 1.0, rate=-0.1)
    with pytest.raises(TypeError, match="axis"):
        jaxreg.unit_norm(axis=1.5)
    tx = jaxreg.max_norm(1.0, axis=(0, 1, 2))
    params = {"conv": jnp.ones((3, 3, 2, 4)), "bias": jnp.ones(4)}
    with pytest.raises(ValueError, match=r"axis=\(0, 1, 2\).*1-D.*'bias'.*weights_only|'bias'.*axis"):
        tx.update(params, tx.init(params), params)
    tx = jaxreg.max_norm(1.0, axis=(0, 1, 2), mask=jaxreg.masks.weights_only)  # the fix the message suggests
    jax.jit(tx.update)(params, tx.init(params), params)
    with pytest.raises(ValueError, match="params"):
        tx.update(params, tx.init(params))
