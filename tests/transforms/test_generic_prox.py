"""proximal / projected, and the prox steps built on them, against independent oracles.

Oracles: ``optax.projections`` applied directly to ``w + u``; jaxopt's prox functions
(``jaxopt.prox``); cvxpy solving the prox problem ``argmin_x 1/2 ||x - z||^2 + t g(x)``;
NumPy closed forms (the SVD for the nuclear norm).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import group_slices, land, land_all, random_normal

import jaxreg

jaxopt_prox = pytest.importorskip("jaxopt.prox")
cp = pytest.importorskip("cvxpy")

W = random_normal(0, (4, 6))
U = random_normal(1, (4, 6), scale=0.3)
Z = W + U


def _landed_all(*cases):
    """The landed ``w`` of each ``tx`` or ``(tx, w, u)`` of ``cases`` (``w=W``, ``u=U`` for a bare
    ``tx``): all in one jitted program (helpers.land_all), as NumPy arrays."""
    cases = [(c, W, U) if hasattr(c, "update") else c for c in cases]  # a transform is a tuple too
    landed = land_all([(tx, {"w": jax.device_put(w)}, {"w": jax.device_put(u)}) for tx, w, u in cases])
    return [np.asarray(out["w"]) for out in landed]


def _landed(tx, w=W, u=U):
    return _landed_all((tx, w, u))[0]


# --- projected -------------------------------------------------------------------------------------

PROJECTIONS = {
    "simplex": optax.projections.projection_simplex,
    "simplex_scale": functools.partial(optax.projections.projection_simplex, scale=2.0),
    "l1_ball": optax.projections.projection_l1_ball,
    "l1_ball_scale": functools.partial(optax.projections.projection_l1_ball, scale=0.5),
    "l2_ball": optax.projections.projection_l2_ball,
    "l2_ball_scale": functools.partial(optax.projections.projection_l2_ball, scale=0.5),
    "box": functools.partial(optax.projections.projection_box, lower=-0.5, upper=0.25),
    "hypercube": optax.projections.projection_hypercube,
    "hypercube_scale": functools.partial(optax.projections.projection_hypercube, scale=0.5),
    "non_negative": optax.projections.projection_non_negative,
}


@functools.cache
def _projected_landed():
    """``{name: (landed, optax's projection of Z)}`` for every projection: the landings in one jitted
    program, the oracles (optax's functions on ``Z``) in another."""
    names = list(PROJECTIONS)
    landed = _landed_all(*(jaxreg.projected(PROJECTIONS[name]) for name in names))
    want = jax.jit(lambda z: [PROJECTIONS[name](z) for name in names])(jax.device_put(Z))
    return {name: (got, np.asarray(w)) for name, got, w in zip(names, landed, want, strict=True)}


@pytest.mark.parametrize("name", list(PROJECTIONS))
def test_projected_lands_on_the_projection_of_w_plus_u(name):
    got, want = _projected_landed()[name]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_projected_respects_the_mask_and_names_itself_in_errors():
    params = {"a": jax.device_put(W), "b": jax.device_put(W)}
    tx = jaxreg.projected(optax.projections.projection_non_negative, mask={"a": True, "b": False})
    (out,) = land_all([(tx, params, {"a": np.zeros_like(W), "b": np.zeros_like(W)})])
    np.testing.assert_array_equal(out["a"], np.maximum(W, 0))
    np.testing.assert_array_equal(out["b"], W)

    def bad(z):
        raise ValueError("no")

    with pytest.raises(ValueError, match="projected: params leaf 'a' of shape"):
        land(jaxreg.projected(bad), {"a": jax.device_put(W)}, {"a": jnp.zeros_like(W)})
    with pytest.raises(TypeError, match="proj_fn"):
        jaxreg.projected(3.0)


# --- proximal --------------------------------------------------------------------------------------


@functools.cache
def _oracles_at_z():
    """The jaxopt and optax reference maps of ``Z`` that the tests below compare with, as NumPy
    arrays: one jitted program for the four (eagerly each would compile op by op)."""
    return jax.tree.map(
        np.asarray,
        jax.jit(
            lambda z: {
                "prox_lasso": jaxopt_prox.prox_lasso(z, 0.2),
                "prox_non_negative_lasso": jaxopt_prox.prox_non_negative_lasso(z, 0.2),
                "prox_ridge": jaxopt_prox.prox_ridge(z, 0.5),
                "projection_non_negative": optax.projections.projection_non_negative(z),
            }
        )(Z),
    )


def test_proximal_with_jaxopt_prox_lasso_is_prox_l1():
    tx = jaxreg.proximal(jaxopt_prox.prox_lasso, 0.5, 0.4)
    want = _oracles_at_z()["prox_lasso"]
    got, by_prox_l1 = _landed_all(tx, jaxreg.prox_l1(0.5, 0.4))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got, by_prox_l1)


def test_proximal_evaluates_schedules_and_factors():
    lr = optax.linear_schedule(1.0, 0.0, 4)
    tx = jaxreg.proximal(jaxreg.soft_threshold, lambda c: 0.1 * (c + 1), lr, factors={"a": 2.0, "b": 0.0})
    params = {"a": jax.device_put(W), "b": jax.device_put(W)}
    updates = {"a": jax.device_put(U), "b": jax.device_put(U)}
    state = tx.init(params)
    step = jax.jit(tx.update)
    for count in range(3):
        out, state = step(updates, state, params)
        t = 2.0 * 0.1 * (count + 1) * (1.0 - count / 4)
        want = np.sign(Z) * np.maximum(np.abs(Z) - t, 0)
        np.testing.assert_allclose(np.asarray(params["a"] + out["a"]), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(out["b"], U)


def test_proximal_rejects_bad_arguments():
    with pytest.raises(TypeError, match="prox_fn"):
        jaxreg.proximal(None, 0.1, 0.1)
    with pytest.raises(ValueError, match="strength"):
        jaxreg.proximal(jaxreg.soft_threshold, -1.0, 0.1)
    with pytest.raises(ValueError, match="learning_rate"):
        jaxreg.proximal(jaxreg.soft_threshold, 1.0, float("nan"))


# --- the prox steps, against jaxopt and cvxpy ---------------------------------------------------------


def _cvxpy_prox(z, penalty, nonneg=False):
    """``argmin_x 1/2 ||x - z||^2 + penalty(x)`` (over ``x >= 0`` if ``nonneg``) solved by cvxpy (float64)."""
    z = np.asarray(z, np.float64)
    x = cp.Variable(z.shape, nonneg=nonneg)
    cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - z) + penalty(x))).solve(solver=cp.CLARABEL)
    return x.value


