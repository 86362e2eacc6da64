"""Matrix penalties (orthogonal, soft orthogonal, spectral) against NumPy and a reimplementation of Keras's.

The Keras oracle below is written from ``keras/src/regularizers/regularizers.py`` (Keras 3,
``OrthogonalRegularizer``): rows or columns normalized with ``epsilon = 1e-7``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import KERAS_EPS, random_normal

import jaxreg


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


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (2, 2)])
@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_penalty_matches_keras(shape, mode):
    w = random_normal(5, shape)
    w[0] = 0.0  # a zero row: Keras's normalize maps it to 0
    got = jax.jit(jaxreg.orthogonal_penalty, static_argnums=1)(jax.device_put(w), mode)
    np.testing.assert_allclose(float(got), keras_orthogonal(w, mode), rtol=1e-5)


def test_orthogonal_penalty_edge_cases():
    q, _ = np.linalg.qr(random_normal(0, (5, 5)))
    orthogonal, no_rows, no_columns, identical = jax.jit(  # one compilation for the four
        lambda q: (
            jaxreg.orthogonal_penalty(q),
            jaxreg.orthogonal_penalty(jnp.ones((1, 3))),
            jaxreg.orthogonal_penalty(jnp.ones((3, 1)), "columns"),
            jaxreg.orthogonal_penalty(jnp.ones((3, 2))),
        )
    )(jax.device_put(q.astype(np.float32)))
    assert float(orthogonal) < 1e-6
    assert float(no_rows) == 0.0  # no pairs
    assert float(no_columns) == 0.0
    assert float(identical) == pytest.approx(1.0)  # identical rows


@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_penalty_gradient_is_finite_at_a_zero_row_or_column(mode):
    # A row (column) pruned to exactly zero, e.g. by prox_group_lasso, contributes no pair to the
    # penalty: its gradient is 0 (the sign(0) = 0 subgradient of |.|, as l1_penalty), and the other
    # rows get the gradient of the matrix without it, scaled by the ratio of the pair counts
    # (n-1)(n-2) / (n(n-1)) = (n-2)/n.
    w = random_normal(9, (4, 3))
    if mode == "rows":
        w[1] = 0.0
        reduced = np.delete(w, 1, axis=0)
    else:
        w[:, 1] = 0.0
        reduced = np.delete(w, 1, axis=1)
    n = w.shape[0] if mode == "rows" else w.shape[1]
    grad_fn = jax.jit(jax.grad(lambda w: jaxreg.orthogonal_penalty(w, mode)))
    grad = np.asarray(grad_fn(jax.device_put(w)))
    assert np.all(np.isfinite(grad))
    zero = grad[1] if mode == "rows" else grad[:, 1]
    np.testing.assert_array_equal(zero, 0.0)
    others = np.delete(grad, 1, axis=0 if mode == "rows" else 1)
    expected = (n - 2) / n * np.asarray(grad_fn(jax.device_put(reduced)))
    np.testing.assert_allclose(others, expected, rtol=1e-5, atol=1e-7)
    assert np.abs(others).max() > 1e-3  # the other rows still get a gradient


def test_soft_orthogonal_and_spectral_penalties_match_numpy():
    w = random_normal(7, (6, 4)).astype(np.float64)
    k = random_normal(8, (3, 3, 2, 5))
    q, _ = np.linalg.qr(w)
    soft, spectral, grad, spectral_k, soft_q = jax.jit(  # one compilation for every value below
        lambda w, k, q: (
            jaxreg.soft_orthogonal_penalty(w),
            jaxreg.spectral_penalty(w),
            jax.grad(jaxreg.spectral_penalty)(w),
            jaxreg.spectral_penalty(k),
            jaxreg.soft_orthogonal_penalty(q),
        )
    )(jax.device_put(w.astype(np.float32)), jax.device_put(k), jax.device_put(q.astype(np.float32)))
    expected = np.sum((w.T @ w - np.eye(4)) ** 2)
    np.testing.assert_allclose(float(soft), expected, rtol=1e-5)
    u, s, vt = np.linalg.svd(w)
    np.testing.assert_allclose(float(spectral), s[0] ** 2, rtol=1e-5)
    # d sigma^2 / dW = 2 sigma u1 v1^T (top singular value is simple for this draw).
    np.testing.assert_allclose(np.asarray(grad), 2 * s[0] * np.outer(u[:, 0], vt[0]), rtol=1e-4, atol=1e-5)
    # ndim > 2: reshaped to (-1, out).
    s_k = np.linalg.svd(k.reshape(-1, 5), compute_uv=False)[0]
    np.testing.assert_allclose(float(spectral_k), s_k**2, rtol=1e-5)
    # Orthonormal columns: soft orthogonality is zero.
    assert float(soft_q) < 1e-10


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


# --- stacks of matrices (batch_dims) -----------------------------------------------------------------

# (penalty, stack shape, batch_dims): (layers, in, out) scanned kernels and a 2-D grid of them; the
# spectral penalty also on a stack of conv kernels, each reshaped to (-1, out) on its own.
STACKS = [
    ("rows", (3, 5, 4), 1),
    ("columns", (2, 3, 4, 5), 2),
    ("soft", (3, 5, 4), 1),
    ("soft", (2, 3, 4, 5), 2),
    ("spectral", (2, 3, 4, 5), 2),
    ("spectral", (2, 3, 4, 5), 1),
]
PENALTIES = {
    "rows": lambda w, **kw: jaxreg.orthogonal_penalty(w, "rows", **kw),
    "columns": lambda w, **kw: jaxreg.orthogonal_penalty(w, "columns", **kw),
    "soft": jaxreg.soft_orthogonal_penalty,
    "spectral": jaxreg.spectral_penalty,
}


@pytest.mark.parametrize(("name", "shape", "batch_dims"), STACKS)
def test_matrix_penalties_of_a_stack_are_the_sum_of_a_loop_over_its_matrices(name, shape, batch_dims):
    # The oracle: a Python loop over the matrices, each penalized by the unbatched function; the
    # stacked penalty is their sum, and its gradient is each matrix's own gradient, in place.
    fn = PENALTIES[name]
    w = jax.device_put(random_normal(11, shape))
    got, grad = jax.jit(jax.value_and_grad(lambda w: fn(w, batch_dims=batch_dims)))(w)
    items = np.asarray(w).reshape(-1, *shape[batch_dims:])
    per_matrix = jax.jit(jax.value_and_grad(fn))  # batch_dims=0, one compilation for the loop
    want = [per_matrix(item) for item in items]
    np.testing.assert_allclose(float(got), sum(float(v) for v, _ in want), rtol=1e-5)
    want_grad = np.stack([np.asarray(g) for _, g in want]).reshape(shape)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-4, atol=1e-6)
    assert got.shape == () and got.dtype == jnp.float32


def test_matrix_penalties_per_matrix_values_by_vmap_and_empty_stacks():
    # The docstrings' recipe for one value per matrix: jax.vmap of the unbatched function.
    w = jax.device_put(random_normal(12, (3, 4, 2)))
    per_matrix, empty = jax.jit(  # one compilation for the vmap and the empty stacks
        lambda w: (
            jax.vmap(jaxreg.soft_orthogonal_penalty)(w),
            {name: fn(jnp.zeros((0, 3, 2)), batch_dims=1) for name, fn in PENALTIES.items()},
        )
    )(w)
    np.testing.assert_allclose(
        np.asarray(per_matrix), [np.sum((m.T @ m - np.eye(2)) ** 2) for m in np.asarray(w)], rtol=1e-5
    )
    for name, value in empty.items():  # an empty stack sums to 0
        assert float(value) == 0.0, name


def test_matrix_penalties_batch_dims_errors_name_the_argument():
    w = jnp.ones((3, 4, 2))
    for fn in PENALTIES.values():
        with pytest.raises(ValueError, match="batch_dims must be >= 0, got -1"):
            fn(w, batch_dims=-1)
        with pytest.raises(TypeError, match=r"batch_dims must be an int, got 1\.0"):
            fn(w, batch_dims=1.0)
        with pytest.raises(
            ValueError, match=r"batch_dims=2 needs w with .* 4 dimensions .* got shape \(3, 4, 2\)"
        ):
            fn(w, batch_dims=2)
    # The orthogonality penalties take matrices, not conv kernels: exactly batch_dims + 2 axes.
    for fn in (PENALTIES["rows"], PENALTIES["soft"]):
        with pytest.raises(ValueError, match=r"batch_dims=1 needs w with exactly 3 dimensions"):
            fn(jnp.ones((2, 3, 4, 2)), batch_dims=1)


def test_matrix_penalties_take_nested_lists_and_numpy_strings_as_arrays_and_strings():
    # A list reaches the computation as one array (not one argument per entry), and a mode given
    # as a 0-d NumPy string works as the str it holds: the same values as the array and the str.
    w = np.random.default_rng(4).standard_normal((6, 4)).astype(np.float32)
    for fn in (jaxreg.orthogonal_penalty, jaxreg.soft_orthogonal_penalty, jaxreg.spectral_penalty):
        assert float(fn(w.tolist())) == float(fn(jax.device_put(w))), fn.__name__
    assert float(jaxreg.orthogonal_penalty(w, np.array("columns"))) == float(
        jaxreg.orthogonal_penalty(w, "columns")
    )
    a = jax.device_put(w[:4, :3])
    np.testing.assert_array_equal(
        jaxreg.orthogonal_map(a, method=np.array("cayley")), jaxreg.orthogonal_map(a, method="cayley")
    )
