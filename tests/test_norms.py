"""The one-pass norms of the landing steps (``norm_parts_fast``) and their leaf-by-leaf order.

Oracles: norms in float64 NumPy, on values scaled to order 1 first (so that no square leaves
float64's range); the bound on the norm of a vector whose float32 squares all round to 0 is
derived from float32's smallest subnormal in the test.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_normal

import jaxreg
from jaxreg import _norms
from jaxreg._norms import norm_parts_fast, power_of_two

F32_UNIT_ROUNDOFF = 2.0**-24
# The one pass is for the CPU only (a cond's predicate would go to the host elsewhere): on a GPU or
# TPU every norm takes the two passes, and these tests check that instead.
ONE_PASS_PLATFORM = jax.default_backend() == "cpu"


@pytest.fixture
def one_pass_everywhere(monkeypatch):
    """Arrays of any size are candidates for the one pass (by default only those of 2^20 entries)."""
    monkeypatch.setattr(_norms, "ONE_PASS_MIN_SIZE", 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_power_of_two_against_numpy_frexp(dtype):
    # Oracle: NumPy's frexp (m = f 2^e, f in [0.5, 1)), e clipped to [minexp + 1, -(minexp + 1)];
    # 0, inf and NaN give (1, 1). Subnormal and negative m included.
    info = np.finfo(dtype)
    m = np.concatenate(
        [
            np.logspace(np.log10(info.smallest_subnormal), 0.999 * np.log10(info.max), 3000),
            [0.0, -0.0, np.inf, -np.inf, np.nan, info.max, info.tiny, info.smallest_subnormal, 0.5, 1.0],
        ]
    ).astype(dtype)
    m = np.concatenate([m, -m[:100]])
    _, e = np.frexp(m)
    lo = info.minexp + 1
    e = np.where(np.isfinite(m) & (m != 0), np.clip(e, lo, -lo), 0)
    with jax.enable_x64(dtype == np.float64):
        p, inv_p = jax.jit(power_of_two)(jax.device_put(m))
        np.testing.assert_array_equal(np.asarray(p), np.ldexp(np.ones((), dtype), e))
        np.testing.assert_array_equal(np.asarray(inv_p), np.ldexp(np.ones((), dtype), -e))


def _np_norms(x, axis):
    x = np.asarray(x, np.float64)
    m = np.max(np.abs(x), axis=axis, keepdims=True)
    m = np.where(m > 0, m, 1.0)
    return m * np.sqrt(np.sum((x / m) ** 2, axis=axis, keepdims=True))


def _columns(scales, n=64, seed=0, dtype=np.float32):
    """An (n, len(scales)) array, column j of entries of magnitude about scales[j]."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 1.0, (n, len(scales))) * np.asarray(scales)).astype(dtype)


