"""Statistical quality of the mask and noise samplers (`jaxreg._sampling`).

Every bound is stated where it is used. Under the null hypothesis (independent
draws) a sample correlation of n pairs is approximately N(0, 1/n), a kept
count is Binomial(n, q), and so on. The bounds are 4 or 5 standard errors
(two-sided normal tails 6.3e-5 and 5.7e-7) or a Kolmogorov-Smirnov level of
1e-3. For a correct sampler the false-failure probability adds up to about
3e-3: the 18 four-sigma kept-count cases give ~1.1e-3, the two KS tests ~2e-3,
the five-sigma bounds (about 400, 256 of them in the bit-flip tests) 2.3e-4
together. Keys are fixed, so a given sampler either passes or fails
reproducibly.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from helpers import SAMPLERS, every_key_kind

from jaxreg._stochastic import _sampling

SHAPE = (1024, 1024)  # n = 2**20 >= 1e6 elements
N = SHAPE[0] * SHAPE[1]
KEY = jax.random.key(20260)


def _corr(a, b) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def _uniform01(key, sampler="fast", shape=SHAPE):
    """Raw words mapped to [0, 1) (all 32 bits)."""
    return np.asarray(_sampling.bits(key, shape, sampler), np.float64) / 2.0**32


RATES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@functools.cache
def _kept_counts(sampler):
    """``{rate: (kept count, q)}`` of one mask per rate (Python rates), all in one jitted program."""

    def counts(k):
        out = {}
        for rate in RATES:
            mask, q = _sampling.keep_mask(k, SHAPE, 1.0 - rate, sampler)
            out[rate] = (jnp.sum(mask, dtype=jnp.int32), q)
        return out

    return {rate: (int(c), float(q)) for rate, (c, q) in jax.jit(counts)(KEY).items()}


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("rate", RATES)
def test_kept_fraction_within_4_sigma(sampler, rate):
    # kept count ~ Binomial(N, q): |count - N q| < 4 sqrt(N q (1 - q)).
    count, q = _kept_counts(sampler)[rate]
    assert abs(count - N * q) < 4 * math.sqrt(N * q * (1 - q))


def test_fast_quantization_is_documented_rounding():
    for p in [0.0, 1.0, 0.5, 0.9, 1 / 3, 1e-9, 1 - 1e-9, 0.123456789]:
        t, q = _sampling.quantize_keep_prob(p)
        assert t == round(p * 2**24) and q == t / 2**24
        assert abs(q - p) <= 2.0**-25
    # The traced computation agrees with the Python one.
    for p in [0.5, 0.9, 1 / 3, 0.123456789]:
        t, q = jax.jit(_sampling.quantize_keep_prob)(jnp.float32(p))
        assert int(t) == round(float(np.float32(p)) * 2**24)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_keep_prob_extremes(sampler):
    m1, _ = _sampling.keep_mask(KEY, (1000,), 1.0, sampler)
    m0, _ = _sampling.keep_mask(KEY, (1000,), 0.0, sampler)
    assert bool(m1.all()) and not bool(m0.any())


def test_fast_mask_is_top_bits_below_threshold():
    # Oracle: the documented rule (h >> 8) < round(p * 2**24), in NumPy.
    h = np.asarray(_sampling.hash_bits(KEY, (64, 64)))
    mask, _ = _sampling.keep_mask(KEY, (64, 64), 0.3, "fast")
    np.testing.assert_array_equal(np.asarray(mask), (h >> 8) < round(0.3 * 2**24))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_bits_are_balanced_and_bytes_uniform(sampler):
    w = np.asarray(_sampling.bits(KEY, SHAPE, sampler))
    # Each of the 32 bits: mean ~ N(1/2, 1/(4N)); bound 5 standard errors.
    means = np.array([((w >> np.uint32(b)) & 1).mean() for b in range(32)])
    assert np.all(np.abs(means - 0.5) < 5 * 0.5 / math.sqrt(N))
    # Top byte and bottom byte: chi-square with 255 df (mean 255, sd sqrt(510));
    # bound mean + 5 sd.
    for byte in (w >> 24, w & 0xFF):
        counts = np.bincount(byte.ravel(), minlength=256)
        chi2 = float(((counts - N / 256) ** 2 / (N / 256)).sum())
        assert chi2 < 255 + 5 * math.sqrt(510)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_no_correlation_between_neighbours_and_rows(sampler):
    # Sample correlation of n independent pairs ~ N(0, 1/n): |r| < 5 / sqrt(n).
    u = _uniform01(KEY, sampler)
    flat = u.ravel()
    for lag in (1, 2, 3, 8, 1024, 4096):  # 1024 = next row
        n = flat.size - lag
        assert abs(_corr(flat[:-lag], flat[lag:])) < 5 / math.sqrt(n), lag
    n = u[:-1].size
    assert abs(_corr(u[:-1], u[1:])) < 5 / math.sqrt(n)  # row r vs row r + 1
    assert abs(_corr(u[:, :-1], u[:, 1:])) < 5 / math.sqrt(u[:, 1:].size)  # column neighbours
    # Masks (what dropout uses): neighbouring keep decisions at rate 0.5.
    mask = np.asarray(_sampling.keep_mask(KEY, SHAPE, 0.5, sampler)[0])
    assert abs(_corr(mask[:, :-1], mask[:, 1:])) < 5 / math.sqrt(mask[:, 1:].size)
    assert abs(_corr(mask[:-1], mask[1:])) < 5 / math.sqrt(mask[1:].size)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_no_correlation_between_derived_keys(sampler):
    # Masks of keys from split and fold_in of one key, and of consecutive
    # training steps fold_in(key, t): |r| < 5 / sqrt(N) for every pair. (In
    # this jax, split(key)[i] is the same key as fold_in(key, i), so the
    # fold_in steps start at 2 to keep the keys distinct.)
    k1, k2 = jax.random.split(KEY)
    keys = [KEY, k1, k2, *(jax.random.fold_in(KEY, t) for t in range(2, 6))]
    data = {tuple(np.asarray(jax.random.key_data(k)).tolist()) for k in keys}
    assert len(data) == len(keys)
    masks = [np.asarray(_sampling.keep_mask(k, SHAPE, 0.5, sampler)[0]) for k in keys]
    corr = np.corrcoef(np.stack([m.ravel() for m in masks]).astype(np.float64))  # every pair at once
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            assert abs(corr[i, j]) < 5 / math.sqrt(N), (i, j)
    # Raw words of split keys: uniform values, and also shifted by one element
    # (a counter hash whose seeds entered by addition would correlate there).
    u1, u2 = _uniform01(k1, sampler), _uniform01(k2, sampler)
    assert abs(_corr(u1, u2)) < 5 / math.sqrt(N)
    assert abs(_corr(u1.ravel()[1:], u2.ravel()[:-1])) < 5 / math.sqrt(N - 1)


N_FLIP = 2**18  # words per stream in the bit-flip tests


def _flip_correlations(base: np.ndarray, flipped: np.ndarray) -> np.ndarray:
    """|r| of each row of ``flipped`` against ``base`` (uint32 words), on two views of the word.

    All 32 bits read as a uniform in [0, 1) (the top bits dominate: what the keep
    decision compares), and the low 16 bits alone (byte-level structure).
    """
    out = []
    for view in (lambda w: w / 2.0**32, lambda w: (w & 0xFFFF) / 2.0**16):
        b = view(base)
        out.append([abs(_corr(b, view(f))) for f in flipped])
    return np.array(out)  # (2 views, rows)


def test_fast_key_bit_sensitivity():
    # Flip each single bit of each word of the key's data (legacy uint32 key
    # data, two words): each of the 64 streams is as unrelated to the
    # original as another key's. Sample correlation of n independent pairs ~
    # N(0, 1/n): |r| < 5 / sqrt(n) for each stream and view.
    data = np.asarray(jax.random.key_data(KEY))
    keys = np.repeat(data[None], data.size * 32, axis=0)
    for j in range(data.size):
        keys[32 * j : 32 * (j + 1), j] ^= np.uint32(1) << np.arange(32, dtype=np.uint32)
    words = jax.jit(jax.vmap(lambda k: _sampling.hash_bits(k, (N_FLIP,))))(jnp.asarray(keys))
    base = np.asarray(_sampling.hash_bits(jnp.asarray(data), (N_FLIP,)))
    r = _flip_correlations(base, np.asarray(words))
    assert np.all(r < 5 / math.sqrt(N_FLIP)), np.argwhere(r >= 5 / math.sqrt(N_FLIP))


def test_fast_seed_bit_sensitivity():
    # The same for the hash itself: flip each bit of each seed word (s0, s1).
    # A bit of s1 enters between the multiply and the finalizer: an
    # unrelated stream, |r| < 5 / sqrt(n). A bit b of s0 maps index i to
    # i ^ 2**b: for 2**b < n the stream is the original one permuted, each pair
    # (i, i ^ 2**b) counted twice, so r ~ N(0, 2/n): |r| < 5 sqrt(2/n); beyond n,
    # other indices' words, |r| < 5 / sqrt(n). (A cheaper finalizer, one multiply
    # and one xor-shift, fails here: one flipped bit of s1 gives |r| up to 0.8.)
    s0, s1 = (int(w) for w in _sampling.seed_words(KEY, 0))
    flips = [(s0 ^ (1 << b), s1) for b in range(32)] + [(s0, s1 ^ (1 << b)) for b in range(32)]
    seeds = jnp.asarray(np.array(flips, np.uint32))
    lo = jnp.arange(N_FLIP, dtype=jnp.uint32)
    words = jax.jit(jax.vmap(lambda s: _sampling._hash((s[0], s[1]), lo, None)))(seeds)
    base = np.asarray(_sampling.hash_bits(KEY, (N_FLIP,)))
    r = _flip_correlations(base, np.asarray(words))
    sd = np.array(
        [math.sqrt((2 if 2**b < N_FLIP else 1) / N_FLIP) for b in range(32)] + [1 / math.sqrt(N_FLIP)] * 32
    )
    assert np.all(r < 5 * sd), np.argwhere(r >= 5 * sd)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_key_same_bits_different_keys_different(sampler):
    a = _sampling.bits(KEY, (256,), sampler)
    b = jax.jit(lambda k: _sampling.bits(k, (256,), sampler))(KEY)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c = _sampling.bits(jax.random.fold_in(KEY, 1), (256,), sampler)
    # Two independent uniform 32-bit words coincide with probability 2**-32.
    assert int((np.asarray(a) == np.asarray(c)).sum()) <= 1


def test_fast_depends_on_global_flat_index_only():
    # The word of an element is a function of its flat index in the logical
    # shape: reshaping the request does not change the stream. This is what
    # makes the mask independent of sharding and device layout.
    flat = np.asarray(_sampling.hash_bits(KEY, (24 * 16,)))
    for shape in [(24, 16), (4, 6, 16), (2, 3, 4, 16), (384, 1)]:
        np.testing.assert_array_equal(np.asarray(_sampling.hash_bits(KEY, shape)).ravel(), flat)
    # A slice of a bigger array under jit equals the same positions eagerly.
    part = jax.jit(lambda k: _sampling.hash_bits(k, (24, 16))[5:9, 3:7])(KEY)
    np.testing.assert_array_equal(np.asarray(part), flat.reshape(24, 16)[5:9, 3:7])


# ---- An independent NumPy oracle of the documented hash (module docstring of
# jaxreg._sampling): h(i) = m2(((i ^ s0) * G mod 2**32) ^ s1), G = 0x9e3779b9, m1
# and m2 the two "lowbias32" finalizers of Chris Wellons ("Prospecting for hash
# functions"):
#   m1: x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16
#   m2: x ^= x >> 16; x *= 0x21f0aaad; x ^= x >> 15; x *= 0x735a2d97; x ^= x >> 15
# (m1 only derives seed words). Two counter words (lo over the trailing axes, hi
# over the leading ones): the seed words are first replaced by
# s0 <- m1(s0 ^ hi), then s1 <- m2((s1 + hi) ^ s0).
# All arithmetic mod 2**32 in uint64.

_M32 = np.uint64(0xFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B9)


def _np_lowbias32(x, c1, c2, last_shift):
    x = np.asarray(x, np.uint64) & _M32
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(c1)) & _M32
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(c2)) & _M32
    return x ^ (x >> np.uint64(last_shift))


def _np_m1(x):
    return _np_lowbias32(x, 0x7FEB352D, 0x846CA68B, 16)


def _np_m2(x):
    return _np_lowbias32(x, 0x21F0AAAD, 0x735A2D97, 15)


def _np_hash(index, s0, s1, hi=None):
    s0, s1 = np.uint64(s0), np.uint64(s1)
    if hi is not None:
        hi = np.asarray(hi, np.uint64)
        s0 = _np_m1(s0 ^ hi)
        s1 = _np_m2(((s1 + hi) & _M32) ^ s0)
    return _np_m2((((np.asarray(index, np.uint64) ^ s0) * _GOLDEN) & _M32) ^ s1).astype(np.uint32)


def test_lowbias32_mixers_against_reference_values():
    # The library's two mixers against the NumPy transcription of the published
    # finalizers, on edge-case words (0, all ones, high bit set).
    probe = np.array([0, 1, 2, 0xDEADBEEF, 0xFFFFFFFF, 123456789], np.uint32)
    np.testing.assert_array_equal(np.asarray(_sampling._mix1(jnp.asarray(probe))), _np_m1(probe))
    np.testing.assert_array_equal(np.asarray(_sampling._mix2(jnp.asarray(probe))), _np_m2(probe))
    assert int(_np_m1(0)) == 0 and int(_np_m2(0)) == 0  # xor-shift-multiply fixes 0


@pytest.mark.parametrize("seed", [0, 3, 2**31 + 5])
def test_fast_hash_against_numpy_oracle(seed):
    key = jax.random.key(seed)
    s0, s1 = (int(w) for w in _sampling.seed_words(key, 0))
    shape = (37, 53)
    idx = np.arange(shape[0] * shape[1], dtype=np.uint64)
    want = _np_hash(idx, s0, s1).reshape(shape)
    np.testing.assert_array_equal(np.asarray(_sampling.hash_bits(key, shape)), want)
    # Streams use their own seed words.
    t0, t1 = (int(w) for w in _sampling.seed_words(key, 2))
    np.testing.assert_array_equal(
        np.asarray(_sampling.hash_bits(key, shape, 2)), _np_hash(idx, t0, t1).reshape(shape)
    )


def test_fast_two_word_counter_for_huge_arrays(monkeypatch):
    # >= 2**32 elements: traced (never materialized here) with two counter words.
    out = jax.eval_shape(lambda k: _sampling.hash_bits(k, (2**16 + 1, 2**16)), KEY)
    assert out.shape == (2**16 + 1, 2**16) and out.dtype == jnp.uint32
    with pytest.raises(ValueError, match="2\\*\\*32"):
        jax.eval_shape(lambda k: _sampling.hash_bits(k, (2**33,)), KEY)
    # The same scheme at a small scale: with a counter limit of 2**8, a (64, 32)
    # array splits into lo = index over axis 1 and hi = index over axis 0. The
    # limit is a static argument of the jitted kernel, so lowering it cannot
    # reuse (or pollute) the cache entry of the one-word kernel.
    one_word = np.asarray(_sampling.hash_bits(KEY, (64, 32)))
    s0, s1 = (int(w) for w in _sampling.seed_words(KEY, 0))
    lo = np.broadcast_to(np.arange(32, dtype=np.uint64), (64, 32))
    hi = np.broadcast_to(np.arange(64, dtype=np.uint64)[:, None], (64, 32))
    monkeypatch.setattr(_sampling, "_COUNTER_LIMIT", 2**8)
    w = np.asarray(_sampling.hash_bits(KEY, (64, 32)))
    np.testing.assert_array_equal(w, _np_hash(lo, s0, s1, hi))
    assert not np.array_equal(w, one_word)
    # The one-word path still gives its own words under the lowered limit for small shapes.
    np.testing.assert_array_equal(np.asarray(_sampling.hash_bits(KEY, (8, 32))), one_word[:8])
    with pytest.raises(ValueError, match="axis"):
        _sampling.hash_bits(KEY, (512,))
    monkeypatch.undo()
    np.testing.assert_array_equal(np.asarray(_sampling.hash_bits(KEY, (64, 32))), one_word)


@pytest.mark.parametrize("key", every_key_kind(3))
def test_fast_accepts_every_key_implementation(key):
    words = np.asarray(_sampling.bits(key, (4096,)))
    u = words / 2.0**32
    # Uniform mean: |mean - 1/2| < 5 sqrt(1/12 / n).
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / u.size)
    # All words of the key enter the seed: changing any one word changes the bits.
    data = np.asarray(_sampling.key_words(key))
    for j in range(data.size):
        other = data.copy()
        other[j] ^= 1
        alt = _sampling.bits(jnp.asarray(other, jnp.uint32), (64,))
        assert not np.array_equal(np.asarray(alt), words[:64])


def test_fast_rejects_missing_or_batched_keys():
    with pytest.raises(ValueError, match="key"):
        _sampling.bits(None, (4,))
    with pytest.raises(ValueError, match="vmap"):
        _sampling.bits(jax.random.split(KEY, 3), (4,))


def test_fast_vmap_over_keys_equals_per_key_calls():
    keys = jax.random.split(KEY, 5)
    batched = jax.vmap(lambda k: _sampling.hash_bits(k, (7, 9)))(keys)
    for i in range(5):
        np.testing.assert_array_equal(
            np.asarray(batched[i]), np.asarray(_sampling.hash_bits(keys[i], (7, 9)))
        )


def test_cell_midpoints():
    # The numbers the fast normals are built on: (2 (h >> 9) + 1) / 2**24, odd
    # multiples of 2**-24 in (0, 1) (documented), exactly in float32.
    h = _sampling.hash_bits(KEY, SHAPE, 1)
    u = np.asarray(jax.jit(_sampling._cell_midpoint)(h), np.float64)
    words = np.asarray(h)
    np.testing.assert_array_equal(u, (2.0 * (words >> 9) + 1) / 2**24)
    assert u.min() > 0 and u.max() < 1
    # Uniform on 2**23 midpoints: mean 1/2, variance (1 - 2**-46) / 12. Sample
    # mean: sd sqrt(1/12/N); sample variance: sd sqrt(1/180/N). Bound 5 sd.
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / N)
    assert abs(u.var() - 1 / 12) < 5 * math.sqrt(1 / 180 / N)


def test_fast_normal_against_numpy_oracle():
    # The documented construction from the words of stream 1 (2 * stream + 1), in
    # float64: t = (2 (h >> 9) + 1) / 2**24, v = (2 ((h G mod 2**32) >> 9) + 1) / 2**24 - 1/2,
    # z = sqrt(-2 ln t) sin(pi v). The library computes in float32 with a
    # polynomial sine (absolute error < 3e-7, times |sqrt(-2 ln t)| <= 5.77)
    # and float32 log and sqrt (a few ulp): |error| < 4e-6 + 1e-6 |z|.
    shape = (256, 512)
    z = np.asarray(_sampling.normal(KEY, shape), np.float64)
    h = np.asarray(_sampling.hash_bits(KEY, shape, 1), np.uint64)
    t = (2.0 * (h >> np.uint64(9)) + 1) / 2**24
    g = (h * np.uint64(0x9E3779B9)) & np.uint64(0xFFFFFFFF)
    v = (2.0 * (g >> np.uint64(9)) + 1) / 2**24 - 0.5
    want = np.sqrt(-2 * np.log(t)) * np.sin(np.pi * v)
    assert np.all(np.abs(z - want) < 4e-6 + 1e-6 * np.abs(want))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_normal_moments(sampler):
    z = np.asarray(
        jax.jit(lambda k: _sampling.normal(k, SHAPE, jnp.float32, sampler))(KEY), np.float64
    ).ravel()
    # Standard errors of the sample moments of N(0, 1) with n draws: mean
    # 1/sqrt(n), variance sqrt(2/n), skewness sqrt(6/n), excess kurtosis
    # sqrt(24/n). Bound: 5 standard errors.
    assert abs(z.mean()) < 5 / math.sqrt(N)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / N)
    assert abs(scipy.stats.skew(z)) < 5 * math.sqrt(6 / N)
    assert abs(scipy.stats.kurtosis(z)) < 5 * math.sqrt(24 / N)
    # Kolmogorov-Smirnov against the normal CDF: sqrt(n) D exceeds 1.95 with
    # probability < 0.001 under the null.
    d = scipy.stats.kstest(z, "norm").statistic
    assert math.sqrt(N) * d < 1.95
    # Neighbouring normals are uncorrelated (they share no word).
    assert abs(_corr(z.ravel()[:-1], z.ravel()[1:])) < 5 / math.sqrt(N - 1)
    # No atom and no hole at 0: a coarse angle (a few bits of the word) would
    # thin the density of z below about pi * 2**-bits, and an angle on the full
    # circle would give exact zeros. The count of |z| < 2**-12 is Binomial(N, p0),
    # p0 = 2 Phi(2**-12) - 1 (about 200 of N): bound 5 sd.
    p0 = 2 * scipy.stats.norm.cdf(2.0**-12) - 1
    count = int((np.abs(z) < 2.0**-12).sum())
    assert abs(count - N * p0) < 5 * math.sqrt(N * p0 * (1 - p0))


def test_fast_normal_bounded_tail_and_no_zero():
    # Box-Muller with t >= 2**-24: |z| <= sqrt(-2 ln 2**-24) (documented); t < 1
    # and v != 0, so z is never exactly 0.
    z = np.asarray(_sampling.normal(KEY, SHAPE, jnp.float32, "fast"))
    assert np.abs(z).max() <= math.sqrt(48 * math.log(2)) + 1e-5
    assert np.all(z != 0)


def test_unknown_sampler_raises():
    with pytest.raises(ValueError, match="sampler"):
        _sampling.keep_mask(KEY, (3,), 0.5, "torch")


def test_polynomial_sine_against_numpy():
    # The fast normal's sin(pi v) at every v it is evaluated at, v = (2j + 1) / 2**24 - 1/2
    # for j < 2**23: error < 3e-7 (documented), and odd in v exactly.
    sin = jax.jit(_sampling._sin_pi)
    for start in range(0, 2**23, 2**21):  # in chunks, to keep memory small
        v = (2 * np.arange(start, start + 2**21, dtype=np.float64) + 1) / 2**24 - 0.5
        s = np.asarray(sin(jnp.asarray(v, jnp.float32)), np.float64)
        assert np.abs(s - np.sin(np.pi * v)).max() < 3e-7
        np.testing.assert_array_equal(np.asarray(sin(jnp.asarray(-v, jnp.float32)), np.float64), -s)
