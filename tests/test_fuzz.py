"""Fuzzing the public API with hypothesis: a clear error naming the argument, or the formula's value.

For generated pytrees (nested dicts, lists, tuples and NamedTuples; empty trees; 0-d and
zero-size arrays; Python and NumPy float scalars; int, bool and None leaves; float16, bfloat16,
float32 leaves) and generated hyperparameters (0, negative, NaN, inf, huge, tiny, Python ints,
NumPy scalars, strings, None), every call either raises ``ValueError`` / ``TypeError`` whose
message names the argument, or returns a result equal to an independent NumPy evaluation of the
documented formula, with the shapes and dtypes of the input.

Profiles: ``ci`` (the default, a few dozen examples per property, for the suite's time budget)
and ``nightly`` (``HYPOTHESIS_PROFILE=nightly python -m pytest tests/test_fuzz.py``, thousands).
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxreg

settings.register_profile(
    "ci", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile(
    "nightly", max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SHAPES = [(), (0,), (3,), (2, 3), (0, 2), (2, 1, 2)]  # a fixed set: compilations are reused
DTYPES = [np.float16, np.float32, jnp.bfloat16]


class Pair(NamedTuple):
    a: object
    b: object


finite = st.floats(-1e3, 1e3, allow_nan=False, width=16)
edge = st.sampled_from([0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30, 3e38, 6e4, 1e-7])


@st.composite
def float_arrays(draw):
    shape = draw(st.sampled_from(SHAPES))
    dtype = draw(st.sampled_from(DTYPES))
    n = int(np.prod(shape))
    values = draw(
        st.lists(st.one_of(finite, edge) if dtype == np.float32 else finite, min_size=n, max_size=n)
    )
    # Cast in NumPy and put on the device as it is: the same bits as jnp.asarray(values, dtype)
    # (one rounding to nearest-even either way; the drawn values are float16 numbers or the edge
    # values), without compiling a conversion on the device for each new shape and dtype.
    return jax.device_put(np.array(values, np.float64).reshape(shape).astype(dtype))


leaves = st.one_of(
    float_arrays(),
    finite.map(float),  # Python float: a float leaf
    finite.map(np.float32),  # NumPy float scalar: a float leaf
    st.integers(-3, 3),  # Python int: passes through
    st.just(None),
    st.just(jnp.arange(3)),  # int array: passes through
    st.just(np.bool_(True)),
)
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.dictionaries(st.sampled_from(["w", "b", "kernel", "scale"]), children, max_size=3),
        st.lists(children, max_size=3),
        st.tuples(children, children).map(lambda t: Pair(*t)),
    ),
    max_leaves=6,
).filter(lambda t: t is not None)  # update(g, s, None) means 'no params' (an error, as optax)
hyper = st.one_of(
    st.sampled_from([0.0, 0.5, 2.0, 0, 3, -1.0, -1, math.nan, math.inf, 1e-300, 1e300, 2**40]),
    st.sampled_from([np.float32(0.25), np.float64(1.5), np.int32(2), jnp.float32(0.5)]),
    st.sampled_from(["0.1", "", None]),
)


def _float_leaves(tree):
    """(numpy float64 value, original) for each float leaf: arrays with a float dtype, Python/NumPy floats."""
    out = []
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, (bool, np.bool_, int, np.integer)):
            continue
        if isinstance(leaf, float) or (hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)):
            out.append(np.asarray(leaf, np.float64))
    return out


def _valid_strength(s) -> bool:
    if isinstance(s, (str, type(None), bool)):
        return False
    v = float(s)
    return math.isfinite(v) and v >= 0


def _check_error_names(err: Exception, *names: str) -> None:
    assert any(n in str(err) for n in names), f"the message does not name {names}: {err}"


@given(tree=trees)
def test_penalties_sum_the_float_leaves(tree):
    values = _float_leaves(tree)
    with np.errstate(over="ignore"):
        want_l1 = sum(float(np.sum(np.abs(v))) for v in values)
        want_l2 = sum(0.5 * float(np.sum(np.square(v))) for v in values)
    got_l1, got_l2 = float(jaxreg.l1_penalty(tree)), float(jaxreg.l2_penalty(tree))
    for got, want in ((got_l1, want_l1), (got_l2, want_l2)):
        if math.isfinite(want) and want < 1e37:
            assert got == pytest.approx(want, rel=1e-5, abs=1e-30)
        else:
            assert not math.isnan(got)


@given(tree=trees, strength=hyper)
def test_add_decayed_weights_and_add_l1(tree, strength):
    grads = tree  # g = w: the oracle is g + s * w (or s * sign(w)) with g = w
    for name, build, oracle in (
        ("weight_decay", jaxreg.add_decayed_weights, lambda g, w, s: g + s * w),
        ("strength", jaxreg.add_l1, lambda g, w, s: g + s * np.sign(w)),
    ):
        try:
            tx = build(strength)
            out, _ = tx.update(grads, tx.init(tree), tree)
        except (ValueError, TypeError) as e:
            assert not _valid_strength(strength), e
            _check_error_names(e, name)
            continue
        assert _valid_strength(strength)
        assert jax.tree.structure(out) == jax.tree.structure(grads)
        s = float(strength)
        for got, w in zip(jax.tree.leaves(out), jax.tree.leaves(tree), strict=True):
            wf = np.asarray(w, np.float64) if not isinstance(w, (bool, np.bool_, int, np.integer)) else None
            if wf is None or not (isinstance(w, float) or jnp.issubdtype(np.asarray(w).dtype, jnp.floating)):
                assert got is w or np.array_equal(np.asarray(got), np.asarray(w))
                continue
            got = np.asarray(got)
            assert got.shape == np.shape(w)
            with np.errstate(over="ignore", invalid="ignore"):
                want = oracle(wf, wf, s)
            dtype_max = float(jnp.finfo(jnp.asarray(w).dtype).max)
            ok = np.isfinite(want) & (np.abs(want) < 0.5 * dtype_max)
            np.testing.assert_allclose(got.astype(np.float64)[ok], want[ok], rtol=2e-2, atol=1e-6)
            assert not np.isnan(got).any()


@given(x=float_arrays(), threshold=hyper)
def test_soft_threshold(x, threshold):
    try:
        y = jaxreg.soft_threshold(x, threshold)
    except (ValueError, TypeError) as e:
        _check_error_names(e, "threshold")
        assert not (_valid_strength(threshold) or threshold == math.inf)
        return
    assert _valid_strength(threshold) or threshold == math.inf  # t = inf: the prox is 0
    assert y.shape == x.shape and y.dtype == x.dtype
    xf, t = np.asarray(x, np.float64), float(threshold)
    with np.errstate(invalid="ignore"):
        want = np.sign(xf) * np.maximum(np.abs(xf) - np.float64(np.asarray(t, np.asarray(x).dtype)), 0)
    want = np.where(np.isnan(want), 0.0, want)  # |x| - inf = -inf, max(., 0) = 0
    np.testing.assert_allclose(np.asarray(y, np.float64), want, rtol=1e-2, atol=1e-3)


@given(
    x=float_arrays(),
    rate=hyper,
    op=st.sampled_from(["dropout", "gaussian_dropout", "alpha_dropout", "drop_path"]),
)
def test_dropout_family(x, rate, op):
    fn = getattr(jaxreg, op)
    key = jax.random.key(0)
    kwargs = {"batch_axis": 0} if op == "drop_path" and x.ndim else {}
    try:
        y = fn(key, x, rate, **kwargs)
    except (ValueError, TypeError) as e:
        _check_error_names(e, "rate", "batch_axis", "x")
        return
    v = float(rate)
    assert 0 <= v <= 1
    assert y.shape == x.shape and y.dtype == x.dtype
    if v == 0:
        assert y is x or np.array_equal(np.asarray(y), np.asarray(x))
    if v == 1:
        assert not np.asarray(y, np.float64).any()
    if op in ("dropout", "drop_path"):  # kept entries are x / q exactly up to rounding, the others 0
        xf, yf = np.asarray(x, np.float64), np.asarray(y, np.float64)
        dtype_max = float(jnp.finfo(x.dtype).max)
        kept = (yf != 0) & (np.abs(xf) / (1 - v) < 0.5 * dtype_max)  # x / q must fit the dtype
        if 0 < v < 1 and kept.any():
            ratio = yf[kept] / xf[kept]
            np.testing.assert_allclose(ratio, 1 / (1 - v), rtol=2e-2)


@given(tree=trees, max_value=hyper)
def test_max_norm_and_non_negative_land_in_the_set(tree, max_value):
    zeros = jax.tree.map(
        lambda x: jnp.zeros_like(x) if hasattr(x, "dtype") or isinstance(x, float) else x, tree
    )
    try:
        tx = optax.chain(jaxreg.max_norm(max_value, axis=None), jaxreg.non_negative())
        out, _ = tx.update(zeros, tx.init(tree), tree)
    except (ValueError, TypeError) as e:
        _check_error_names(e, "max_value")
        return
    assert _valid_strength(max_value)
    new = optax.apply_updates(tree, out)
    for got, w in zip(jax.tree.leaves(new), jax.tree.leaves(tree), strict=True):
        if isinstance(w, (bool, np.bool_, int, np.integer)) or not (
            isinstance(w, float) or jnp.issubdtype(np.asarray(w).dtype, jnp.floating)
        ):
            continue
        g = np.asarray(got, np.float64)
        assert g.shape == np.shape(w)
        assert not np.isnan(g).any()
        # zero updates land on non_negative(max_norm(w)): up to the landing rounding (ulp of w)
        tol = 4 * float(jnp.finfo(jnp.asarray(w).dtype).eps) * (np.abs(np.asarray(w, np.float64)) + 1)
        assert (g >= -tol).all()


def _count_compiles(fn) -> int:
    events: list[str] = []

    def listener(name, secs, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        fn()
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    return len(events)


@pytest.mark.parametrize(
    "op", ["dropout", "spatial_dropout", "drop_path", "gaussian_dropout", "gaussian_noise", "alpha_dropout"]
)
def test_new_python_rates_compile_no_new_program(op):
    fn = getattr(jaxreg, op)
    x, key = jnp.ones((4, 6, 5), jnp.float32), jax.random.key(0)
    fn(key, x, 0.1).block_until_ready()  # warm up: compiles the op's kernels once

    def many():
        for rate in (0.15, 0.2, 0.3, 0.45, 0.55, 0.7, 0.9):
            fn(key, x, rate).block_until_ready()

    assert _count_compiles(many) == 0


def test_new_python_strengths_compile_no_new_program():
    params = {"w": jnp.ones((8, 4)), "b": jnp.ones(4)}
    tx = jaxreg.add_decayed_weights(0.1)
    tx.update(params, tx.init(params), params)  # warm up

    def many():
        for s in (0.2, 0.3, 1e-4, 5.0):
            for build in (jaxreg.add_decayed_weights, jaxreg.add_l1):
                t = build(s)
                jax.block_until_ready(t.update(params, t.init(params), params))

    warm = jaxreg.add_l1(0.05)
    warm.update(params, warm.init(params), params)
    assert _count_compiles(many) == 0