# Columns in float32's middle range (one pass); one column whose squares overflow, one whose squares
# underflow, and one of the largest finite entries (the norm itself overflows) (two passes).
CASES = {
    "middle": (1.0, 3e-5, 2e6),
    "squares overflow": (1.0, 1e20),
    "squares underflow": (1.0, 1e-25),
    "norm overflows": (3e38, 1.0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_norm_parts_fast_against_float64(case, one_pass_everywhere):
    x = _columns(CASES[case])
    r, p = jax.jit(lambda x: norm_parts_fast(x, 0))(jax.device_put(x))
    expected = _np_norms(x, 0)
    got = np.asarray(p, np.float64) * np.asarray(r, np.float64)  # in float64: p r may exceed float32
    # N = 64 squares summed in float32: a relative (N / 2 + 1) 2^-24 at most.
    np.testing.assert_allclose(got, expected, rtol=33 * F32_UNIT_ROUNDOFF)
    # One pass (p = 1) only where every sum of squares is exact up to rounding.
    assert np.all(np.asarray(p) == 1) == (case == "middle" and ONE_PASS_PLATFORM)


def test_norm_parts_fast_zero_sums(one_pass_everywhere):
    # Entries of 1e-30: float32 squares all round to 0. Without zero_ok the norms take two passes
    # and are exact; with it they are taken as 0, and the bound passed to zero_ok bounds them.
    x = jax.device_put(_columns((1e-30, 1e-30), n=8))
    expected = _np_norms(np.asarray(x), 0)
    bounds = []
    (r, p), (r_ok, _) = jax.jit(  # both in one compilation; zero_ok gets a Python float when traced
        lambda x: (norm_parts_fast(x, 0), norm_parts_fast(x, 0, zero_ok=lambda b: bounds.append(b) or True))
    )(x)
    np.testing.assert_allclose(
        np.asarray(p, np.float64) * np.asarray(r, np.float64), expected, rtol=5 * F32_UNIT_ROUNDOFF
    )
    # Taken as 0 in the one pass; elsewhere the two passes give the norms themselves.
    np.testing.assert_array_equal(np.asarray(r_ok), 0.0 if ONE_PASS_PLATFORM else np.asarray(r))
    # |x_i| <= 2^-75 for every entry whose square rounds to 0 (x_i^2 <= 2^-150, half the smallest
    # subnormal), so the norm of 8 of them is at most sqrt(8) 2^-75.
    assert bounds and all(b == pytest.approx(np.sqrt(8 * 2.0**-149)) for b in bounds)
    assert np.all(expected < bounds[0]) and bounds[0] <= np.sqrt(8) * 2.0**-74.5


def test_norm_parts_fast_one_pass_for_exact_zeros_only_where_allowed(one_pass_everywhere):
    # A zero column and a middle one: the zero sum takes one pass only with zero_ok.
    x = jax.device_put(np.stack([np.zeros(5, np.float32), np.full(5, 3.0, np.float32)], axis=1))
    cases = ((None, False), (lambda b: False, False), (lambda b: True, True))
    parts = jax.jit(lambda x: [norm_parts_fast(x, 0, zero_ok=zero_ok) for zero_ok, _ in cases])(x)
    for (_, one_pass), (r, p) in zip(cases, parts, strict=True):
        np.testing.assert_allclose(np.asarray(p) * np.asarray(r), [[0.0, 3.0 * np.sqrt(5)]], rtol=1e-6)
        assert np.all(np.asarray(p) == 1) == (one_pass and ONE_PASS_PLATFORM)


def test_norm_parts_fast_axes_and_dtypes(one_pass_everywhere):
    # Several axes, one norm over all, a bfloat16 input (computed in float32), float64 under x64.
    w = random_normal(0, (3, 4, 5))
    axes = ((0, 2), None, 1)
    w16 = jax.device_put(w.astype(jnp.bfloat16))  # as jnp.asarray(w, bfloat16), no compile
    parts = jax.jit(lambda x: [norm_parts_fast(x, axis) for axis in axes])(w16)  # one compilation
    w32 = np.asarray(w16).astype(np.float32)
    for axis, (r, p) in zip(axes, parts, strict=True):
        assert r.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(p) * np.asarray(r), _np_norms(w32, axis), rtol=1e-6)
    with jax.enable_x64(True):
        x = jax.device_put(_columns((1.0, 1e200), dtype=np.float64))
        r, p = jax.jit(lambda x: norm_parts_fast(x, 0))(x)
        assert r.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(p) * np.asarray(r), _np_norms(np.asarray(x), 0), rtol=1e-14)


def test_norm_parts_fast_takes_one_pass_on_large_arrays_only():
    # By default one pass is for arrays of at least 2^20 entries; smaller ones stay in cache.
    small = jax.device_put(random_normal(3, (64, 4)))
    large = jax.device_put(random_normal(4, (1024, 1024)))
    for x, one_pass in ((small, False), (large, True)):
        r, p = jax.jit(lambda x: norm_parts_fast(x, 0))(x)
        np.testing.assert_allclose(
            np.asarray(p * r), _np_norms(np.asarray(x), 0), rtol=600 * F32_UNIT_ROUNDOFF
        )
        assert np.all(np.asarray(p) == 1) == (one_pass and ONE_PASS_PLATFORM)


def test_sequential_landing_keeps_every_leaf_as_computed_alone(one_pass_everywhere):
    # The constraints compute the leaves one after the other, each depending on the previous one's
    # norms through an exact no-op (w + (u - 0.0)): a leaf's update is bit for bit the one it gets
    # alone, and a NaN or inf in one leaf does not reach the next.
    w = random_normal(1, (6, 3), 2.0)
    u = random_normal(2, (6, 3))
    bad = np.full((6, 3), np.nan, np.float32)
    bad[0, 0] = np.inf
    for tx in (jaxreg.max_norm(1.0), jaxreg.prox_group_lasso(0.5, 1.0)):
        params = {"a": jax.device_put(bad), "b": jax.device_put(w), "c": jax.device_put(-w)}
        updates = {"a": jax.device_put(bad), "b": jax.device_put(u), "c": jax.device_put(-u)}

        @jax.jit
        def step(params, updates, tx=tx):
            new_updates, _ = tx.update(updates, tx.init(params), params)
            return new_updates

        together = step(params, updates)
        for key in ("b", "c"):  # the leaf alone in a tree (one compilation for both)
            alone = step({"alone": params[key]}, {"alone": updates[key]})["alone"]
            np.testing.assert_array_equal(np.asarray(together[key]), np.asarray(alone))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reciprocal_power_of_two_is_exact(dtype):
    # Oracle: NumPy's ldexp; every power of two whose reciprocal is normal, as norm_parts returns.
    lo = np.finfo(dtype).minexp + 1
    e = np.arange(lo, -lo + 1)
    with jax.enable_x64(dtype == np.float64):
        got = jax.jit(_norms.reciprocal_power_of_two)(jax.device_put(np.ldexp(np.ones((), dtype), e)))
        assert got.dtype == dtype
        np.testing.assert_array_equal(np.asarray(got), np.ldexp(np.ones((), dtype), -e))
