"""Penalties against NumPy oracles; their gradients against what the matching transform adds."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import params_tree
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import jaxreg


def _np_group_lasso(w, axis):
    w = np.asarray(w, np.float64)
    if w.ndim < 2:
        return np.linalg.norm(w)
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    return np.linalg.norm(moved, axis=1).sum()


def _floats(p):
    return [np.asarray(p["dense"]["kernel"]), np.asarray(p["dense"]["bias"]), np.asarray(p["conv"])]


def test_values_against_numpy():
    p = params_tree()
    leaves = _floats(p)
    got = jax.jit(  # every value below in one compilation
        lambda p: {
            "l1": jaxreg.l1_penalty(p),
            "l2": jaxreg.l2_penalty(p),
            "elastic_net": jaxreg.elastic_net_penalty(p, 0.3, 0.7),
            "group_lasso": [jaxreg.group_lasso_penalty(p, axis=axis) for axis in (0, 1, -1)],
        }
    )(p)
    np.testing.assert_allclose(got["l1"], sum(np.abs(w).sum() for w in leaves), rtol=1e-6)
    np.testing.assert_allclose(
        got["l2"], 0.5 * sum((w.astype(np.float64) ** 2).sum() for w in leaves), rtol=1e-6
    )
    np.testing.assert_allclose(
        got["elastic_net"],
        0.3 * sum(np.abs(w).sum() for w in leaves) + 0.7 * 0.5 * sum((w**2).sum() for w in leaves),
        rtol=1e-6,
    )
    for axis, value in zip((0, 1, -1), got["group_lasso"], strict=True):
        expected = sum(_np_group_lasso(w, axis) for w in leaves)
        np.testing.assert_allclose(value, expected, rtol=1e-6, err_msg=f"axis={axis}")


def test_group_lasso_groups_input_features_of_a_dense_kernel():
    # Kernel (in=3, out=2), axis=0: group i is row w[i, :] (input feature i's outgoing weights).
    w = jnp.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    rows, columns = jax.jit(
        lambda w: (jaxreg.group_lasso_penalty({"k": w}, axis=0), jaxreg.group_lasso_penalty({"k": w}, axis=1))
    )(w)
    assert float(rows) == pytest.approx(5.0 + 0.0 + 1.0)
    assert float(columns) == pytest.approx(np.sqrt(10.0) + 4.0)


def test_dtypes_and_accumulation():
    p = {"w": np.full((1000,), 0.1, jnp.bfloat16)}
    out, grad = jax.jit(lambda p: (jaxreg.l2_penalty(p), jax.grad(jaxreg.l2_penalty)(p)))(p)
    assert out.dtype == jnp.float32 and out.shape == ()
    # Accumulated in float32: bf16(0.1)**2 * 1000 / 2, not a bf16 running sum.
    np.testing.assert_allclose(out, 0.5 * 1000 * float(jnp.bfloat16(0.1)) ** 2, rtol=1e-6)
    assert grad["w"].dtype == jnp.bfloat16
    with jax.enable_x64(True):  # traced (and compiled once) under x64

        @jax.jit
        def dtypes():
            # One accumulation dtype (jaxreg._norms.acc_dtype): float32, or float64 if a leaf is.
            mixed = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2, jnp.float64)}
            return (
                jaxreg.l1_penalty({"w": jnp.ones(3)}),
                jaxreg.group_lasso_penalty(mixed),
                jaxreg.l2_penalty({"a": jnp.ones(3, jnp.float32)}),
                jaxreg.orthogonal_penalty(jnp.eye(2, dtype=jnp.float32)),
            )

        got = dtypes()
        assert [v.dtype for v in got] == [jnp.float64, jnp.float64, jnp.float32, jnp.float32]


@pytest.mark.parametrize(
    ("penalty", "transform"),
    [
        (jaxreg.l1_penalty, jaxreg.add_l1),
        (jaxreg.l2_penalty, jaxreg.add_decayed_weights),
    ],
)
def test_grad_of_penalty_times_strength_equals_transform(penalty, transform):
    p = params_tree(1)
    p["dense"]["kernel"][0, 0] = 0.0  # sign(0) = 0 on both sides
    lam = 0.37
    tx = transform(lam, mask=jaxreg.masks.weights_only)
    zeros = jax.tree.map(np.zeros_like, p)

    @jax.jit  # the gradient and the transform's step in one compilation
    def both(p, zeros):
        grads = jax.grad(lambda q: lam * penalty(q, mask=jaxreg.masks.weights_only), allow_int=True)(p)
        return grads, tx.update(zeros, tx.init(p), p)[0]

    grads, added = both(p, zeros)
    for g, a, w in zip(jax.tree.leaves(grads), jax.tree.leaves(added), jax.tree.leaves(p), strict=True):
        if jnp.issubdtype(w.dtype, jnp.floating):
            np.testing.assert_allclose(a, g, rtol=1e-6, atol=1e-7)


def test_elastic_net_gradient_matches_two_transforms():
    p = params_tree(2)
    tx = optax.chain(jaxreg.add_l1(0.2), jaxreg.add_decayed_weights(0.5))

    @jax.jit  # the gradient and the transforms' step in one compilation
    def both(p, zeros):
        grads = jax.grad(lambda q: jaxreg.elastic_net_penalty(q, 0.2, 0.5), allow_int=True)(p)
        return grads, tx.update(zeros, tx.init(p), p)[0]

    grads, added = both(p, jax.tree.map(np.zeros_like, p))
    np.testing.assert_allclose(added["conv"], grads["conv"], rtol=1e-6)
    np.testing.assert_allclose(added["dense"]["bias"], grads["dense"]["bias"], rtol=1e-6)


def test_group_lasso_gradient_finite_at_zero_group():
    w = np.zeros((3, 2), np.float32)
    w[0] = 1.0
    g = np.asarray(jax.jit(jax.grad(jaxreg.group_lasso_penalty))({"k": w})["k"])
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g[1:], 0.0)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_elastic_net_rejects_bad_strengths(bad):
    with pytest.raises(ValueError, match=r"l1 must be finite and >= 0, got"):
        jaxreg.elastic_net_penalty({"w": jnp.ones(2)}, bad, 0.1)


def test_group_lasso_rejects_out_of_range_axis():
    with pytest.raises(ValueError, match=r"axis=2 is out of range"):
        jaxreg.group_lasso_penalty({"w": jnp.ones((2, 2))}, axis=2)


def test_group_lasso_errors_name_the_key_path():
    # The same '/'-joined key path that jaxreg.masks.by_path matches, so the message says what to exclude.
    params = {"dense": {"bias": jnp.ones(2), "kernel": jnp.ones((2, 2))}, "other": jnp.ones((3, 3, 3))}
    with pytest.raises(
        ValueError, match=r"axis=2 is out of range for the 2-D array of params leaf 'dense/kernel'$"
    ):
        jaxreg.group_lasso_penalty(params, axis=2)
    only_other = jax.jit(
        lambda p: jaxreg.group_lasso_penalty(p, axis=2, mask=jaxreg.masks.by_path(include="other"))
    )
    assert float(only_other(params)) > 0


def test_complex_leaves_raise_unless_masked_out():
    # |3+4j| = 5, but an astype(float32) would silently drop the imaginary part and give 3.
    params = {"w": jnp.ones(2), "c": {"z": jnp.array([3 + 4j, 1j])}}
    msg = r"params leaf 'c/z' has the complex dtype complex64: complex leaves are not supported; exclude"
    for penalty in (jaxreg.l1_penalty, jaxreg.l2_penalty, jaxreg.group_lasso_penalty):
        with pytest.raises(TypeError, match=msg):
            penalty(params)
    with pytest.raises(TypeError, match=msg):
        jaxreg.elastic_net_penalty(params, 0.1, 0.1)
    tx = jaxreg.add_l1(0.1)
    with pytest.raises(TypeError, match=msg):
        tx.init(params)
    # Masked out (explicitly, or by a mask that selects float leaves only), it passes through.
    only_w = {"w": True, "c": False}
    assert float(jaxreg.l1_penalty(params, mask=only_w)) == 2.0
    assert jaxreg.masks.weights_only(params)["c"]["z"] is False
    assert float(jaxreg.l2_penalty(params, mask=jaxreg.masks.weights_only)) == 0.0
    tx = jaxreg.prox_l1(0.5, 1.0, mask=only_w)
    u, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    np.testing.assert_array_equal(u["c"]["z"], 0.0)
    np.testing.assert_allclose(u["w"], -0.5)


def test_penalties_work_under_jit_and_on_flax_params():
    import flax.linen as nn
    from flax import nnx

    model = nn.Dense(3)
    variables = jax.jit(model.init)(jax.random.key(0), np.ones((1, 4), np.float32))  # one compilation
    got = jax.jit(lambda v: jaxreg.l1_penalty(v, mask=jaxreg.masks.weights_only))(variables)
    np.testing.assert_allclose(got, np.abs(variables["params"]["kernel"]).sum(), rtol=1e-6)

    lin = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
    state = nnx.state(lin, nnx.Param)
    got = jaxreg.l2_penalty(state, mask=jaxreg.masks.by_path(exclude="bias"))
    np.testing.assert_allclose(got, 0.5 * np.square(np.asarray(lin.kernel[...])).sum(), rtol=1e-6)


@jax.jit
def _three_penalties(w):
    """l1, l2 and group lasso penalties of ``{"w": w}``: a module-level jit, compiled once per shape
    and reused by every example of that shape."""
    return jaxreg.l1_penalty({"w": w}), jaxreg.l2_penalty({"w": w}), jaxreg.group_lasso_penalty({"w": w})


@settings(deadline=None, max_examples=25)
@given(
    hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3), elements=st.floats(-10, 10, width=32))
)
def test_penalty_properties(w):
    # Norm inequalities: ||w||_2 <= ||w||_1 and group lasso between the two (a sum of group 2-norms).
    l1, l2, gl = _three_penalties(w)
    l1, l2, gl = float(l1), float(np.sqrt(2 * np.asarray(l2))), float(gl)
    tol = 1e-4 * (1 + l1)
    assert l2 <= gl + tol and gl <= l1 + tol
