"""gaussian_dropout, gaussian_noise and alpha_dropout: moments, and Keras's and PyTorch's formulas in NumPy.

Statistical bounds are 5 standard errors of the statistic under the model
(keys are fixed, so the tests are reproducible).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import BIG, KEY, NBIG, SAMPLERS, drop_input

import jaxreg
from jaxreg._stochastic import _noise as _noise_dropout


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_gaussian_dropout_moments(sampler, rate):
    y = np.asarray(jaxreg.gaussian_dropout(KEY, jnp.ones(BIG), rate, sampler=sampler), np.float64)
    sigma = math.sqrt(rate / (1 - rate))
    # mean 1 (se sigma / sqrt(N)); sample sd has se ~ sigma / sqrt(2N).
    assert abs(y.mean() - 1) < 5 * sigma / math.sqrt(NBIG)
    assert abs(y.std() - sigma) < 5 * sigma / math.sqrt(2 * NBIG)
    if sampler == "jax":  # Keras: x * normal(mean=1, stddev=sqrt(rate / (1 - rate)))
        x = drop_input()
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
    x = drop_input()
    np.testing.assert_array_equal(np.asarray(jaxreg.gaussian_noise(None, x, 0.0)), np.asarray(x))
    if sampler == "jax":
        z = np.asarray(jax.random.normal(KEY, x.shape, jnp.float32))
        np.testing.assert_allclose(
            np.asarray(jaxreg.gaussian_noise(KEY, x, 0.7, sampler="jax")), np.asarray(x) + 0.7 * z, rtol=1e-6
        )


@pytest.mark.parametrize("stddev", [-0.1, float("nan"), float("inf")])
def test_invalid_python_stddev_raises(stddev):
    with pytest.raises(ValueError, match=rf"stddev.*{stddev}"):
        jaxreg.gaussian_noise(KEY, drop_input(), stddev)


def test_alpha_dropout_constants_match_pytorch_formula():
    # PyTorch (ATen _dropout_impl, alpha variant) with alpha = 1.7580993408473766:
    #   a = 1 / sqrt((alpha^2 p + 1) (1 - p)); y = x*m*a + (m - 1)*alpha*a + alpha*a*p.
    alpha = 1.7580993408473766
    assert _noise_dropout.ALPHA_PRIME == pytest.approx(-alpha, abs=1e-15)
    p = 0.3
    x = np.asarray(drop_input((64, 32)), np.float64)
    m = np.asarray(jax.random.bernoulli(KEY, 1 - p, x.shape), np.float64)
    a = 1 / math.sqrt((alpha**2 * p + 1) * (1 - p))
    oracle = x * m * a + (m - 1) * alpha * a + alpha * a * p
    y = jaxreg.alpha_dropout(KEY, jnp.asarray(x, jnp.float32), p, sampler="jax")
    np.testing.assert_allclose(np.asarray(y), oracle, rtol=1e-5, atol=1e-6)


@functools.cache
def _selu_of_normals():
    """SELU of 2**20 standard normals (drawn once for the eight cases below)."""
    return jax.jit(lambda k: jax.nn.selu(jax.random.normal(k, BIG)))(jax.random.key(5))


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("rate", [0.05, 0.1, 0.2, 0.5])
def test_alpha_dropout_keeps_selu_moments(sampler, rate):
    x = _selu_of_normals()
    y = np.asarray(jaxreg.alpha_dropout(KEY, x, rate, sampler=sampler), np.float64)
    # Klambauer et al.: with E[x] = 0, Var[x] = 1 the output keeps both. The
    # SELU of a standard normal has mean ~0 and variance ~1 only approximately
    # (its fixed point), hence the tolerance 0.05.
    assert abs(y.mean()) < 0.05
    assert abs(y.std() - 1) < 0.05
    # The moments alone hold for the identity too (SELU's fixed point): the dropped entries, all
    # equal to a * alpha' + b = a * alpha' * (1 - rate), are Binomial(n, rate) in number (5 sd).
    q = 1.0 - rate
    a = (q * (1.0 + (1.0 - q) * _noise_dropout.ALPHA_PRIME**2)) ** -0.5
    dropped = int(np.isclose(y, a * _noise_dropout.ALPHA_PRIME * q, rtol=1e-6, atol=0).sum())
    n = y.size
    assert abs(dropped - n * rate) < 5 * math.sqrt(n * rate * (1 - rate)), (dropped, n * rate)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_alpha_dropout_half_precision_rounds_once(sampler):
    # The affine map a * select(m, x, alpha') + b is evaluated in float32 and
    # rounded once: the bfloat16 output equals the float32 output (same key,
    # same mask) rounded to bfloat16, not a product of bfloat16-rounded a and b.
    x = drop_input((256, 256), jnp.bfloat16)
    y16 = jaxreg.alpha_dropout(KEY, x, 0.3, sampler=sampler)
    y32 = jaxreg.alpha_dropout(KEY, x.astype(jnp.float32), 0.3, sampler=sampler)
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(y16, np.float32), np.asarray(y32.astype(jnp.bfloat16), np.float32)
    )
