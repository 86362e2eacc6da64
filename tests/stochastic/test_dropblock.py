"""dropblock: gamma against the paper (Ghiasi et al. 2018, eq. 1), a NumPy oracle, the dropped fraction."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import KEY, SAMPLERS, SHAPE, assert_same_bits, drop_input

import jaxreg
from jaxreg._stochastic import _sampling


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


_ORACLE_BLOCKS = (1, 3, 4, 7)


def _oracle_gamma(rate, b):
    """The paper's gamma on the 12 x 10 maps of `test_dropblock_against_numpy_oracle`."""
    return rate * 12 * 10 / (b * b * (12 - b + 1) * (10 - b + 1))


@functools.cache
def _oracle_case_results():
    """``{b: (bernoulli keep draws, dropblock output)}`` at rate 0.2 for each block size, one jitted program."""
    rate, x = 0.2, drop_input((2, 12, 10, 3))

    def run(key, x):
        return {
            b: (
                jax.random.bernoulli(key, 1 - _oracle_gamma(rate, b), x.shape),
                jaxreg.dropblock(key, x, rate, b, sampler="jax"),
            )
            for b in _ORACLE_BLOCKS
        }

    return jax.tree.map(np.asarray, jax.jit(run)(KEY, x))


@pytest.mark.parametrize("b", _ORACLE_BLOCKS)
def test_dropblock_against_numpy_oracle(b):
    x = np.asarray(drop_input((2, 12, 10, 3)))
    keep_draws, y = _oracle_case_results()[b]
    seeds = ~keep_draws
    dropped = _dropblock_oracle(seeds, b)
    scale = dropped.size / (~dropped).sum()
    oracle = np.where(dropped, 0.0, x * np.float32(scale))
    np.testing.assert_allclose(y, oracle, rtol=1e-6)


def _previous_dropblock(key, x, rate, b, sampler):
    """The float32 formulation dropblock had before its uint8 max-pools: an oracle for its bits."""
    _, h, w, _ = x.shape
    b = min(b, h, w)
    no_seed, _ = _sampling.keep_mask(key, x.shape, 1.0 - jaxreg.dropblock_gamma(rate, b, h, w), sampler)
    dropped = jnp.where(no_seed, jnp.float32(0), jnp.float32(1))
    for window in ((1, b, 1, 1), (1, 1, b, 1)):
        dropped = jax.lax.reduce_window(dropped, jnp.float32(0), jax.lax.max, window, (1, 1, 1, 1), "SAME")
    keep = dropped == 0
    scale = x.size / jnp.maximum(jnp.sum(keep, dtype=jnp.float32), 1.0)
    return jax.lax.select(keep, x * scale.astype(x.dtype), jnp.zeros_like(x))


def _numpy_dropblock(seeds: np.ndarray, x: np.ndarray, dy: np.ndarray, b: int):
    """The documented algorithm in NumPy on given seeds: ``(y, dx)``, rounded as the op rounds.

    The scale ``size / count(kept)`` is a float32 quotient rounded to ``x``'s
    dtype; the product of two values of a half-precision dtype is exact in
    float32, so one rounding of it gives the dtype's own product.
    """
    b = min(b, x.shape[1], x.shape[2])
    keep = ~_dropblock_oracle(seeds, b)
    scale = (np.float32(x.size) / np.float32(max(keep.sum(), 1))).astype(x.dtype)

    def scaled(a):
        return np.where(
            keep, (a.astype(np.float32) * np.float32(scale)).astype(x.dtype), np.zeros((), x.dtype)
        )

    return scaled(x), scaled(dy)


