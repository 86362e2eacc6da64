"""Constraints and the group-lasso prox at the ends of each dtype's range, what is exact and what is
only up to rounding (the bounds stated in the docstrings), and zero-size leaves.

Oracles: the formulas evaluated in float64 NumPy (norms with ``np.linalg.norm`` on values scaled
to order 1 where the squares would leave float64's range).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import land_all, on_device

import jaxreg

EPS = 1e-7  # the constraints' floor on the divisor
UNIT_ROUNDOFF = {jnp.float16: 2.0**-11, jnp.bfloat16: 2.0**-8, jnp.float32: 2.0**-24, jnp.float64: 2.0**-53}


# Each test lands all its cases in one jitted program (helpers.land_all: each case its own
# tx.update + apply_updates on its own leaf, as in a step of its own); the parametrized tests with
# many cases share one program per group, computed once (functools.cache) and read case by case.


def _land(tx, params, updates):
    """Where ``params`` land after one (jitted) ``tx`` step with incoming ``updates``."""
    return land_all([(tx, params, updates)])[0]


def _project_case(tx, z):
    """The ``land_all`` case of ``P(z)``: the landing from params 0 with the update ``z``
    (``0 + (P(z) - 0)`` is exact)."""
    return tx, {"w": np.zeros(z.shape, z.dtype)}, {"w": z}


def _project_all(cases):
    """``P(z)`` for each ``(tx, z)`` of ``cases``, in one jitted program."""
    return [out["w"] for out in land_all([_project_case(tx, z) for tx, z in cases])]


def _project(tx, z):
    return _project_all([(tx, z)])[0]


def _f64(x):
    """``x`` (any float dtype, bfloat16 included) in float64 NumPy: an exact conversion."""
    return np.asarray(x).astype(np.float64)


def _np_norms(z, axis):
    z = np.asarray(z, np.float64)
    m = np.max(np.abs(z), axis=axis, keepdims=True)
    m = np.where(m > 0, m, 1.0)
    return m * np.sqrt(np.sum((z / m) ** 2, axis=axis, keepdims=True))


def _np_rescale(z, axis, desired):
    z = np.asarray(z, np.float64)
    n = _np_norms(z, axis)
    d = desired(n)
    return np.where(d == n, z, z * (d / np.maximum(n, EPS)))


ORACLES = {
    "max_norm": (lambda: jaxreg.max_norm(1.0), lambda z: _np_rescale(z, 0, lambda n: np.minimum(n, 1.0))),
    "unit_norm": (lambda: jaxreg.unit_norm(), lambda z: _np_rescale(z, 0, lambda n: np.ones_like(n))),
    "min_max_norm": (
        lambda: jaxreg.min_max_norm(0.5, 2.0),
        lambda z: _np_rescale(z, 0, lambda n: np.clip(n, 0.5, 2.0)),
    ),
    "min_max_norm_rate": (
        lambda: jaxreg.min_max_norm(0.5, 2.0, rate=0.5),
        lambda z: _np_rescale(z, 0, lambda n: 0.5 * np.clip(n, 0.5, 2.0) + 0.5 * n),
    ),
}


def _column(scale, n=5, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 1.0, (n, 3)) * scale


# --- overflow and underflow of the norm -----------------------------------------------------------

ENDS = [
    (jnp.float32, 1e20),  # squares overflow float32
    (jnp.float32, 3e38),  # the norm itself is above float32's maximum
    (jnp.float32, 1e-25),  # squares underflow float32
    (jnp.bfloat16, 1e20),
    (jnp.bfloat16, 3e38),
    (jnp.float16, 6e4),
    (jnp.float16, 1e-7),  # subnormal float16 entries, normal float32 ones
]


@functools.cache
def _ends_landed():
    """``{(name, dtype, scale): (z, P(z))}`` for every case of the test below: one program."""
    keys = [(name, dtype, scale) for name in ORACLES for dtype, scale in ENDS]
    zs = [on_device(_column(scale), dtype) for _, dtype, scale in keys]
    got = _project_all([(ORACLES[name][0](), z) for (name, _, _), z in zip(keys, zs, strict=True)])
    return dict(zip(keys, zip(zs, got, strict=True), strict=True))


@pytest.mark.parametrize("name", list(ORACLES))
@pytest.mark.parametrize(("dtype", "scale"), ENDS)
def test_constraints_at_the_ends_of_the_range(name, dtype, scale):
    _, oracle = ORACLES[name]
    z, got = _ends_landed()[name, dtype, scale]
    assert got.dtype == dtype
    expected = oracle(_f64(z))
    # One rounding to the leaf dtype (exact-ish float32 arithmetic underneath); for float16
    # outputs below its normal range the spacing of subnormals (2^-24) is the absolute error.
    u = UNIT_ROUNDOFF[dtype]
    np.testing.assert_allclose(_f64(got), expected, rtol=4 * u, atol=2.0**-24 if dtype == jnp.float16 else 0)


@functools.cache
def _ends64_landed():
    """``{(name, scale): (z, P(z))}`` in float64 (called under ``jax.enable_x64``): one program."""
    keys = [(name, scale) for name in ORACLES for scale in (1e200, 1e-200)]
    zs = [on_device(_column(scale), jnp.float64) for _, scale in keys]
    got = _project_all([(ORACLES[name][0](), z) for (name, _), z in zip(keys, zs, strict=True)])
    return dict(zip(keys, zip(zs, got, strict=True), strict=True))


@pytest.mark.parametrize("name", list(ORACLES))
@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_constraints_float64_at_the_ends_of_the_range(name, scale):
    _, oracle = ORACLES[name]
    with jax.enable_x64(True):
        z, got = _ends64_landed()[name, scale]
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(got), oracle(np.asarray(z)), rtol=1e-14)


def test_min_max_norm_is_not_nan_where_the_norm_overflows():
    z = on_device(np.full((4, 2), 3e38), jnp.float32)  # column norm 6e38 > float32 max
    got = np.asarray(_project(jaxreg.min_max_norm(0.5, 2.0), z))
    np.testing.assert_allclose(got, np.full((4, 2), 1.0), rtol=1e-6)


# (1e-25, 1e-20): float32 squares all round to 0 and t is above any such norm: the group lands on 0.
# (1e-25, 0.0): t = 0 keeps the tiny group as it is, which needs its exact (nonzero) norm.
GROUP_LASSO_ENDS = [(1e20, 3e20), (1e-25, 3e-26), (1.0, 0.5), (1e-25, 1e-20), (1e-25, 0.0)]


@functools.cache
def _group_lasso_ends_landed():
    """``{(scale, t): (z, landing)}`` for every case of the test below: one program."""
    zs = [on_device(_column(scale, n=4, seed=1).T, jnp.float32) for scale, _ in GROUP_LASSO_ENDS]
    txs = [jaxreg.prox_group_lasso(t, 1.0, axis=0) for _, t in GROUP_LASSO_ENDS]
    got = _project_all(list(zip(txs, zs, strict=True)))
    return dict(zip(GROUP_LASSO_ENDS, zip(zs, got, strict=True), strict=True))


@pytest.mark.parametrize(("scale", "t"), GROUP_LASSO_ENDS)
def test_prox_group_lasso_norms_neither_overflow_nor_underflow(scale, t):
    z, got = _group_lasso_ends_landed()[scale, t]  # 3 groups of 4 along axis 0
    z64 = _f64(z)
    n = _np_norms(z64, 1)
    expected = z64 * np.maximum(1 - t / n, 0)
    np.testing.assert_allclose(_f64(got), expected, rtol=1e-5)


def test_gradients_of_weight_norms_stay_finite_at_zero_and_at_large_values():
    # The norm of the constraints is the package's one norm: gradient 0 at 0, x / ||x|| elsewhere.
    from jaxreg._norms import safe_norm

    grad = jax.jit(jax.grad(lambda x: safe_norm(x, keepdims=False)))  # one compilation for both
    for x, expected in ((np.zeros(3), np.zeros(3)), (np.array([3e20, 4e20, 0.0]), np.array([0.6, 0.8, 0.0]))):
        g = grad(on_device(x, jnp.float32))
        np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-6)


# --- what is exact, what holds up to rounding (the docstrings' statements) ------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_feasible_params_stay_bit_identical(dtype):
    w = np.zeros((3, 4))
    w[:, 0] = [0.1, 0.2, 0.2]  # norm 0.3 <= 1 (max_norm(1))
    w[:, 1] = [0.6, 0.0, 0.0]  # in [0.5, 2] (min_max_norm)
    w[:, 2] = [0.0, 1.0, 0.0]  # exactly unit (unit_norm)
    w = on_device(w, dtype)
    zeros = np.zeros(w.shape, w.dtype)
    cases = (
        (jaxreg.max_norm(1.0), [0, 1, 2]),
        (jaxreg.min_max_norm(0.5, 2.0), [1, 2]),
        (jaxreg.unit_norm(), [2]),
    )
    landed = land_all([(tx, {"w": w}, {"w": zeros}) for tx, _ in cases])
    for (_, cols), got in zip(cases, landed, strict=True):
        np.testing.assert_array_equal(np.asarray(got["w"])[:, cols], np.asarray(w)[:, cols])


IDEMPOTENCE_NS = (1, 3, 64, 1000)
IDEMPOTENCE_TXS = (
    (lambda: jaxreg.max_norm(0.75), lambda nn: np.minimum(nn, 0.75)),
    (lambda: jaxreg.unit_norm(), lambda nn: np.ones_like(nn)),
    (lambda: jaxreg.min_max_norm(2.0, 3.0), lambda nn: np.clip(nn, 2.0, 3.0)),
)


@functools.cache
def _idempotence_landed(dtype):
    """``{n: (z, [(P(z), P(P(z))) per transform])}`` for one dtype (under ``jax.enable_x64`` for
    float64): one program for every first projection, one for every second."""
    zs, cases = {}, []
    for n in IDEMPOTENCE_NS:
        rng = np.random.default_rng(n)
        z_np = rng.standard_normal((n, 200)) * rng.uniform(0.5, 50.0, 200)
        zs[n] = on_device(z_np, dtype)
        cases += [(make(), zs[n]) for make, _ in IDEMPOTENCE_TXS]
    once = _project_all(cases)
    twice = land_all(
        [(tx, {"w": o}, {"w": np.zeros(o.shape, o.dtype)}) for (tx, _), o in zip(cases, once, strict=True)]
    )
    pairs = [(o, t["w"]) for o, t in zip(once, twice, strict=True)]
    k = len(IDEMPOTENCE_TXS)
    return {n: (zs[n], pairs[i * k : (i + 1) * k]) for i, n in enumerate(IDEMPOTENCE_NS)}


def _idempotence_cases():
    for dtype in (jnp.float32, jnp.bfloat16, jnp.float16, jnp.float64):
        for n in IDEMPOTENCE_NS:
            yield dtype, n


def _ext(x):
    """``x`` in extended precision (exact: through float64)."""
    return _f64(x).astype(np.longdouble)


@pytest.mark.parametrize(("dtype", "n"), list(_idempotence_cases()))
def test_projection_applied_twice_moves_entries_by_at_most_the_stated_bound(dtype, n):
    # Stated: the projected vector has norm d (1 + eta), |eta| <= (N/2 + 3) delta, and projecting it
    # again moves each entry by at most (N + 6) delta relative; delta = 2^-24 (float32 arithmetic,
    # also for half-precision leaves, plus 1 and 2 roundings to the leaf dtype) or 2^-53 (float64).
    # The norms of the results are measured in extended precision.
    u = 2.0**-53 if dtype == jnp.float64 else 2.0**-24
    u_leaf = UNIT_ROUNDOFF[dtype] if dtype in (jnp.float16, jnp.bfloat16) else 0.0
    with jax.enable_x64(dtype == jnp.float64):
        z, landed = _idempotence_landed(dtype)[n]
        assert z.dtype == dtype and z.shape == (n, 200)
        z_ext = _ext(z)
        for (_, desired), (once, twice) in zip(IDEMPOTENCE_TXS, landed, strict=True):
            assert once.dtype == twice.dtype == dtype
            once_ext = _ext(once)
            d = desired(np.sqrt(np.sum(z_ext**2, axis=0)))
            eta = np.sqrt(np.sum(once_ext**2, axis=0)) / d - 1
            assert np.all(np.abs(eta) <= (n / 2 + 3) * u + u_leaf), float(np.abs(eta).max())
            twice_ext = _ext(twice)
            moved = np.abs(twice_ext - once_ext)
            bound = ((n + 6) * u + 2 * u_leaf) * np.abs(once_ext)
            assert np.all(moved <= bound), float((moved / np.abs(once_ext)).max())


def test_below_the_floor_unit_norm_takes_two_steps():
    # Stated: a norm n < eps = 1e-7 is scaled by 1 / eps (not 1 / n): the first projection lands on
    # norm n / eps < 1, a second one on norm 1.
    z = on_device([[3e-9], [4e-9]], jnp.float32)  # n = 5e-9
    tx = jaxreg.unit_norm()
    once = _project(tx, z)
    np.testing.assert_allclose(_f64(once), _f64(z) / EPS, rtol=1e-6)
    twice = _land(tx, {"w": once}, {"w": np.zeros(once.shape, once.dtype)})["w"]
    np.testing.assert_allclose(np.asarray(twice), [[0.6], [0.8]], rtol=1e-6)


def test_below_the_floor_min_max_norm_and_max_norm():
    # Stated: min_max_norm lands a norm n < eps on n d / eps with d = r a + (1 - r) n; max_norm with
    # c < eps lands it on c n / eps < c (feasible: a second step leaves it bit for bit).
    z = np.array([[3e-9], [4e-9]])  # n = 5e-9
    n = 5e-9
    z32 = on_device(z, jnp.float32)
    rates = (1.0, 0.5)
    tx = jaxreg.max_norm(1e-9)
    *by_rate, once = _project_all([(jaxreg.min_max_norm(0.5, 2.0, rate=r), z32) for r in rates] + [(tx, z32)])
    for rate, got in zip(rates, by_rate, strict=True):
        d = rate * 0.5 + (1 - rate) * n
        np.testing.assert_allclose(_f64(got), z * d / EPS, rtol=1e-6)
    np.testing.assert_allclose(_f64(once), z * 1e-9 / EPS, rtol=1e-6)
    twice = _land(tx, {"w": once}, {"w": np.zeros(once.shape, once.dtype)})["w"]
    np.testing.assert_array_equal(np.asarray(twice), np.asarray(once))


def _landing_bound(w, target, u):
    # Stated: the transform returns fl(P(z) - w) and optax adds it to w: the result is within
    # u (|w| + 2 |P(z)|)(1 + u) of P(z).
    return u * (np.abs(w) + 2 * np.abs(target)) * (1 + u)


def test_landing_far_above_the_target_is_off_by_at_most_the_stated_bound():
    # The documented example: max_norm(1e-4) on the column [3000, 4000] lands on [0, 0], within
    # the bound of P(z) = [6e-5, 8e-5]; unit_norm on [5e7] (float32 spacing 4 there) lands on 0,
    # within the bound of P(z) = [1].
    w1 = on_device([[3000.0], [4000.0]], jnp.float32)
    w2 = on_device([5e7], jnp.float32)
    landed = land_all(
        [
            (jaxreg.max_norm(1e-4), {"w": w1}, {"w": np.zeros(w1.shape, np.float32)}),
            (jaxreg.unit_norm(), {"w": w2}, {"w": np.zeros(w2.shape, np.float32)}),
        ]
    )
    got = _f64(landed[0]["w"])
    np.testing.assert_array_equal(got, [[0.0], [0.0]])
    target = np.array([[6e-5], [8e-5]])
    assert np.all(np.abs(got - target) <= _landing_bound(_f64(w1), target, 2.0**-24))
    got = _f64(landed[1]["w"])
    np.testing.assert_array_equal(got, [0.0])
    assert np.all(np.abs(got - 1.0) <= _landing_bound(5e7, 1.0, 2.0**-24))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_landing_of_constraints_and_prox_is_within_the_stated_bound(dtype):
    u = UNIT_ROUNDOFF[dtype]
    rng = np.random.default_rng(7)
    w = rng.standard_normal((4, 300)) * 10.0 ** rng.uniform(-3, 4, 300)
    w = _f64(on_device(w, dtype))
    params = {"w": on_device(w, dtype)}
    zeros = {"w": np.zeros(w.shape, params["w"].dtype)}
    cases = (
        (jaxreg.max_norm(0.5), lambda z: _np_rescale(z, 0, lambda n: np.minimum(n, 0.5))),
        (jaxreg.unit_norm(), ORACLES["unit_norm"][1]),
        (jaxreg.prox_l1(0.1, 1.0), lambda z: np.sign(z) * np.maximum(np.abs(z) - 0.1, 0)),
        (
            jaxreg.prox_group_lasso(0.5, 1.0, axis=1),
            lambda z: z * np.maximum(1 - 0.5 / np.maximum(_np_norms(z, 0), 1e-300), 0),
        ),
    )
    landed = land_all([(tx, params, zeros) for tx, _ in cases])
    for (_, make), out in zip(cases, landed, strict=True):
        # The target: P(w) as the transform computes it (float32 arithmetic, then rounded to the
        # leaf dtype), bracketed by the float64 oracle up to that rounding and the projection's error.
        target = make(w)
        got = _f64(out["w"])
        projection_error = (4 * 3 + 3) * 2.0**-24 + (u if dtype != jnp.float32 else 0)
        bound = _landing_bound(w, target, u) * (1 + projection_error) + projection_error * np.abs(target)
        assert np.all(np.abs(got - target) <= bound), np.max(np.abs(got - target) - bound)


# --- zero-size leaves -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0,)])
def test_zero_size_leaves(shape):
    w = on_device(np.zeros(shape), jnp.float32)
    txs = (
        jaxreg.max_norm(1.0, axis=None),
        jaxreg.unit_norm(axis=None),
        jaxreg.min_max_norm(0.5, 1.0, axis=None),
        jaxreg.prox_group_lasso(0.1, 1.0),
    )
    for got in land_all([(tx, {"w": w}, {"w": w}) for tx in txs]):
        assert got["w"].shape == shape


# --- the one pass over params + updates (large leaves on one device, see jaxreg._norms) -----------


@pytest.mark.parametrize("name", [*ORACLES, "prox_group_lasso"])
def test_one_pass_norms_land_where_the_formulas_do(name, monkeypatch):
    # Every leaf size takes the one-pass path here (by default only leaves of 2^20 entries), on
    # columns in the middle of float32's range (one pass), with a zero column (one pass where the
    # result does not depend on a norm that small), and with squares that overflow or underflow
    # (two passes): the same formulas, evaluated in float64, in every case.
    from jaxreg import _norms

    monkeypatch.setattr(_norms, "ONE_PASS_MIN_SIZE", 1)  # read when the program is traced
    if name == "prox_group_lasso":
        make = lambda: jaxreg.prox_group_lasso(0.75, 1.0, axis=1)  # noqa: E731  (groups: the columns)

        def oracle(z):
            n = _np_norms(z, 0)
            return np.where(n > 0, z * np.maximum(1 - 0.75 / np.where(n > 0, n, 1), 0), 0)
    else:
        make, oracle = ORACLES[name]
    all_scales = ((1.0, 0.3, 4.0), (1.0, 0.0, 4.0), (1.0, 1e20, 4.0), (1.0, 1e-25, 4.0))
    zs = [on_device(_column(1.0, n=6) * np.asarray(scales), jnp.float32) for scales in all_scales]
    landed = _project_all([(make(), z) for z in zs])
    for scales, z, got in zip(all_scales, zs, landed, strict=True):
        np.testing.assert_allclose(
            _f64(got), oracle(_f64(z)), rtol=4 * 2.0**-24, atol=0, err_msg=f"scales {scales}"
        )
