"""dropout, spatial_dropout, drop_path and dropconnect: formulas against NumPy/flax oracles, statistics.

Statistical bounds are stated where they are used (4 or 5 standard errors
of the statistic under the model; keys are fixed, so the tests are
reproducible). Oracles: ``jax.random.bernoulli`` draws combined with the
published formulas in NumPy (sampler="jax"), ``flax.linen.Dropout``, and
timm's formula re-derived in NumPy. The rules every op shares are in
test_prologue.py.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    BIG,
    KEY,
    KEY_IMPLS,
    NBIG,
    SAMPLERS,
    assert_same_bits,
    drop_input,
    every_key_kind,
    keep_prob,
)
from jax import lax

import jaxreg

_BIT_CASES = [
    (jnp.float32, ()),
    (jnp.bfloat16, ()),
    (jnp.float16, ()),
    (jnp.float32, (0,)),
    (jnp.float32, (1, 2)),
]


@functools.cache
def _bit_references():
    """For each case of the test below: the oracle, flax's Dropout and jaxreg with a traced rate.

    The oracle and flax's Dropout take the Python rate 0.3; jaxreg's rate ``r`` (0.3) is traced.
    One jitted program computes every case (XLA keeps each rounding: jit and eager agree bit for
    bit here), in NumPy.
    """
    rate = 0.3

    def references(k, x, r, broadcast_dims):
        mask_shape = [1 if d in broadcast_dims else n for n, d in zip(x.shape, range(x.ndim), strict=True)]
        mask = jnp.broadcast_to(jax.random.bernoulli(k, 1 - rate, mask_shape), x.shape)
        oracle = lax.select(mask, x / (1 - rate), jnp.zeros_like(x))
        flax_y = nn.Dropout(rate, broadcast_dims=broadcast_dims, deterministic=False).apply({}, x, rng=k)
        return oracle, flax_y, jaxreg.dropout(k, x, r, broadcast_dims=broadcast_dims, sampler="jax")

    def run(k, xs, r):
        return [references(k, x, r, dims) for x, (_, dims) in zip(xs, _BIT_CASES, strict=True)]

    xs = [drop_input(dtype=dtype) for dtype, _ in _BIT_CASES]
    return jax.tree.map(np.asarray, jax.jit(run)(KEY, xs, rate))


@pytest.mark.parametrize("dtype, broadcast_dims", _BIT_CASES)
def test_jax_sampler_bit_identical_to_bernoulli_and_flax(dtype, broadcast_dims):
    x, rate = drop_input(dtype=dtype), 0.3
    y = jaxreg.dropout(KEY, x, rate, broadcast_dims=broadcast_dims, sampler="jax")  # eagerly
    oracle, flax_y, yj = _bit_references()[_BIT_CASES.index((dtype, broadcast_dims))]
    assert_same_bits(y, oracle)
    assert_same_bits(y, flax_y)
    # Also under jit with a traced rate.
    assert_same_bits(yj, flax_y)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_dropout_kept_fraction_and_inverted_mean(sampler):
    rates = [0.1, 0.5, 0.9]
    # The three Python rates in one program.
    ys = jax.jit(lambda k: [jaxreg.dropout(k, jnp.ones(BIG), rate, sampler=sampler) for rate in rates])(KEY)
    for rate, y in zip(rates, ys, strict=True):
        y = np.asarray(y)
        q = keep_prob(rate, sampler)
        kept = int((y != 0).sum())
        # Binomial(N, q) count: within 4 standard deviations.
        assert abs(kept - NBIG * q) < 4 * math.sqrt(NBIG * q * (1 - q)), rate
        # Kept values are exactly 1/q (the quantized probability for "fast").
        np.testing.assert_allclose(
            np.unique(y[y != 0]), [np.float32(1) / np.float32(q)], rtol=1e-7, err_msg=f"rate={rate}"
        )
        # Inverted mean: each y_i has mean 1 and variance (1-q)/q; mean within 4 se.
        assert abs(y.mean() - 1) < 4 * math.sqrt((1 - q) / q / NBIG), rate


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_classic_mode_matches_inverted_in_expectation(sampler):
    rate = 0.4
    x = jnp.full(BIG, 3.0)
    train = np.asarray(jaxreg.dropout(KEY, x, rate, mode="classic", sampler=sampler))
    assert set(np.unique(train).tolist()) == {0.0, 3.0}  # no scaling in training
    test = jaxreg.dropout(None, x, rate, mode="classic", deterministic=True)
    np.testing.assert_allclose(np.asarray(test), 3.0 * (1 - rate), rtol=1e-6)
    inv_test = jaxreg.dropout(None, x, rate, deterministic=True)
    np.testing.assert_array_equal(np.asarray(inv_test), np.asarray(x))
    # E[train] = 3 q = test activation: within 4 se (se = 3 sqrt(q (1-q) / N)).
    q = keep_prob(rate, sampler)
    assert abs(train.mean() - 3 * (1 - rate)) < 4 * 3 * math.sqrt(q * (1 - q) / NBIG) + 3 * 2**-25
    # Same mask in both modes for one key.
    inv = np.asarray(jaxreg.dropout(KEY, x, rate, sampler=sampler))
    np.testing.assert_array_equal(inv != 0, train != 0)


def test_broadcast_dims_share_the_mask():
    y = np.asarray(jaxreg.dropout(KEY, jnp.ones((6, 50, 4)), 0.5, broadcast_dims=(1,)))
    assert np.all(y == y[:, :1, :])
    assert 0 < (y == 0).mean() < 1
    with pytest.raises(ValueError, match="broadcast_dims"):
        jaxreg.dropout(KEY, jnp.ones((2, 3)), 0.5, broadcast_dims=(2,))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_key_same_mask_different_keys_different(sampler):
    x = jnp.ones((64, 64))
    a = jaxreg.dropout(KEY, x, 0.5, sampler=sampler)
    b = jaxreg.dropout(KEY, x, 0.5, sampler=sampler)
    c = jaxreg.dropout(jax.random.fold_in(KEY, 1), x, 0.5, sampler=sampler)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Independent masks agree on ~half the 4096 elements; sd 32, bound 5 sd.
    agree = int((np.asarray(a) == np.asarray(c)).sum())
    assert abs(agree - 2048) < 5 * 32


def test_invalid_mode_and_sampler():
    with pytest.raises(ValueError, match="mode"):
        jaxreg.dropout(KEY, jnp.ones(3), 0.5, mode="scaled")
    with pytest.raises(ValueError, match="sampler"):
        jaxreg.dropout(KEY, jnp.ones(3), 0.5, sampler="philox")


# ---------------------------------------------------------------- variants


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("channel_axis", [-1, 1])
def test_spatial_dropout_zeroes_whole_channels(sampler, channel_axis):
    shape = (256, 16, 5, 6) if channel_axis == 1 else (256, 5, 6, 16)
    y = np.asarray(
        jaxreg.spatial_dropout(KEY, jnp.ones(shape), 0.3, channel_axis=channel_axis, sampler=sampler)
    )
    spatial = (2, 3) if channel_axis == 1 else (1, 2)
    zero_maps = (y == 0).all(axis=spatial)
    full_maps = (y != 0).all(axis=spatial)
    assert np.all(zero_maps | full_maps)  # each (example, channel) map is all or nothing
    q = keep_prob(0.3, sampler)
    n = zero_maps.size  # 4096 maps, Binomial: within 4 sd
    assert abs(full_maps.sum() - n * q) < 4 * math.sqrt(n * q * (1 - q))
    np.testing.assert_allclose(np.unique(y[y != 0]), [1 / q], rtol=1e-6)
    # Maps differ across examples (the mask is per example, not shared over the batch).
    assert not np.all(zero_maps == zero_maps[:1])


def test_spatial_dropout_unbatched_and_axis_errors():
    y = np.asarray(jaxreg.spatial_dropout(KEY, jnp.ones((9, 9, 64)), 0.5, batch_axis=None))
    assert np.all(((y == 0).all(axis=(0, 1))) | ((y != 0).all(axis=(0, 1))))
    with pytest.raises(ValueError, match="differ"):
        jaxreg.spatial_dropout(KEY, jnp.ones((2, 3)), 0.5, channel_axis=0)
    with pytest.raises(ValueError, match="channel_axis"):
        jaxreg.spatial_dropout(KEY, jnp.ones((2, 3)), 0.5, channel_axis=2)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_drop_path_whole_examples_and_timm_formula(sampler):
    rate, x = 0.25, drop_input((4096, 3, 5))
    y = np.asarray(jaxreg.drop_path(KEY, x, rate, sampler=sampler))
    dropped = (y == 0).all(axis=(1, 2))
    assert np.all(dropped | (y != 0).all(axis=(1, 2)))
    q = keep_prob(rate, sampler)
    assert abs((~dropped).sum() - 4096 * q) < 4 * math.sqrt(4096 * q * (1 - q))
    # timm: x * (bernoulli(keep, (B, 1, 1)) / keep); kept examples are x / q.
    np.testing.assert_allclose(y[~dropped], np.asarray(x)[~dropped] / q, rtol=1e-6)
    if sampler == "jax":
        m = np.asarray(jax.random.bernoulli(KEY, 1 - rate, (4096, 1, 1)))
        np.testing.assert_allclose(y, np.asarray(x) * (m / (1 - rate)), rtol=1e-6)
    # scale_by_keep=False keeps values unchanged; batch_axis selects the example axis.
    y2 = np.asarray(jaxreg.drop_path(KEY, x, rate, scale_by_keep=False, sampler=sampler))
    assert set(np.unique(y2 / np.asarray(x)).tolist()) <= {0.0, 1.0}
    y3 = np.asarray(jaxreg.drop_path(KEY, jnp.ones((3, 512)), 0.5, batch_axis=1))
    assert np.all((y3 == 0).all(axis=0) | (y3 != 0).all(axis=0))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_dropconnect(sampler):
    params = {"w1": jnp.ones((512, 512)), "w2": jnp.ones((512, 512)), "b": jnp.ones(512), "n": jnp.arange(4)}
    out = jaxreg.dropconnect(
        KEY, params, 0.5, mask={"w1": True, "w2": True, "b": False, "n": True}, sampler=sampler
    )
    w1, w2 = np.asarray(out["w1"]), np.asarray(out["w2"])
    q = keep_prob(0.5, sampler)
    np.testing.assert_allclose(np.unique(w1), [0.0, 1 / q], rtol=1e-6)
    # Inverted scaling: mean 1 within 4 se (se = sqrt((1-q)/q/n)).
    assert abs(w1.mean() - 1) < 4 * math.sqrt((1 - q) / q / w1.size)
    # Per-leaf keys: the two masks are independent (agreement ~ n/2, sd sqrt(n)/2).
    agree = int(((w1 == 0) == (w2 == 0)).sum())
    assert abs(agree - w1.size / 2) < 5 * math.sqrt(w1.size) / 2
    np.testing.assert_array_equal(np.asarray(out["b"]), 1.0)  # not selected
    np.testing.assert_array_equal(np.asarray(out["n"]), np.arange(4))  # int leaf passes through
    if sampler == "jax":  # leaf i uses fold_in(key, i), i its index in jax.tree.leaves
        i = [k for k in sorted(params)].index("w1")
        m = jax.random.bernoulli(jax.random.fold_in(KEY, i), 0.5, (512, 512))
        np.testing.assert_array_equal(w1 != 0, np.asarray(m))
    assert jaxreg.dropconnect(None, params, 0.0) is params
    # A callable mask (optax.masked semantics).
    out2 = jaxreg.dropconnect(KEY, params, 1.0, mask=lambda p: {k: k != "w2" for k in p})
    np.testing.assert_array_equal(np.asarray(out2["w1"]), 0.0)
    np.testing.assert_array_equal(np.asarray(out2["w2"]), 1.0)


def test_dropconnect_gradients_flow_to_kept_weights():
    w = jnp.ones((32, 32))
    g, y = jax.jit(
        lambda w: (
            jax.grad(lambda w: jaxreg.dropconnect(KEY, {"w": w}, 0.5)["w"].sum())(w),
            jaxreg.dropconnect(KEY, {"w": w}, 0.5)["w"],
        )
    )(w)
    np.testing.assert_allclose(np.asarray(g), np.asarray(y), rtol=1e-6)  # d/dw (m w / q) = m / q


@pytest.mark.parametrize("key", every_key_kind(3))
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_key_kind(key, sampler):
    y = jaxreg.dropout(key, jnp.ones((128, 128)), 0.5, sampler=sampler)
    frac = float((y == 0).mean())
    assert abs(frac - 0.5) < 5 * 0.5 / 128  # Binomial(16384, 1/2): 5 sd


def test_fast_bfloat16_scale_is_one_over_q_not_one_over_rounded_q():
    # rate 0.3: q = round(0.7 * 2**24) / 2**24 ~ 0.7, but bfloat16(0.7) = 0.69921875
    # (relative error 1.1e-3). Kept values must be x / q rounded once to
    # bfloat16, so the mean of y / (x / q) over kept elements is 1 up to
    # rounding: each ratio is 1 + d with |d| <= 2**-8 (bfloat16's unit
    # roundoff); the mean of d over n ~ 7e5 kept elements has a bias below
    # u**2 = 1.5e-5 and a standard error below 2**-8 / sqrt(3 n) < 3e-6, so
    # |mean - 1| < 1e-4 (a 1 / bfloat16(q) scale would give 1.1e-3).
    rate = 0.3
    q = keep_prob(rate, "fast")
    x = drop_input((1024, 1024), jnp.bfloat16)
    y = np.asarray(jaxreg.dropout(KEY, x, rate), np.float64)
    xf = np.asarray(x, np.float64)
    kept = y != 0
    ratio = y[kept] / (xf[kept] / q)
    assert abs(ratio.mean() - 1) < 1e-4
    # Elementwise: exactly the float32 quotient rounded to bfloat16.
    want = (jnp.asarray(x, jnp.float32) / jnp.float32(q)).astype(jnp.bfloat16)
    np.testing.assert_array_equal(y[kept], np.asarray(want, np.float64)[kept])


@functools.cache
def _checkpoint_gradients():
    """``{(impl, sampler): (gradient without remat, with remat)}`` for the test below, one program.

    The keys (one per implementation) are arguments of the jitted function; each gradient pair
    is computed as the test describes.
    """
    x = drop_input()

    def gradients(w, k, sampler):
        def layer(w, x, k):
            return jnp.tanh(jaxreg.dropout(k, x * w, 0.3, sampler=sampler))

        def loss(w, k, remat):
            f = jax.checkpoint(layer) if remat else layer
            return jnp.sum(f(w, x, k) ** 2)

        # The remat one keeps its checkpoint (jit does not remove it).
        return jax.grad(loss)(w, k, False), jax.grad(loss)(w, k, True)

    def run(w, keys):
        return {(impl, s): gradients(w, keys[impl], s) for impl in KEY_IMPLS for s in SAMPLERS}

    keys = {impl: jax.random.key(11, impl=impl) for impl in KEY_IMPLS}
    return jax.tree.map(np.asarray, jax.jit(run)(_checkpoint_w(), keys))


def _checkpoint_w():
    return jnp.linspace(0.5, 1.5, drop_input().shape[-1])


@pytest.mark.parametrize("impl", KEY_IMPLS)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_checkpoint_recomputes_the_same_mask_for_key_arguments(impl, sampler):
    # As test_checkpoint_recomputes_the_same_mask (test_prologue.py), with the key an
    # argument of the jitted function (not a closed-over constant) and each key
    # implementation: rbg/unsafe_rbg keys under remat are where recomputed random
    # bits have diverged before (jax#21046).
    key = jax.random.key(11, impl=impl)
    x, w = drop_input(), _checkpoint_w()
    # Both gradients in one program (shared by the cases).
    g_plain, g_remat = _checkpoint_gradients()[impl, sampler]
    np.testing.assert_allclose(g_remat, g_plain, rtol=1e-5, atol=1e-6)
    # And the gradient is the one of the mask drawn outside any transformation.
    y = jaxreg.dropout(key, x * w, 0.3, sampler=sampler)
    d = np.asarray(y / (x * w))  # the multiplier m / q
    t = np.tanh(np.asarray(y))
    want = (2 * t * (1 - t**2) * d * np.asarray(x)).sum(axis=(0, 1, 2))
    np.testing.assert_allclose(np.asarray(g_plain), want, rtol=1e-4, atol=1e-5)
