"""Proximal steps (prox_l1, prox_elastic_net, prox_group_lasso): formulas against NumPy, groups, errors.

The group lasso's groups for a tuple ``axis`` are checked against a NumPy loop over the groups
(``np.ndindex`` over the group axes, ``helpers.group_slices``).
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import group_slices, land_all, np_group_lasso, np_group_shrink, random_normal

import jaxreg


def _np_soft(z, t):
    return np.sign(z) * np.maximum(np.abs(z) - t, 0.0)


def test_prox_formulas_against_numpy():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 4)).astype(np.float32)
    g = rng.normal(size=(6, 4)).astype(np.float32) * 0.3
    z = w + g
    lr, s, l2 = 0.5, 0.8, 0.6
    txs = [jaxreg.prox_l1(s, lr), jaxreg.prox_elastic_net(s, l2, lr)]
    txs += [jaxreg.prox_group_lasso(s, lr, axis=axis) for axis in (0, 1)]
    l1, elastic_net, *group_lasso = (out["w"] for out in land_all([(tx, {"w": w}, {"w": g}) for tx in txs]))
    np.testing.assert_allclose(l1, _np_soft(z, lr * s), rtol=1e-6, atol=1e-6)
    assert np.any(np.asarray(l1) == 0.0)
    np.testing.assert_allclose(elastic_net, _np_soft(z, lr * s) / (1 + lr * l2), rtol=1e-6, atol=1e-6)
    for axis, got in zip((0, 1), group_lasso, strict=True):
        norms = np.linalg.norm(z, axis=1 - axis, keepdims=True)
        expected = z * np.maximum(1 - lr * s / norms, 0)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=f"axis={axis}")


def test_prox_group_lasso_zero_group_is_finite_and_rows_vanish():
    w = np.array([[0.0, 0.0], [3.0, 4.0], [0.1, 0.1]], np.float32)
    got, vec = land_all(
        [
            (jaxreg.prox_group_lasso(1.0, 1.0, axis=0), {"w": w}, {"w": np.zeros_like(w)}),
            (
                jaxreg.prox_group_lasso(1.0, 1.0),
                {"b": np.array([3.0, 4.0], np.float32)},
                {"b": np.zeros(2, np.float32)},
            ),
        ]
    )
    got, vec = np.asarray(got["w"]), np.asarray(vec["b"])
    assert np.all(np.isfinite(got))
    np.testing.assert_array_equal(got[0], 0.0)
    np.testing.assert_array_equal(got[2], 0.0)  # ||(0.1, 0.1)|| < 1: the whole input feature is pruned
    np.testing.assert_allclose(got[1], np.array([3.0, 4.0]) * 0.8, rtol=1e-6)
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


@pytest.mark.parametrize("bad", ["junk", 1.5, True, None, (0, 1.5), (0, "1"), [True]])
def test_group_lasso_axis_type_is_checked_even_for_1d_leaves(bad):
    vector = {"b": jnp.ones(3)}  # a single group whatever the axis: the axis used to go unchecked
    msg = r"^axis must be an int or a tuple of ints, got"
    with pytest.raises(TypeError, match=msg):
        jaxreg.group_lasso_penalty(vector, axis=bad)
    with pytest.raises(TypeError, match=msg):
        jaxreg.prox_group_lasso(0.1, 0.1, axis=bad)  # at construction, before any update
    with pytest.raises(TypeError, match=msg):
        jaxreg.prox_sparse_group_lasso(0.1, 0.1, 0.1, axis=bad)


# Shapes and group axes: a Dense kernel (in, out) and an HWIO conv kernel (kh, kw, in, out).
# (2, 3) on HWIO: the kh x kw kernel of each (in, out) pair; every axis: each entry alone
# (the L1 norm); (): the whole leaf as one group.
TUPLE_CASES = [
    ((4, 6), (0,)),
    ((4, 6), (-1,)),
    ((4, 6), (1, 0)),
    ((3, 2, 4, 5), (2, 3)),
    ((3, 2, 4, 5), (-2, -1)),
    ((3, 2, 4, 5), (0, 3)),
    ((3, 2, 4, 5), (0, 1, 2)),
    ((3, 2, 4, 5), ()),
]


def _tuple_case(shape, axis):
    """``w``, ``g``, ``z = w + g`` (float64), the group norms of ``z`` and the threshold ``t``."""
    w = random_normal(0, shape)
    g = random_normal(1, shape, scale=0.3)
    z = w.astype(np.float64) + g
    # A threshold between the smallest and the largest group norm: some groups vanish, some shrink.
    norms = sorted(np.linalg.norm(z[s]) for s in group_slices(shape, axis))
    t = float(np.median(norms)) if len(norms) > 1 else 0.5 * norms[0]
    return w, g, z, norms, t


@functools.cache
def _tuple_results():
    """``{(shape, axis): (penalty, prox_group_lasso landing, prox_sparse_group_lasso landing)}`` for
    every case below, all in one jitted program (each landing its own step)."""
    lr, inputs, txs = 0.5, [], []
    for shape, axis in TUPLE_CASES:
        w, g, _, _, t = _tuple_case(shape, axis)
        inputs.append((w, g))
        txs.append(
            (
                jaxreg.prox_group_lasso(t / lr, lr, axis=axis),
                jaxreg.prox_sparse_group_lasso(0.2, t / lr, lr, axis=axis),
            )
        )

    @jax.jit
    def results(inputs):
        out = []
        for (_, axis), (w, g), pair in zip(TUPLE_CASES, inputs, txs, strict=True):
            landed = []
            for tx in pair:
                u, _ = tx.update({"w": g}, tx.init({"w": w}), {"w": w})
                landed.append(optax.apply_updates({"w": w}, u)["w"])
            out.append((jaxreg.group_lasso_penalty({"w": w}, axis=axis), *landed))
        return out

    return dict(zip(TUPLE_CASES, results(inputs), strict=True))


@pytest.mark.parametrize(("shape", "axis"), TUPLE_CASES)
def test_group_lasso_tuple_axis_against_a_loop_over_groups(shape, axis):
    w, _, z, norms, t = _tuple_case(shape, axis)
    lr = 0.5
    penalty, by_group_lasso, by_sparse_group_lasso = _tuple_results()[shape, axis]
    np.testing.assert_allclose(float(penalty), np_group_lasso(w, axis), rtol=1e-6)
    got = by_group_lasso
    np.testing.assert_allclose(got, np_group_shrink(z, t, axis), rtol=1e-5, atol=1e-6)
    if len(norms) > 1:
        assert np.any(np.asarray(got) == 0.0) and np.any(np.asarray(got) != 0.0)
    got = by_sparse_group_lasso
    soft = np.sign(z) * np.maximum(np.abs(z) - 0.2 * lr, 0)
    np.testing.assert_allclose(got, np_group_shrink(soft, t, axis), rtol=1e-5, atol=1e-6)


def test_group_lasso_int_axis_is_the_one_tuple():
    params = {
        "dense": jax.device_put(random_normal(0, (4, 6))),
        "conv": jax.device_put(random_normal(1, (3, 2, 4, 5))),
    }
    updates = jax.tree.map(lambda w: 0.1 * w, params)

    def results(axis):  # penalty and landings for one spelling of axis
        out = [jaxreg.group_lasso_penalty(params, axis=axis)]
        for tx in (
            jaxreg.prox_group_lasso(0.7, 0.5, axis=axis),
            jaxreg.prox_sparse_group_lasso(0.1, 0.7, 0.5, axis=axis),
        ):
            out.append(optax.apply_updates(params, tx.update(updates, tx.init(params), params)[0]))
        return out

    got = jax.jit(lambda: [(results(a), results((a,))) for a in (0, 1, -1)])()  # one compilation
    for by_int, by_tuple in got:
        for want, have in zip(jax.tree.leaves(by_int), jax.tree.leaves(by_tuple), strict=True):
            np.testing.assert_array_equal(have, want)


def test_group_lasso_tuple_axis_errors_name_axis_and_value():
    params = {"k": jnp.ones((2, 3))}
    # repeated: at construction when the literal repeats, at the leaf when normalizing does
    with pytest.raises(ValueError, match=r"^axis=\(0, 0\) repeats an axis$"):
        jaxreg.prox_group_lasso(0.1, 0.1, axis=(0, 0))
    with pytest.raises(ValueError, match=r"^axis=\(1, 1\) repeats an axis$"):
        jaxreg.group_lasso_penalty({"b": jnp.ones(3)}, axis=(1, 1))  # even with only a 1-D leaf
    with pytest.raises(ValueError, match=r"^axis=\[2, 2\] repeats an axis$"):
        jaxreg.prox_sparse_group_lasso(0.1, 0.1, 0.1, axis=[2, 2])
    with pytest.raises(
        ValueError, match=r"^axis=\(1, -1\) repeats an axis of the 2-D array of params leaf 'k'$"
    ):
        jaxreg.group_lasso_penalty(params, axis=(1, -1))
    tx = jaxreg.prox_group_lasso(0.1, 0.1, axis=(1, -1))
    with pytest.raises(
        ValueError, match=r"^prox_group_lasso: params leaf 'k' of shape \(2, 3\): axis=\(1, -1\) repeats"
    ):
        tx.update(params, tx.init(params), params)
    # out of range, positive or negative
    for bad in ((0, 2), (-3,), (2, 3)):
        with pytest.raises(
            ValueError,
            match=rf"^axis={re.escape(repr(bad))} is out of range for the 2-D array of params leaf 'k'$",
        ):
            jaxreg.group_lasso_penalty(params, axis=bad)
        tx = jaxreg.prox_sparse_group_lasso(0.1, 0.1, 0.1, axis=bad)
        with pytest.raises(ValueError, match=r"^prox_sparse_group_lasso: params leaf 'k' .*is out of range"):
            tx.update(params, tx.init(params), params)
    # arrays (what optax.inject_hyperparams makes of ints) point at static_args, also inside a tuple
    with pytest.raises(TypeError, match=r"static_args=\('axis',\)"):
        jaxreg.prox_group_lasso(0.1, 0.1, axis=(0, jnp.asarray(1)))
    # a tuple is not an int: optax.inject_hyperparams leaves it alone, static_args or not
    tx = optax.inject_hyperparams(jaxreg.prox_group_lasso)(strength=1.0, learning_rate=1.0, axis=(0,))
    zeros = {"k": np.zeros((2, 3), np.float32)}
    injected, plain = land_all([(tx, params, zeros), (jaxreg.prox_group_lasso(1.0, 1.0), params, zeros)])
    np.testing.assert_array_equal(injected["k"], plain["k"])


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
