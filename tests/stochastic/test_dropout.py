"""The dropout family: formulas against NumPy/flax oracles, statistics, rules and transformations.

Statistical bounds are stated where they are used (4 or 5 standard errors
of the statistic under the model; keys are fixed, so the tests are
reproducible). Oracles: ``jax.random.bernoulli``/``normal`` draws combined
with the published formulas in NumPy (sampler="jax"), ``flax.linen.Dropout``,
and timm's/PyTorch's formulas re-derived in NumPy.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxreg
from jaxreg._stochastic import _noise as _noise_dropout

SAMPLERS = ["fast", "jax"]
KEY = jax.random.key(1234)
BIG = (1024, 1024)  # 2**20 >= 1e6 elements
NBIG = BIG[0] * BIG[1]
SHAPE = (4, 8, 8, 3)  # NHWC, valid for every op


def _x(shape=SHAPE, dtype=jnp.float32, seed=7):
    # Standard normal, no zeros (so y / x recovers the multiplier); NumPy, so no jax dispatch.
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return jnp.asarray(x + np.where(x >= 0, 0.1, -0.1).astype(np.float32), dtype)


def _q(rate, sampler):
    """The keep probability a sampler uses (quantized for "fast", see _sampling)."""
    return round((1 - rate) * 2**24) / 2**24 if sampler == "fast" else 1 - rate


def _dropconnect_op(key, x, rate, **kw):
    """dropconnect on a one-leaf params tree (it has no ``deterministic``: evaluation uses W)."""
    return jaxreg.dropconnect(key, {"w": x}, rate, **kw)["w"]


# (name, op(key, x, rate, **kw)); every op takes rate third and keyword options.
# gaussian_noise takes its stddev in the rate's place (no rate-1 or rate <= 1 rules).
OPS = [
    ("dropout", jaxreg.dropout),
    ("spatial_dropout", jaxreg.spatial_dropout),
    ("gaussian_dropout", jaxreg.gaussian_dropout),
    ("alpha_dropout", jaxreg.alpha_dropout),
    ("drop_path", jaxreg.drop_path),
    ("dropblock", lambda k, x, r, **kw: jaxreg.dropblock(k, x, r, 3, **kw)),
    ("dropconnect", _dropconnect_op),
    ("gaussian_noise", jaxreg.gaussian_noise),
]
OP_IDS = [o[0] for o in OPS]
OP_FNS = [o[1] for o in OPS]
# Ops whose third argument is a drop rate in [0, 1].
RATE_OPS = [o for o in OPS if o[0] != "gaussian_noise"]
RATE_IDS = [o[0] for o in RATE_OPS]
RATE_FNS = [o[1] for o in RATE_OPS]
# Transformation tests run every op with the default (fast) sampler, and plain
# dropout with sampler="jax" too (the other ops share its code path).
CASES = [pytest.param(fn, "fast", id=f"{name}-fast") for name, fn in OPS] + [
    pytest.param(jaxreg.dropout, "jax", id="dropout-jax")
]
# Ops whose output is D(key) * x with D independent of x (gradient = y / x).
LINEAR = {"dropout", "spatial_dropout", "gaussian_dropout", "drop_path", "dropblock", "dropconnect"}


# ---------------------------------------------------------------- dropout


@pytest.mark.parametrize(
    "dtype, broadcast_dims",
    [(jnp.float32, ()), (jnp.bfloat16, ()), (jnp.float16, ()), (jnp.float32, (0,)), (jnp.float32, (1, 2))],
)
def test_jax_sampler_bit_identical_to_bernoulli_and_flax(dtype, broadcast_dims):
    x, rate = _x(dtype=dtype), 0.3
    y = jaxreg.dropout(KEY, x, rate, broadcast_dims=broadcast_dims, sampler="jax")
    mask_shape = [1 if d in broadcast_dims else n for n, d in zip(x.shape, range(x.ndim), strict=True)]
    mask = jnp.broadcast_to(jax.random.bernoulli(KEY, 1 - rate, mask_shape), x.shape)
    oracle = lax.select(mask, x / (1 - rate), jnp.zeros_like(x))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(oracle))
    flax_y = nn.Dropout(rate, broadcast_dims=broadcast_dims, deterministic=False).apply({}, x, rng=KEY)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(flax_y))
    # Also under jit with a traced rate.
    yj = jax.jit(lambda k, x, r: jaxreg.dropout(k, x, r, broadcast_dims=broadcast_dims, sampler="jax"))(
        KEY, x, 0.3
    )
    np.testing.assert_array_equal(np.asarray(yj), np.asarray(flax_y))


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_kept_fraction_and_inverted_mean(sampler, rate):
    y = np.asarray(jax.jit(lambda k: jaxreg.dropout(k, jnp.ones(BIG), rate, sampler=sampler))(KEY))
    q = _q(rate, sampler)
    kept = int((y != 0).sum())
    # Binomial(N, q) count: within 4 standard deviations.
    assert abs(kept - NBIG * q) < 4 * math.sqrt(NBIG * q * (1 - q))
    # Kept values are exactly 1/q (the quantized probability for "fast").
    np.testing.assert_allclose(np.unique(y[y != 0]), [np.float32(1) / np.float32(q)], rtol=1e-7)
    # Inverted mean: each y_i has mean 1 and variance (1-q)/q; mean within 4 se.
    assert abs(y.mean() - 1) < 4 * math.sqrt((1 - q) / q / NBIG)


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
    q = _q(rate, sampler)
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
    q = _q(0.3, sampler)
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
    rate, x = 0.25, _x((4096, 3, 5))
    y = np.asarray(jaxreg.drop_path(KEY, x, rate, sampler=sampler))
    dropped = (y == 0).all(axis=(1, 2))
    assert np.all(dropped | (y != 0).all(axis=(1, 2)))
    q = _q(rate, sampler)
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
@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_gaussian_dropout_moments(sampler, rate):
    y = np.asarray(jaxreg.gaussian_dropout(KEY, jnp.ones(BIG), rate, sampler=sampler), np.float64)
    sigma = math.sqrt(rate / (1 - rate))
    # mean 1 (se sigma / sqrt(N)); sample sd has se ~ sigma / sqrt(2N).
    assert abs(y.mean() - 1) < 5 * sigma / math.sqrt(NBIG)
    assert abs(y.std() - sigma) < 5 * sigma / math.sqrt(2 * NBIG)
    if sampler == "jax":  # Keras: x * normal(mean=1, stddev=sqrt(rate / (1 - rate)))
        x = _x()
        z = np.asarray(jax.random.normal(KEY, x.shape, jnp.float32))
        np.testing.assert_allclose(
            np.asarray(jaxreg.gaussian_dropout(KEY, x, rate, sampler="jax")),
            np.asarray(x) * (1 + sigma * z),
            rtol=1e-5,
            atol=1e-6,
        )


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_gaussian_noise_moments(sampler):
    y = np.asarray(jaxreg.gaussian_noise(KEY, jnp.full(BIG, 2.0), 0.7, sampler=sampler), np.float64)
    assert abs(y.mean() - 2) < 5 * 0.7 / math.sqrt(NBIG)
    assert abs(y.std() - 0.7) < 5 * 0.7 / math.sqrt(2 * NBIG)
    with pytest.raises(ValueError, match=r"stddev.*-1"):
        jaxreg.gaussian_noise(KEY, jnp.ones(3), -1.0)
    x = _x()
    np.testing.assert_array_equal(np.asarray(jaxreg.gaussian_noise(None, x, 0.0)), np.asarray(x))
    if sampler == "jax":
        z = np.asarray(jax.random.normal(KEY, x.shape, jnp.float32))
        np.testing.assert_allclose(
            np.asarray(jaxreg.gaussian_noise(KEY, x, 0.7, sampler="jax")), np.asarray(x) + 0.7 * z, rtol=1e-6
        )


def test_alpha_dropout_constants_match_pytorch_formula():
    # PyTorch (ATen _dropout_impl, alpha variant) with alpha = 1.7580993408473766:
    #   a = 1 / sqrt((alpha^2 p + 1) (1 - p)); y = x*m*a + (m - 1)*alpha*a + alpha*a*p.
    alpha = 1.7580993408473766
    assert _noise_dropout.ALPHA_PRIME == pytest.approx(-alpha, abs=1e-15)
    p = 0.3
    x = np.asarray(_x((64, 32)), np.float64)
    m = np.asarray(jax.random.bernoulli(KEY, 1 - p, x.shape), np.float64)
    a = 1 / math.sqrt((alpha**2 * p + 1) * (1 - p))
    oracle = x * m * a + (m - 1) * alpha * a + alpha * a * p
    y = jaxreg.alpha_dropout(KEY, jnp.asarray(x, jnp.float32), p, sampler="jax")
    np.testing.assert_allclose(np.asarray(y), oracle, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("rate", [0.05, 0.1, 0.2, 0.5])
def test_alpha_dropout_keeps_selu_moments(sampler, rate):
    x = jax.nn.selu(jax.random.normal(jax.random.key(5), BIG))
    y = np.asarray(jaxreg.alpha_dropout(KEY, x, rate, sampler=sampler), np.float64)
    # Klambauer et al.: with E[x] = 0, Var[x] = 1 the output keeps both. The
    # SELU of a standard normal has mean ~0 and variance ~1 only approximately
    # (its fixed point), hence the tolerance 0.05.
    assert abs(y.mean()) < 0.05
    assert abs(y.std() - 1) < 0.05


def test_dropblock_gamma_against_paper():
    # Paper eq. 1: gamma = (1 - keep_prob) / block_size^2 * feat^2 / (feat - block_size + 1)^2.
    for rate, b, feat in [(0.1, 7, 56), (0.2, 3, 32), (0.05, 5, 14)]:
        paper = rate / b**2 * feat**2 / (feat - b + 1) ** 2
        assert jaxreg.dropblock_gamma(rate, b, feat, feat) == pytest.approx(paper, rel=1e-12)
    # Blocks larger than the map are clipped to it; gamma stays in [0, 1].
    assert jaxreg.dropblock_gamma(0.5, 9, 4, 6) == pytest.approx(0.5 * 24 / (16 * 1 * 3))
    assert jaxreg.dropblock_gamma(1.0, 3, 3, 3) == 1.0


def _dropblock_oracle(seeds: np.ndarray, b: int) -> np.ndarray:
    """NumPy DropBlock: a seed at row s drops rows [s - b//2, s + (b-1)//2], clipped."""
    lo, hi = (b - 1) // 2, b // 2
    padded = np.pad(seeds, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(padded, (b, b), axis=(1, 2))
    return win.max(axis=(-2, -1)).astype(bool)


@pytest.mark.parametrize("b", [1, 3, 4, 7])
def test_dropblock_against_numpy_oracle(b):
    rate, x = 0.2, _x((2, 12, 10, 3))
    gamma = rate * 12 * 10 / (b * b * (12 - b + 1) * (10 - b + 1))
    seeds = ~np.asarray(jax.random.bernoulli(KEY, 1 - gamma, x.shape))
    dropped = _dropblock_oracle(seeds, b)
    scale = dropped.size / (~dropped).sum()
    oracle = np.where(dropped, 0.0, np.asarray(x) * np.float32(scale))
    y = jaxreg.dropblock(KEY, x, rate, b, sampler="jax")
    np.testing.assert_allclose(np.asarray(y), oracle, rtol=1e-6)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("rate", [0.1, 0.2, 0.3])
def test_dropblock_dropped_fraction(sampler, rate):
    n, hw, c, b = 16, 56, 16, 7
    y = np.asarray(jaxreg.dropblock(KEY, jnp.ones((n, hw, hw, c)), rate, b, sampler=sampler))
    frac = float((y == 0).mean())
    assert abs(frac - rate) < 0.03  # the criterion
    # Exact expectation: a pixel at (h, w) is covered by n_h * n_w seed
    # positions, so P(dropped) = 1 - (1 - gamma)^(n_h n_w). Spread: the dropped
    # count D is a function of N = n hw hw c independent Bernoulli(gamma) seeds,
    # and changing one seed changes D by at most b^2 (its square). Efron-Stein:
    # Var D <= (1/2) sum_i E[(D - D_i')^2] <= (1/2) N 2 gamma (1 - gamma) b^4,
    # so sd(frac) <= b^2 sqrt(gamma (1 - gamma) / N) (0.0028 at rate 0.1, 0.0048
    # at 0.3; measured 0.0023 and 0.0034). Bound: 5 of these, plus the fast
    # sampler's quantization of gamma (|dgamma| <= 2**-25, each pixel covered
    # by at most b^2 seeds).
    gamma = jaxreg.dropblock_gamma(rate, b, hw, hw)
    o = np.arange(hw)
    cover = np.minimum(o + b // 2, hw - 1) - np.maximum(o - (b - 1) // 2, 0) + 1
    expected = float((1 - (1 - gamma) ** np.outer(cover, cover)).mean())
    units = n * hw * hw * c
    sd_bound = b * b * math.sqrt(gamma * (1 - gamma) / units)
    assert abs(frac - expected) < 5 * sd_bound + b * b * 2.0**-25
    # The mean is preserved exactly by the count-based rescaling.
    assert abs(y.mean() - 1) < 1e-5
    # Dropped units form blocks: an isolated dropped pixel is impossible when b > 1.
    z = (y == 0)[0, :, :, 0]
    assert z.sum() == 0 or np.any(z[:-1] & z[1:])


def test_dropblock_input_errors():
    with pytest.raises(ValueError, match="block_size"):
        jaxreg.dropblock(KEY, jnp.ones(SHAPE), 0.1, 0)
    with pytest.raises(ValueError, match="NHWC"):
        jaxreg.dropblock(KEY, jnp.ones((4, 4)), 0.1, 3)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_dropconnect(sampler):
    params = {"w1": jnp.ones((512, 512)), "w2": jnp.ones((512, 512)), "b": jnp.ones(512), "n": jnp.arange(4)}
    out = jaxreg.dropconnect(
        KEY, params, 0.5, mask={"w1": True, "w2": True, "b": False, "n": True}, sampler=sampler
    )
    w1, w2 = np.asarray(out["w1"]), np.asarray(out["w2"])
    q = _q(0.5, sampler)
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
    g = jax.grad(lambda w: jaxreg.dropconnect(KEY, {"w": w}, 0.5)["w"].sum())(w)
    y = jaxreg.dropconnect(KEY, {"w": w}, 0.5)["w"]
    np.testing.assert_allclose(np.asarray(g), np.asarray(y), rtol=1e-6)  # d/dw (m w / q) = m / q


# ---------------------------------------------------------------- rules for every op


@pytest.mark.parametrize("op", RATE_FNS, ids=RATE_IDS)
@pytest.mark.parametrize("traced", [False, True])
def test_rate_one_gives_zeros_and_nan_free_gradients(op, traced):
    x = _x()

    def loss(x, r):
        return jnp.sum(jnp.sin(op(KEY, x, r)))

    if traced:
        y = jax.jit(lambda x, r: op(KEY, x, r))(x, 1.0)
        g = jax.jit(jax.grad(loss))(x, 1.0)
    else:
        y = op(KEY, x, 1.0)
        g = jax.grad(loss)(x, 1.0)
    np.testing.assert_array_equal(np.asarray(y), 0.0)
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_array_equal(np.asarray(g), 0.0)


@pytest.mark.parametrize("op", RATE_FNS, ids=RATE_IDS)
@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_invalid_python_rate_raises(op, rate):
    with pytest.raises(ValueError, match=rf"rate.*{rate}"):
        op(KEY, _x(), rate)


@pytest.mark.parametrize("stddev", [-0.1, float("nan"), float("inf")])
def test_invalid_python_stddev_raises(stddev):
    with pytest.raises(ValueError, match=rf"stddev.*{stddev}"):
        jaxreg.gaussian_noise(KEY, _x(), stddev)


@pytest.mark.parametrize("op, sampler", CASES)
def test_traced_rate_under_jit(op, sampler):
    # 0.25 is exact in float32, so the traced and the Python rate give the same
    # keep threshold and the same result.
    x = _x()
    y_traced = jax.jit(lambda k, x, r: op(k, x, r, sampler=sampler))(KEY, x, jnp.float32(0.25))
    y_python = op(KEY, x, 0.25, sampler=sampler)
    np.testing.assert_allclose(np.asarray(y_traced), np.asarray(y_python), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("op", OP_FNS, ids=OP_IDS)
def test_rate_zero_or_deterministic_is_identity_without_random_work(op):
    x = _x()
    cases = [({}, 0.0), ({"deterministic": True}, 0.3), ({"deterministic": True}, 1.0)]
    if op is _dropconnect_op:  # no evaluation mode: only rate 0 applies
        cases = cases[:1]
    for kwargs, rate in cases:
        np.testing.assert_array_equal(np.asarray(op(None, x, rate, **kwargs)), np.asarray(x))
        jaxpr = jax.make_jaxpr(lambda x, rate=rate, kwargs=kwargs: op(None, x, rate, **kwargs))(x)
        assert not jaxpr.eqns  # no random bits, no arithmetic


@pytest.mark.parametrize("op", OP_FNS, ids=OP_IDS)
def test_missing_key_in_training_raises(op):
    with pytest.raises(ValueError, match="key"):
        op(None, _x(), 0.3)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("op, sampler", CASES)
def test_dtype_preserved(op, dtype, sampler):
    with jax.enable_x64(dtype == "float64"):
        x = _x(dtype=jnp.dtype(dtype))
        y = jax.jit(lambda k, x: op(k, x, 0.3, sampler=sampler))(KEY, x)
        assert y.dtype == x.dtype and y.shape == x.shape
        assert np.all(np.isfinite(np.asarray(y, np.float64)))
    y = jaxreg.gaussian_noise(KEY, _x(dtype=jnp.bfloat16), 0.5, sampler=sampler)
    assert y.dtype == jnp.bfloat16


@pytest.mark.parametrize("op, sampler", CASES)
def test_jit_matches_eager_and_gradient(op, sampler):
    name = OP_IDS[OP_FNS.index(op)]
    x = _x()
    y = op(KEY, x, 0.3, sampler=sampler)
    yj = jax.jit(lambda k, x: op(k, x, 0.3, sampler=sampler))(KEY, x)
    np.testing.assert_allclose(np.asarray(yj), np.asarray(y), rtol=1e-5, atol=1e-6)
    g = jax.jit(jax.grad(lambda x: op(KEY, x, 0.3, sampler=sampler).sum()))(x)
    if name in LINEAR:  # y = D(key) x, so d sum(y) / dx = D = y / x
        np.testing.assert_allclose(np.asarray(g), np.asarray(y / x), rtol=1e-5, atol=1e-6)
    elif name == "gaussian_noise":  # y = x + stddev z: gradient 1, and y - x has sd 0.3
        np.testing.assert_array_equal(np.asarray(g), 1.0)
        assert not np.array_equal(np.asarray(y), np.asarray(x))
    else:  # alpha dropout: y = a * select(m, x, alpha') + b, gradient a * m
        q = _q(0.3, sampler)
        a = (q * (1 + (1 - q) * 1.7580993408473766**2)) ** -0.5
        np.testing.assert_allclose(np.unique(np.asarray(g)), [0.0, a], rtol=1e-6)
        sat = np.asarray(y)[np.asarray(g) == 0]
        assert np.allclose(sat, sat[0])  # dropped units all sit at a * alpha' + b


@pytest.mark.parametrize("op, sampler", CASES)
def test_vmap_per_example_keys(op, sampler):
    keys = jax.random.split(KEY, 3)
    xs = jnp.stack([_x()] * 3)
    ys = jax.vmap(lambda k, x: op(k, x, 0.5, sampler=sampler))(keys, xs)
    for i in range(3):
        np.testing.assert_allclose(
            np.asarray(ys[i]), np.asarray(op(keys[i], xs[i], 0.5, sampler=sampler)), rtol=1e-6, atol=1e-7
        )
    assert not np.array_equal(np.asarray(ys[0]), np.asarray(ys[1]))


@pytest.mark.parametrize("op", OP_FNS, ids=OP_IDS)
def test_scan_over_steps(op):
    x = _x()

    def step(carry, t):
        return carry, op(jax.random.fold_in(KEY, t), x, 0.3)

    _, ys = jax.jit(lambda: lax.scan(step, 0, jnp.arange(3)))()
    for t in range(3):
        np.testing.assert_allclose(
            np.asarray(ys[t]), np.asarray(op(jax.random.fold_in(KEY, t), x, 0.3)), rtol=1e-6, atol=1e-7
        )
    assert not np.array_equal(np.asarray(ys[0]), np.asarray(ys[1]))


@pytest.mark.parametrize("op, sampler", CASES)
def test_checkpoint_recomputes_the_same_mask(op, sampler):
    # With remat the backward pass recomputes the op; the gradient equals the
    # one without remat only if the recomputed mask is the same.
    x = _x()
    w = jnp.linspace(0.5, 1.5, x.shape[-1])

    def layer(w, x):
        return jnp.tanh(op(KEY, x * w, 0.3, sampler=sampler))

    def loss(w, remat):
        f = jax.checkpoint(layer) if remat else layer
        return jnp.sum(f(w, x) ** 2)

    g_plain = jax.jit(jax.grad(lambda w: loss(w, False)))(w)
    g_remat = jax.jit(jax.grad(lambda w: loss(w, True)))(w)
    np.testing.assert_allclose(np.asarray(g_remat), np.asarray(g_plain), rtol=1e-5, atol=1e-6)
    assert np.any(np.asarray(g_plain) != 0)


@pytest.mark.parametrize(
    "key",
    [
        jax.random.key(3),
        jax.random.key(3, impl="rbg"),
        jax.random.key(3, impl="unsafe_rbg"),
        jax.random.PRNGKey(3),
    ],
    ids=["threefry", "rbg", "unsafe_rbg", "legacy"],
)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_key_kind(key, sampler):
    y = jaxreg.dropout(key, jnp.ones((128, 128)), 0.5, sampler=sampler)
    frac = float((y == 0).mean())
    assert abs(frac - 0.5) < 5 * 0.5 / 128  # Binomial(16384, 1/2): 5 sd


# ---------------------------------------------------------------- review fixes

# Ops that draw a keep mask with the sampler's quantized q (dropblock draws
# seeds, whose q is 1 - gamma; its rate-1 handling is tested above).
MASK_OPS = [o for o in OPS if o[0] in {"dropout", "spatial_dropout", "drop_path", "alpha_dropout"}]


@pytest.mark.parametrize("op", [o[1] for o in MASK_OPS], ids=[o[0] for o in MASK_OPS])
def test_rate_quantized_to_nothing_kept_gives_zeros(op):
    # rate = 1 - 2**-26: the fast sampler's threshold round(2**-26 * 2**24) = 0,
    # so q = 0 and nothing is kept. Every op must then return zeros (the rate-1
    # rule), with zero, NaN-free gradients.
    rate, x = 1.0 - 2.0**-26, _x()
    assert round((1 - rate) * 2**24) == 0
    y = op(KEY, x, rate)
    np.testing.assert_array_equal(np.asarray(y), 0.0)
    g = jax.grad(lambda x: jnp.sum(jnp.sin(op(KEY, x, rate))))(x)
    np.testing.assert_array_equal(np.asarray(g), 0.0)


@pytest.mark.parametrize("op", OP_FNS, ids=OP_IDS)
def test_concrete_jax_scalar_rate_zero_needs_no_key(op):
    # A concrete (non-traced) JAX scalar is as known as a Python number: rate 0 is the identity.
    x = _x()
    np.testing.assert_array_equal(np.asarray(op(None, x, jnp.float32(0.0))), np.asarray(x))


def test_missing_key_message_is_the_same_everywhere():
    with pytest.raises(ValueError, match="dropout needs a PRNG key in training mode") as e1:
        jaxreg.dropout(None, jnp.ones(3), 0.5)
    from jaxreg._stochastic import _sampling

    with pytest.raises(ValueError, match="needs a PRNG key in training mode") as e2:
        _sampling.bits(None, (3,))
    assert str(e1.value).split(" needs")[1] == str(e2.value).split(" needs")[1]


def test_fast_bfloat16_scale_is_one_over_q_not_one_over_rounded_q():
    # rate 0.3: q = round(0.7 * 2**24) / 2**24 ~ 0.7, but bfloat16(0.7) = 0.69921875
    # (relative error 1.1e-3). Kept values must be x / q rounded once to
    # bfloat16, so the mean of y / (x / q) over kept elements is 1 up to
    # rounding: each ratio is 1 + d with |d| <= 2**-8 (bfloat16's unit
    # roundoff); the mean of d over n ~ 7e5 kept elements has a bias below
    # u**2 = 1.5e-5 and a standard error below 2**-8 / sqrt(3 n) < 3e-6, so
    # |mean - 1| < 1e-4 (a 1 / bfloat16(q) scale would give 1.1e-3).
    rate = 0.3
    q = _q(rate, "fast")
    x = _x((1024, 1024), jnp.bfloat16)
    y = np.asarray(jaxreg.dropout(KEY, x, rate), np.float64)
    xf = np.asarray(x, np.float64)
    kept = y != 0
    ratio = y[kept] / (xf[kept] / q)
    assert abs(ratio.mean() - 1) < 1e-4
    # Elementwise: exactly the float32 quotient rounded to bfloat16.
    want = (jnp.asarray(x, jnp.float32) / jnp.float32(q)).astype(jnp.bfloat16)
    np.testing.assert_array_equal(y[kept], np.asarray(want, np.float64)[kept])


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg", "unsafe_rbg"])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_checkpoint_recomputes_the_same_mask_for_key_arguments(impl, sampler):
    # As above, with the key an argument of the jitted function (not a closed-over
    # constant) and each key implementation: rbg/unsafe_rbg keys under remat are
    # where recomputed random bits have diverged before (jax#21046).
    key = jax.random.key(11, impl=impl)
    x = _x()
    w = jnp.linspace(0.5, 1.5, x.shape[-1])

    def layer(w, x, k):
        return jnp.tanh(jaxreg.dropout(k, x * w, 0.3, sampler=sampler))

    def loss(w, k, remat):
        f = jax.checkpoint(layer) if remat else layer
        return jnp.sum(f(w, x, k) ** 2)

    g_plain = jax.jit(jax.grad(lambda w, k: loss(w, k, False)))(w, key)
    g_remat = jax.jit(jax.grad(lambda w, k: loss(w, k, True)))(w, key)
    np.testing.assert_allclose(np.asarray(g_remat), np.asarray(g_plain), rtol=1e-5, atol=1e-6)
    # And the gradient is the one of the mask drawn outside any transformation.
    y = jaxreg.dropout(key, x * w, 0.3, sampler=sampler)
    d = np.asarray(y / (x * w))  # the multiplier m / q
    t = np.tanh(np.asarray(y))
    want = (2 * t * (1 - t**2) * d * np.asarray(x)).sum(axis=(0, 1, 2))
    np.testing.assert_allclose(np.asarray(g_plain), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_alpha_dropout_half_precision_rounds_once(sampler):
    # The affine map a * select(m, x, alpha') + b is evaluated in float32 and
    # rounded once: the bfloat16 output equals the float32 output (same key,
    # same mask) rounded to bfloat16, not a product of bfloat16-rounded a and b.
    x = _x((256, 256), jnp.bfloat16)
    y16 = jaxreg.alpha_dropout(KEY, x, 0.3, sampler=sampler)
    y32 = jaxreg.alpha_dropout(KEY, x.astype(jnp.float32), 0.3, sampler=sampler)
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(y16, np.float32), np.asarray(y32.astype(jnp.bfloat16), np.float32)
    )
