"""Constraints, structural penalties and mixup against NumPy reimplementations of the published formulas.

The Keras oracles below are written from ``keras/src/constraints/constraints.py`` and
``keras/src/regularizers/regularizers.py`` (Keras 3): norms over ``axis`` with
``keepdims``, ``epsilon = 1e-7`` added to the norm.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

import jaxreg

KERAS_EPS = 1e-7


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


def keras_orthogonal(w, mode, factor=1.0):
    w = np.asarray(w, np.float64)
    if mode == "rows":
        m = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), KERAS_EPS)
        product, size = m @ m.T, w.shape[0]
    else:
        m = w / np.maximum(np.linalg.norm(w, axis=0, keepdims=True), KERAS_EPS)
        product, size = m.T @ m, w.shape[1]
    no_diag = product * (1.0 - np.eye(size))
    num_pairs = size * (size - 1.0) / 2.0
    return factor * 0.5 * np.sum(np.abs(no_diag)) / num_pairs


def _land(tx, params, updates):
    """Where ``params`` land after one ``tx`` step with incoming ``updates``."""
    new_updates, _ = tx.update(updates, tx.init(params), params)
    return optax.apply_updates(params, new_updates)


def _random(seed, shape, scale=1.0):
    return scale * np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


CASES = [((5, 4), 0), ((5, 4), 1), ((5, 4), -1), ((5, 4), (0, 1)), ((5, 4), None), ((3, 3, 2, 4), (0, 1, 2))]


@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize("name", ["max_norm", "unit_norm", "min_max_norm", "min_max_norm_half"])
def test_constraints_match_keras(name, shape, axis):
    w, u = _random(0, shape, 2.0), _random(1, shape)
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
    land = jax.jit(_land, static_argnums=0) if axis == 0 else _land  # jit once per constraint
    got = land(tx, {"w": jnp.asarray(w)}, {"w": jnp.asarray(u)})["w"]
    # Keras's additive epsilon differs from ours by a relative 1e-7 / norm; float32 rounding ~1e-6.
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)


def test_non_negative_matches_keras():
    w, u = _random(0, (4, 3)), _random(1, (4, 3))
    got = _land(jaxreg.non_negative(), {"w": jnp.asarray(w)}, {"w": jnp.asarray(u)})["w"]
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
    params = {"w": jnp.asarray(_random(2, (6, 3), 3.0))}
    once = _land(tx, params, {"w": jnp.asarray(_random(3, (6, 3)))})
    twice = _land(tx, once, {"w": jnp.zeros((6, 3))})
    np.testing.assert_allclose(np.asarray(twice["w"]), np.asarray(once["w"]), rtol=1e-6, atol=1e-7)


def test_feasible_points_are_left_alone_and_zero_vectors_stay_zero():
    w = np.zeros((3, 4), np.float32)
    w[:, 1] = [0.1, 0.2, 0.2]  # norm 0.3 < 1: feasible for max_norm(1)
    for tx in (jaxreg.max_norm(1.0), jaxreg.unit_norm(), jaxreg.min_max_norm(1.0, 2.0)):
        got = np.asarray(_land(tx, {"w": jnp.asarray(w)}, {"w": jnp.zeros((3, 4))})["w"])
        assert np.all(np.isfinite(got))
        np.testing.assert_array_equal(got[:, [0, 2, 3]], 0.0)  # zero columns stay exactly zero
    got = np.asarray(_land(jaxreg.max_norm(1.0), {"w": jnp.asarray(w)}, {"w": jnp.zeros((3, 4))})["w"])
    np.testing.assert_array_equal(got, w)  # scale is exactly 1 inside the ball


def test_mask_dtypes_and_passthrough():
    params = {
        "kernel": jnp.asarray(_random(0, (4, 3), 5.0)),
        "bias": jnp.asarray(_random(1, (3,), 5.0)),
        "half": jnp.asarray(_random(2, (4, 3), 5.0), jnp.bfloat16),
        "step": jnp.array(7, jnp.int32),
    }
    zeros = jax.tree.map(jnp.zeros_like, params)
    got = _land(jaxreg.max_norm(1.0, mask=jaxreg.masks.weights_only), params, zeros)
    np.testing.assert_array_equal(np.asarray(got["bias"]), np.asarray(params["bias"]))
    assert got["step"] == 7 and got["step"].dtype == jnp.int32
    assert got["half"].dtype == jnp.bfloat16
    np.testing.assert_array_less(np.linalg.norm(np.asarray(got["kernel"]), axis=0), 1.0 + 1e-6)
    # bf16 keeps 8 mantissa bits: landing on w + (P(z) - w) with |w| ~ 5 is off by up to ~5 * 2**-8 per entry.
    half_norms = np.linalg.norm(np.asarray(got["half"], np.float32), axis=0)
    np.testing.assert_allclose(half_norms, 1.0, atol=0.05)
    # Without the mask the bias is one vector (Keras's bias_constraint semantics).
    got = _land(jaxreg.max_norm(1.0), params, zeros)
    assert np.linalg.norm(np.asarray(got["bias"])) == pytest.approx(1.0, rel=1e-5)


def test_constraint_last_in_chain_under_jit_with_schedule():
    # A linear model trained by SGD + momentum, max-norm with a decaying radius as the last transform.
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((64, 5)), jnp.float32)
    y = x @ jnp.asarray(3.0 * rng.standard_normal((5, 2)), jnp.float32)
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

    for t in range(30):
        params, state = step(params, state)
        norms = np.linalg.norm(np.asarray(params["w"]), axis=0)
        assert np.all(norms <= float(radius(t)) * (1 + 1e-6))
    assert traces == 1
    # The unconstrained solution has column norms well above 1, so the constraint is active.
    np.testing.assert_allclose(np.linalg.norm(np.asarray(params["w"]), axis=0), 1.0, rtol=1e-5)


def test_constraint_with_inject_hyperparams():
    tx = optax.inject_hyperparams(jaxreg.max_norm, static_args=("axis",))(max_value=2.0, axis=0)
    params = {"w": 3.0 * jnp.ones((4, 2))}  # column norms 6
    state = tx.init(params)
    for radius in (2.0, 1.0):
        state.hyperparams["max_value"] = jnp.asarray(radius)
        updates, state = tx.update({"w": jnp.zeros((4, 2))}, state, params)
        norms = np.linalg.norm(np.asarray(optax.apply_updates(params, updates)["w"]), axis=0)
        np.testing.assert_allclose(norms, radius, rtol=1e-6)


def test_min_max_norm_rate_schedule_and_concrete_jax_values():
    # rate as a schedule is evaluated at the step count (0 then 1): rate 0 leaves the norm, 1 clips it.
    rate = lambda count: jnp.where(count == 0, 0.0, 1.0)  # noqa: E731
    tx = jaxreg.min_max_norm(0.5, 1.0, rate=rate, axis=None)
    params = {"w": jnp.array([3.0, 4.0])}
    state = tx.init(params)
    zeros = {"w": jnp.zeros(2)}
    u, state = tx.update(zeros, state, params)
    np.testing.assert_allclose(optax.apply_updates(params, u)["w"], [3.0, 4.0], rtol=1e-6)
    u, state = tx.update(zeros, state, params)
    np.testing.assert_allclose(optax.apply_updates(params, u)["w"], [0.6, 0.8], rtol=1e-6)
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
    tx.update(params, tx.init(params), params)
    with pytest.raises(ValueError, match="params"):
        tx.update(params, tx.init(params))


# --- structural penalties ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (2, 2)])
@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_penalty_matches_keras(shape, mode):
    w = _random(5, shape)
    w[0] = 0.0  # a zero row: Keras's normalize maps it to 0
    got = jax.jit(jaxreg.orthogonal_penalty, static_argnums=1)(jnp.asarray(w), mode)
    np.testing.assert_allclose(float(got), keras_orthogonal(w, mode), rtol=1e-5)


def test_orthogonal_penalty_edge_cases():
    q, _ = np.linalg.qr(_random(0, (5, 5)))
    assert float(jaxreg.orthogonal_penalty(jnp.asarray(q, jnp.float32))) < 1e-6
    assert float(jaxreg.orthogonal_penalty(jnp.ones((1, 3)))) == 0.0  # no pairs
    assert float(jaxreg.orthogonal_penalty(jnp.ones((3, 1)), "columns")) == 0.0
    assert float(jaxreg.orthogonal_penalty(jnp.ones((3, 2)))) == pytest.approx(1.0)  # identical rows


@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_penalty_gradient_is_finite_at_a_zero_row_or_column(mode):
    # A row (column) pruned to exactly zero, e.g. by prox_group_lasso, contributes no pair to the
    # penalty: its gradient is 0 (the sign(0) = 0 subgradient of |.|, as l1_penalty), and the other
    # rows get the gradient of the matrix without it, scaled by the ratio of the pair counts
    # (n-1)(n-2) / (n(n-1)) = (n-2)/n.
    w = _random(9, (4, 3))
    if mode == "rows":
        w[1] = 0.0
        reduced = np.delete(w, 1, axis=0)
    else:
        w[:, 1] = 0.0
        reduced = np.delete(w, 1, axis=1)
    n = w.shape[0] if mode == "rows" else w.shape[1]
    grad_fn = jax.grad(lambda w: jaxreg.orthogonal_penalty(w, mode))
    grad = np.asarray(grad_fn(jnp.asarray(w)))
    assert np.all(np.isfinite(grad))
    zero = grad[1] if mode == "rows" else grad[:, 1]
    np.testing.assert_array_equal(zero, 0.0)
    others = np.delete(grad, 1, axis=0 if mode == "rows" else 1)
    expected = (n - 2) / n * np.asarray(grad_fn(jnp.asarray(reduced)))
    np.testing.assert_allclose(others, expected, rtol=1e-5, atol=1e-7)
    assert np.abs(others).max() > 1e-3  # the other rows still get a gradient


def test_soft_orthogonal_and_spectral_penalties_match_numpy():
    w = _random(7, (6, 4)).astype(np.float64)
    expected = np.sum((w.T @ w - np.eye(4)) ** 2)
    np.testing.assert_allclose(float(jaxreg.soft_orthogonal_penalty(jnp.asarray(w))), expected, rtol=1e-5)
    u, s, vt = np.linalg.svd(w)
    np.testing.assert_allclose(float(jax.jit(jaxreg.spectral_penalty)(jnp.asarray(w))), s[0] ** 2, rtol=1e-5)
    # d sigma^2 / dW = 2 sigma u1 v1^T (top singular value is simple for this draw).
    grad = np.asarray(jax.grad(jaxreg.spectral_penalty)(jnp.asarray(w, jnp.float32)))
    np.testing.assert_allclose(grad, 2 * s[0] * np.outer(u[:, 0], vt[0]), rtol=1e-4, atol=1e-5)
    # ndim > 2: reshaped to (-1, out).
    k = _random(8, (3, 3, 2, 5))
    s_k = np.linalg.svd(k.reshape(-1, 5), compute_uv=False)[0]
    np.testing.assert_allclose(float(jaxreg.spectral_penalty(jnp.asarray(k))), s_k**2, rtol=1e-5)
    # Orthonormal columns: soft orthogonality is zero.
    q, _ = np.linalg.qr(w)
    assert float(jaxreg.soft_orthogonal_penalty(jnp.asarray(q))) < 1e-10


def test_penalty_errors_name_the_argument():
    for fn in (jaxreg.orthogonal_penalty, jaxreg.soft_orthogonal_penalty):
        with pytest.raises(ValueError, match=r"w must have exactly 2 dimensions, got shape \(3,\)"):
            fn(jnp.ones(3))
        with pytest.raises(ValueError, match="w must have exactly 2"):
            fn(jnp.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="w must have at least 2"):
        jaxreg.spectral_penalty(jnp.ones(3))
    with pytest.raises(ValueError, match="mode"):
        jaxreg.orthogonal_penalty(jnp.ones((2, 2)), mode="diagonal")


# --- mixup --------------------------------------------------------------------------------------


def test_mixup_is_a_convex_combination_with_one_lambda_and_a_permutation():
    batch, classes = 8, 3
    x = jnp.eye(batch)  # row i is e_i, so x_mixed[i] = lam e_i + (1 - lam) e_perm(i) reveals lam and perm
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    mix = lambda k, x, y: jaxreg.mixup(k, x, y, 0.4, num_classes=classes)  # noqa: E731 (jit: next test)
    for seed in range(5):
        xm, ym = (np.asarray(a, np.float64) for a in mix(jax.random.key(seed), x, jnp.asarray(labels)))
        assert xm.shape == (batch, batch) and ym.shape == (batch, classes)
        np.testing.assert_allclose(xm.sum(axis=1), 1.0, rtol=1e-6)  # convex weights
        assert np.all(xm >= -1e-7)
        lam = xm[np.arange(batch), np.arange(batch)]
        off = xm.copy()
        off[np.arange(batch), np.arange(batch)] = 0.0
        fixed = np.isclose(off.sum(axis=1), 0.0)  # perm(i) == i: x_mixed[i] = e_i
        lam_values = lam[~fixed]
        np.testing.assert_allclose(lam_values, lam_values[0], atol=1e-6)  # one lambda per batch
        lam0 = lam_values[0]
        perm = np.where(fixed, np.arange(batch), off.argmax(axis=1))
        if 0.001 < lam0 < 0.999:
            assert sorted(perm) == list(range(batch))  # a permutation of the batch
        onehot = np.eye(classes)[labels]
        np.testing.assert_allclose(ym, lam0 * onehot + (1 - lam0) * onehot[perm], atol=1e-6)


def test_mixup_lambda_follows_beta():
    alpha, n = 0.3, 2000
    x, y = jnp.zeros((2, 1)), jnp.eye(2)

    def first_entry(key):
        # Row 0 of y_mixed is lam * [1, 0] + (1 - lam) * y[perm(0)]: its first entry is lam when
        # perm(0) = 1 and exactly 1 when perm(0) = 0 (probability 1/2).
        return jaxreg.mixup(key, x, y, alpha)[1][0, 0]

    draws = np.asarray(jax.jit(jax.vmap(first_entry))(jax.random.split(jax.random.key(0), n)), np.float64)
    lams = draws[draws < 1.0 - 1e-7]  # drops the fixed points (and the ~0.4% of lam within 1e-7 of 1)
    assert 800 < lams.size < 1200
    # Kolmogorov-Smirnov against Beta(alpha, alpha) on ~1000 draws. The seed is fixed, so the test is
    # deterministic; a correct sampler fails it for a fraction 1e-3 of seeds, a wrong alpha (or a
    # lambda per example) shifts the CDF by far more than the ~0.06 critical distance.
    assert scipy.stats.kstest(lams, scipy.stats.beta(alpha, alpha).cdf).pvalue > 1e-3


def test_mixup_deterministic_float_labels_and_smoothing():
    x = jnp.ones((4, 2))
    xm, ym = jaxreg.mixup(
        jax.random.key(0), x, jnp.array([0, 1, 1, 0]), 1.0, num_classes=2, deterministic=True
    )
    np.testing.assert_array_equal(np.asarray(xm), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(ym), np.eye(2)[[0, 1, 1, 0]])
    smoothed = optax.smooth_labels(jnp.eye(2)[jnp.array([0, 1, 1, 0])], 0.1)
    _, ym = jaxreg.mixup(jax.random.key(1), x, smoothed, 1.0, num_classes=2)
    np.testing.assert_allclose(np.asarray(ym).sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(np.asarray(ym) >= 0.05 - 1e-6)  # convex combinations of smoothed labels in [0.05, 0.95]


def test_mixup_errors_name_the_argument():
    key, x, y = jax.random.key(0), jnp.ones((4, 2)), jnp.array([0, 1, 1, 0])
    with pytest.raises(ValueError, match="alpha"):
        jaxreg.mixup(key, x, y, 0.0, num_classes=2)
    with pytest.raises(ValueError, match="alpha"):
        jaxreg.mixup(key, x, y, -1.0, num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        jaxreg.mixup(key, x, y, 0.2)
    with pytest.raises(ValueError, match="num_classes"):
        jaxreg.mixup(key, x, jnp.ones((4, 3)), 0.2, num_classes=2)
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        jaxreg.mixup(key, jnp.ones((4, 2), jnp.int32), y, 0.2, num_classes=2)
    with pytest.raises(ValueError, match="batch axis"):
        jaxreg.mixup(key, jnp.ones((3, 2)), y, 0.2, num_classes=2)
    # Concrete JAX scalars are checked; a schedule is not an alpha.
    with pytest.raises(ValueError, match=r"^alpha must be finite and > 0"):
        jaxreg.mixup(key, x, y, jnp.asarray(-1.0), num_classes=2)
    with pytest.raises(TypeError, match=r"^alpha must be a number or a JAX scalar, not a schedule"):
        jaxreg.mixup(key, x, y, optax.constant_schedule(0.2), num_classes=2)


# --- example ---------------------------------------------------------------------------------------

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_constraints_and_mixup_example_runs():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "constraints_and_mixup.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    rows = re.findall(r"test accuracy (\S+)\s+largest column norm (\S+)", out.stdout)
    assert len(rows) == 2
    (acc_plain, _), (acc_reg, norm_reg) = ((float(a), float(n)) for a, n in rows)
    assert acc_plain > 0.9 and acc_reg > 0.9  # digits is easy: both recipes must learn it
    assert norm_reg <= 3.0 + 1e-5