def test_prox_l1_non_negative_matches_jaxopt_and_cvxpy():
    tx = jaxreg.prox_l1(0.5, 0.4, non_negative=True)
    got = _landed(tx)
    np.testing.assert_allclose(got, _oracles_at_z()["prox_non_negative_lasso"], atol=1e-7)
    want = _cvxpy_prox(Z, lambda x: 0.2 * cp.norm1(x), nonneg=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert (got >= 0).all() and (got == 0).any()
    with pytest.raises(TypeError, match="non_negative"):
        jaxreg.prox_l1(0.5, 0.4, non_negative="yes")


def test_prox_ridge_matches_jaxopt_and_cvxpy():
    got = _landed(jaxreg.prox_ridge(2.0, 0.25))
    np.testing.assert_allclose(got, _oracles_at_z()["prox_ridge"], rtol=1e-6)
    want = _cvxpy_prox(Z, lambda x: 0.25 * 2.0 / 2 * cp.sum_squares(x))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("axis", [0, 1])
def test_prox_sparse_group_lasso_matches_cvxpy(axis):
    l1, group, lr = 0.3, 0.8, 0.5
    got = _landed(jaxreg.prox_sparse_group_lasso(l1, group, lr, axis=axis))

    def penalty(x):
        groups = [x[i, :] for i in range(Z.shape[0])] if axis == 0 else [x[:, j] for j in range(Z.shape[1])]
        return lr * (l1 * cp.norm1(x) + group * sum(cp.norm(g, 2) for g in groups))

    np.testing.assert_allclose(got, _cvxpy_prox(Z, penalty), atol=2e-5)
    assert (got == 0).any()  # exact zeros


def test_prox_sparse_group_lasso_reduces_to_its_two_parts():
    group_only, group_lasso, l1_only, l1, on_a_vector = _landed_all(
        jaxreg.prox_sparse_group_lasso(0.0, 0.7, 0.5),
        jaxreg.prox_group_lasso(0.7, 0.5),
        jaxreg.prox_sparse_group_lasso(0.7, 0.0, 0.5),
        jaxreg.prox_l1(0.7, 0.5),
        (jaxreg.prox_sparse_group_lasso(0.0, 0.7, 0.5), W[0], U[0]),
    )
    np.testing.assert_array_equal(group_only, group_lasso)
    np.testing.assert_array_equal(l1_only, l1)
    # the group lasso step of jaxopt on a 1-D leaf (one group)
    z = Z[0]
    want = np.asarray(jax.jit(jaxopt_prox.prox_group_lasso)(jax.device_put(z), 0.35))
    np.testing.assert_allclose(on_a_vector, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("shape", "axis"), [((4, 6), 0), ((3, 2, 4, 5), (2, 3)), ((3, 2, 4, 5), (0, -1))])
def test_prox_group_lasso_is_jaxopt_prox_group_lasso_on_each_group(shape, axis):
    # jaxopt's block soft-thresholding treats its whole input as one group: apply it per group.
    w, u = random_normal(3, shape), random_normal(4, shape, scale=0.3)
    z = jax.device_put(w + u)
    t = float(np.median([np.linalg.norm((w + u)[g]) for g in group_slices(shape, axis)]))
    got = _landed(jaxreg.prox_group_lasso(t / 0.5, 0.5, axis=axis), w, u)
    want = np.zeros(shape, np.float32)
    oracle = jax.jit(jaxopt_prox.prox_group_lasso)  # one compilation per group shape
    for g in group_slices(shape, axis):
        want[g] = np.asarray(oracle(z[g], t))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert (got == 0).any() and (got != 0).any()  # the threshold is active on some groups, not all


def _svt(z, t):
    u, s, vt = np.linalg.svd(np.asarray(z, np.float64), full_matrices=False)
    return (u * np.maximum(s - t, 0)) @ vt


def test_prox_nuclear_norm_matches_the_svd_and_cvxpy():
    got = _landed(jaxreg.prox_nuclear_norm(2.0, 0.5))
    np.testing.assert_allclose(got, _svt(Z, 1.0), atol=1e-5)
    np.testing.assert_allclose(got, _cvxpy_prox(Z, lambda x: 1.0 * cp.normNuc(x)), atol=1e-4)
    assert np.linalg.matrix_rank(got, tol=1e-4) < np.linalg.matrix_rank(Z)


def test_prox_nuclear_norm_batch_dims_and_kernels():
    w = random_normal(2, (3, 2, 4, 5))
    u = np.zeros_like(w)
    batched, whole = _landed_all(
        (jaxreg.prox_nuclear_norm(1.0, 1.0, batch_dims=1), w, u),
        (jaxreg.prox_nuclear_norm(1.0, 1.0), w, u),  # the (3 * 2 * 4, 5) matrix
    )
    for i in range(3):
        want = _svt(w[i].reshape(-1, 5), 1.0).reshape(2, 4, 5)
        np.testing.assert_allclose(batched[i], want, atol=1e-5)
    np.testing.assert_allclose(whole, _svt(w.reshape(-1, 5), 1.0).reshape(w.shape), atol=1e-5)
    with pytest.raises(
        ValueError, match="prox_nuclear_norm: params leaf 'w' of shape \\(4,\\): needs at least 2 axes"
    ):
        _landed(jaxreg.prox_nuclear_norm(1.0, 1.0), np.ones(4, np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="batch_dims"):
        jaxreg.prox_nuclear_norm(1.0, 1.0, batch_dims=-1)


def _wide_range(dtype):
    """``w`` and ``u`` over many binades (about 1e-4 to 1e4), plus the edge cases:
    ``u = -w`` (z exactly 0), signed zeros, infinities and a NaN."""
    rng = np.random.default_rng(5)
    n = 4096
    w = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)
    u = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)
    u[:64] = -w[:64]
    edges_w = [0.0, -0.0, 0.0, -0.0, np.inf, np.inf, -np.inf, 1.0, np.nan, 2.0]
    edges_u = [-0.0, -0.0, 0.0, 0.0, -1.0, 1.0, 1.0, np.inf, 1.0, -np.inf]
    w = np.concatenate([w, edges_w]).astype(dtype)
    u = np.concatenate([u, edges_u]).astype(dtype)
    return jax.device_put(w), jax.device_put(u)


