"""Masks and float leaves: Python/NumPy float leaves are selected, callable pytree masks are pytrees.

Oracles: NumPy sums of the penalties' formulas, and ``optax.masked`` /
``optax.add_decayed_weights`` themselves for the optax conventions followed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg


# A pytree with a __call__ (as an Equinox module): a mask made of it is a pytree of bools.
@jax.tree_util.register_pytree_node_class
class CallableTree:
    def __init__(self, children):
        self.children = children

    def __call__(self, *args):
        raise AssertionError("a callable pytree mask must not be called")

    def tree_flatten(self):
        return (self.children,), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        del aux
        return cls(*children)


# ---------------------------------------------------------------- float leaves

# Python floats and NumPy float scalars are float leaves (as in optax and jaxopt);
# Python ints and bools are not.
MIXED = {"py": 3.0, "np32": np.float32(-2.0), "np64": np.float64(0.5), "int": 7, "bool": True, "none": None}
FLOATS = [3.0, -2.0, 0.5]  # the float leaves of MIXED


def test_penalties_count_python_and_numpy_float_leaves():
    w = np.asarray(FLOATS, np.float64)
    np.testing.assert_allclose(float(jaxreg.l1_penalty(MIXED)), np.abs(w).sum(), rtol=1e-6)
    np.testing.assert_allclose(float(jaxreg.l2_penalty(MIXED)), 0.5 * np.square(w).sum(), rtol=1e-6)
    np.testing.assert_allclose(
        float(jaxreg.elastic_net_penalty(MIXED, 0.5, 2.0)),
        0.5 * np.abs(w).sum() + 2.0 * 0.5 * np.square(w).sum(),
        rtol=1e-6,
    )
    # Each scalar leaf is one group: sum of |w|.
    np.testing.assert_allclose(float(jaxreg.group_lasso_penalty(MIXED)), np.abs(w).sum(), rtol=1e-6)


def test_penalty_of_a_list_of_python_floats():
    assert float(jaxreg.l1_penalty([-2.0, 1.0])) == 3.0
    assert float(jaxreg.l2_penalty({"w": 3.0})) == 4.5


def test_python_float_penalty_has_a_gradient_like_an_array_leaf():
    g = jax.grad(lambda p: jaxreg.l2_penalty(p))({"w": 3.0, "a": jnp.array([1.0, -2.0])})
    assert float(g["w"]) == 3.0
    np.testing.assert_array_equal(np.asarray(g["a"]), [1.0, -2.0])


def test_python_complex_leaf_is_rejected_like_a_complex_array():
    with pytest.raises(TypeError, match=r"params leaf 'z' has the complex dtype"):
        jaxreg.l1_penalty({"w": 1.0, "z": 1j})
    assert float(jaxreg.l1_penalty({"w": 1.0, "z": 1j}, mask={"w": True, "z": False})) == 1.0


def test_weights_only_on_python_floats():
    assert jaxreg.masks.weights_only({"s": 1.0, "k": jnp.ones((2, 2))}) == {"s": False, "k": True}


def test_dropconnect_drops_a_python_float_leaf():
    # rate 1 drops every selected float leaf: a Python float leaf becomes 0, an int passes through.
    out = jaxreg.dropconnect(jax.random.key(0), {"w": 3.0, "n": 4}, 1.0)
    assert float(out["w"]) == 0.0 and out["n"] == 4


# ---------------------------------------------------------------- callable pytree masks


def test_callable_pytree_mask_is_used_as_a_pytree_in_penalties():
    params = CallableTree({"w": jnp.array([3.0, 4.0]), "b": jnp.array([1.0])})
    mask = CallableTree({"w": True, "b": False})
    assert float(jaxreg.l2_penalty(params, mask=mask)) == 0.5 * (9.0 + 16.0)
    assert float(jaxreg.l1_penalty(params, mask=mask)) == 7.0


def test_callable_pytree_mask_in_a_transform_follows_optax_masked():
    params = CallableTree({"w": jnp.array([3.0, -4.0]), "b": jnp.array([1.0])})
    grads = CallableTree({"w": jnp.array([0.5, 0.5]), "b": jnp.array([0.5])})
    mask = CallableTree({"w": True, "b": False})
    ref = optax.masked(optax.add_decayed_weights(0.1), mask)
    want, _ = ref.update(grads, ref.init(params), params)
    tx = jaxreg.add_decayed_weights(0.1, mask=mask)
    got, state = tx.update(grads, tx.init(params), params)
    for k in ("w", "b"):
        np.testing.assert_allclose(np.asarray(got.children[k]), np.asarray(want.children[k]), rtol=1e-6)
    assert isinstance(state, optax.MaskedState)


def test_plain_function_masks_are_still_called():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    assert float(jaxreg.l1_penalty(params, mask=jaxreg.masks.weights_only)) == 4.0
    assert float(jaxreg.l1_penalty(params, mask=lambda p: {"w": False, "b": True})) == 2.0
