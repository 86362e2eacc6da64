"""Proximal steps (prox_l1, prox_elastic_net, prox_group_lasso): formulas against NumPy, groups, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import land

import jaxreg


def _np_soft(z, t):
    return np.sign(z) * np.maximum(np.abs(z) - t, 0.0)


def test_prox_formulas_against_numpy():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 4)).astype(np.float32)
    g = rng.normal(size=(6, 4)).astype(np.float32) * 0.3
    z = w + g
    lr, s, l2 = 0.5, 0.8, 0.6
    got = land(jaxreg.prox_l1(s, lr), {"w": w}, {"w": g}, jit=True)["w"]
    np.testing.assert_allclose(got, _np_soft(z, lr * s), rtol=1e-6, atol=1e-6)
    assert np.any(np.asarray(got) == 0.0)
    got = land(jaxreg.prox_elastic_net(s, l2, lr), {"w": w}, {"w": g}, jit=True)["w"]
    np.testing.assert_allclose(got, _np_soft(z, lr * s) / (1 + lr * l2), rtol=1e-6, atol=1e-6)
    for axis in (0, 1):
        norms = np.linalg.norm(z, axis=1 - axis, keepdims=True)
        expected = z * np.maximum(1 - lr * s / norms, 0)
        got = land(jaxreg.prox_group_lasso(s, lr, axis=axis), {"w": w}, {"w": g}, jit=True)["w"]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_prox_group_lasso_zero_group_is_finite_and_rows_vanish():
    w = jnp.array([[0.0, 0.0], [3.0, 4.0], [0.1, 0.1]])
    got = land(jaxreg.prox_group_lasso(1.0, 1.0, axis=0), {"w": w}, {"w": jnp.zeros_like(w)}, jit=True)["w"]
    assert bool(jnp.all(jnp.isfinite(got)))
    np.testing.assert_array_equal(got[0], 0.0)
    np.testing.assert_array_equal(got[2], 0.0)  # ||(0.1, 0.1)|| < 1: the whole input feature is pruned
    np.testing.assert_allclose(got[1], np.array([3.0, 4.0]) * 0.8, rtol=1e-6)
    vec = land(
        jaxreg.prox_group_lasso(1.0, 1.0), {"b": jnp.array([3.0, 4.0])}, {"b": jnp.zeros(2)}, jit=True
    )["b"]
    np.testing.assert_allclose(vec, [2.4, 3.2], rtol=1e-6)  # ndim < 2: one group


def test_prox_group_lasso_with_inject_hyperparams_needs_static_axis():
    w = jnp.array([[3.0, 4.0], [0.3, 0.4], [1.0, 0.0]])
    p, zeros = {"w": w}, {"w": jnp.zeros_like(w)}
    # The documented form: axis static, strength injected (and changed between steps).
    tx = optax.inject_hyperparams(jaxreg.prox_group_lasso, static_args=("axis",))(
        strength=1.0, learning_rate=1.0, axis=0
    )
    state = tx.init(p)
    update = jax.jit(tx.update)
    for strength in (1.0, 2.0):
        state.hyperparams["strength"] = jnp.asarray(strength)
        u, state = update(zeros, state, p)
        norms = np.linalg.norm(np.asarray(w), axis=1, keepdims=True)
        expected = np.asarray(w) * np.maximum(1 - strength / norms, 0)
        np.testing.assert_allclose(optax.apply_updates(p, u)["w"], expected, rtol=1e-6, atol=1e-7)
    # Without static_args optax turns the int axis into an array, which cannot index axes: say so.
    msg = r"^axis must be a Python int.*with optax.inject_hyperparams pass static_args=\('axis',\)"
    for kwargs in ({}, {"axis": 1}):
        bare = optax.inject_hyperparams(jaxreg.prox_group_lasso)(strength=1.0, learning_rate=1.0, **kwargs)
        with pytest.raises(TypeError, match=msg):
            bare.init(p)
    with pytest.raises(TypeError, match=msg):
        jaxreg.group_lasso_penalty(p, axis=jnp.asarray(0))


@pytest.mark.parametrize("bad", ["junk", 1.5, True, (0, 1), None])
def test_group_lasso_axis_type_is_checked_even_for_1d_leaves(bad):
    vector = {"b": jnp.ones(3)}  # a single group whatever the axis: the axis used to go unchecked
    with pytest.raises(TypeError, match=r"^axis must be an int, got"):
        jaxreg.group_lasso_penalty(vector, axis=bad)
    with pytest.raises(TypeError, match=r"^axis must be an int, got"):
        jaxreg.prox_group_lasso(0.1, 0.1, axis=bad)  # at construction, before any update


def test_prox_errors_name_the_key_path():
    params = {"dense": {"bias": jnp.ones(2), "kernel": jnp.ones((2, 2))}}
    tx = jaxreg.prox_group_lasso(0.1, 0.1, axis=2)
    with pytest.raises(
        ValueError, match=r"^prox_group_lasso: params leaf 'dense/kernel' of shape \(2, 2\): axis=2 is out"
    ):
        tx.update(params, tx.init(params), params)


def test_traced_strength_under_jit():
    p = {"w": jnp.array([0.3, -2.0])}

    @jax.jit
    def f(lam):
        tx = optax.chain(optax.sgd(1.0), jaxreg.prox_l1(lam, 1.0))
        u, _ = tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p)
        return optax.apply_updates(p, u)["w"]

    np.testing.assert_allclose(f(0.5), [0.0, -1.5])