def _bits(x):
    x = np.asarray(x)
    return x.view(np.dtype(f"u{x.dtype.itemsize}"))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_non_negative_lands_on_the_same_bits_as_optax_keep_params_nonnegative(dtype):
    # non_negative is projected(projection_non_negative); before it was built on projected it
    # was optax.keep_params_nonnegative (update -w below 0, u elsewhere): the same bits, also for
    # the sign of a zero, infinite params and NaN.
    w, u = _wide_range(dtype)
    txs = (
        optax.keep_params_nonnegative(),
        jaxreg.non_negative(),
        jaxreg.projected(optax.projections.projection_non_negative),
    )
    want, *landed = (out["w"] for out in land_all([(tx, {"w": w}, {"w": u}) for tx in txs]))
    for got in landed:
        assert got.dtype == w.dtype
        np.testing.assert_array_equal(_bits(got), _bits(want))
    landed = np.asarray(want, np.float64)
    assert (landed[~np.isnan(landed)] >= 0).all()
    assert (landed == 0).sum() > 1000 and (landed > 0).sum() > 1000  # both branches taken


def test_non_negative_is_the_optax_projection_of_w_plus_u():
    got = _landed(jaxreg.non_negative())
    np.testing.assert_allclose(got, _oracles_at_z()["projection_non_negative"], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got == 0, Z <= 0)