_BITS_SHAPES = [
    ((2, 12, 10, 3), 1, 0.2),
    ((2, 12, 10, 3), 4, 0.2),
    ((3, 16, 16, 8), 5, 0.1),
    ((1, 7, 9, 2), 7, 0.3),
    ((2, 5, 6, 1), 9, 0.5),
    ((4, 32, 24, 5), 3, 0.15),
]
_DTYPES = [jnp.float32, jnp.bfloat16, jnp.float16]
# Every shape once (dtype and sampler taking turns), and every dtype x sampler on one shape:
# each shape, dtype and sampler is covered without the full product of compilations. (The
# product's case that the first list already has, jax sampler and bfloat16, is not repeated.)
_BITS_CASES = [(SAMPLERS[i % 2], _DTYPES[i % 3], *case) for i, case in enumerate(_BITS_SHAPES)]
_BITS_CASES += [
    case
    for case in [(sampler, dtype, *_BITS_SHAPES[1]) for sampler in SAMPLERS for dtype in _DTYPES]
    if case not in _BITS_CASES
]


def _bits_inputs(dtype, shape):
    """``(x, dy)`` of a bits case, rounded to ``dtype`` by NumPy (ml_dtypes rounds as XLA's convert does)."""
    x = jnp.asarray(np.asarray(drop_input(shape)).astype(dtype))
    dy = jnp.asarray(np.random.default_rng(7).standard_normal(shape).astype(np.float32).astype(dtype))
    return x, dy


@functools.cache
def _bits_results():
    """For every bits case: both formulations' ``(y, dx)`` and the sampler's seeds, all in one program.

    ``y`` and ``dx`` are the forward pass and the pullback of ``dy`` by ``jax.vjp``; one jitted
    program computes every case (each case is its own part of it), in NumPy.
    """

    def case_parts(key, x, dy, sampler, shape, b, rate):
        _, h, w, _ = shape
        gamma = jaxreg.dropblock_gamma(rate, min(b, h, w), h, w)

        def fwd_bwd(f):
            y, pullback = jax.vjp(lambda x: f(key, x, rate, b, sampler), x)
            return y, pullback(dy)[0]

        return (
            fwd_bwd(lambda k, x, r, b, s: jaxreg.dropblock(k, x, r, b, sampler=s)),
            fwd_bwd(_previous_dropblock),
            _sampling.keep_mask(key, shape, 1.0 - gamma, sampler)[0],
        )

    def run(key, inputs):
        return [
            case_parts(key, x, dy, sampler, shape, b, rate)
            for (x, dy), (sampler, _, shape, b, rate) in zip(inputs, _BITS_CASES, strict=True)
        ]

    inputs = [_bits_inputs(dtype, shape) for _, dtype, shape, _, _ in _BITS_CASES]
    return jax.tree.map(np.asarray, jax.jit(run)(KEY, inputs))


@pytest.mark.parametrize(("sampler", "dtype", "shape", "b", "rate"), _BITS_CASES)
def test_dropblock_bits_against_numpy_and_previous_formulation(sampler, dtype, shape, b, rate):
    # Forward and backward, bit for bit, under jit: against NumPy on the sampler's seeds, and
    # against the float32 formulation (seeds and max-pools in float32) the op replaced.
    x, dy = _bits_inputs(dtype, shape)
    case = _BITS_CASES.index((sampler, dtype, shape, b, rate))
    (y, dx), (y_prev, dx_prev), no_seed = _bits_results()[case]
    y_np, dx_np = _numpy_dropblock(~no_seed, np.asarray(x), np.asarray(dy), b)
    assert y.dtype == dx.dtype == x.dtype
    for got in (y, y_prev):
        assert_same_bits(got, y_np, ulps_elsewhere=2)
    for got in (dx, dx_prev):
        assert_same_bits(got, dx_np, ulps_elsewhere=2)
    assert (np.asarray(y) == 0).any()  # some blocks dropped (all of them for the 7x9 map, b = 7)
    # Eager calls give the same bits as jitted ones.
    assert_same_bits(jaxreg.dropblock(KEY, x, rate, b, sampler=sampler), y_np, ulps_elsewhere=2)


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