def test_prox_l1_non_negative_is_proximal_of_the_non_negative_soft_threshold():
    # prox_l1(non_negative=True) and proximal(prox_fn) come from one builder: the same bits.
    def shrink_non_negative(z, t):
        return jnp.maximum(z - t, 0)

    w, u = (np.asarray(x) for x in _wide_range(jnp.float32))
    ok = np.isfinite(w) & np.isfinite(u)
    w, u = w[ok], u[ok]
    want, got = (
        out["w"]
        for out in land_all(
            [
                (jaxreg.proximal(shrink_non_negative, 0.5, 0.4), {"w": w}, {"w": u}),
                (jaxreg.prox_l1(0.5, 0.4, non_negative=True), {"w": w}, {"w": u}),
            ]
        )
    )
    np.testing.assert_array_equal(_bits(got), _bits(want))


def test_proximal_under_inject_hyperparams_with_prox_fn_static():
    tx = optax.inject_hyperparams(jaxreg.proximal, static_args=("prox_fn",))(
        prox_fn=jaxreg.soft_threshold, strength=0.5, learning_rate=0.4
    )
    np.testing.assert_allclose(*_landed_all(tx, jaxreg.prox_l1(0.5, 0.4)), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("radius", [0.5, 100.0])
def test_max_norm_over_the_whole_leaf_is_the_optax_l2_ball_projection(radius):
    ball = functools.partial(optax.projections.projection_l2_ball, scale=radius)
    np.testing.assert_allclose(
        *_landed_all(jaxreg.max_norm(radius, axis=None), jaxreg.projected(ball)), rtol=1e-6, atol=1e-7
    )


def test_unit_norm_over_the_whole_leaf_is_the_optax_l2_sphere_projection():
    sphere = optax.projections.projection_l2_sphere
    np.testing.assert_allclose(*_landed_all(jaxreg.unit_norm(axis=None), jaxreg.projected(sphere)), rtol=1e-6)
