"""Noise-based members of the dropout family: Gaussian dropout, Gaussian noise, alpha dropout.

Normals and masks are drawn by `jaxreg._sampling` (the fast counter-based
source by default, ``jax.random`` with ``sampler="jax"``).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxreg._norms import acc_dtype
from jaxreg._stochastic import _sampling
from jaxreg._stochastic._prologue import (
    checked_input,
    keep_prob_of,
    result_without_sampling,
    safe_keep_prob,
    zero_where_nothing_kept,
)
from jaxreg._typing import Sampler
from jaxreg._validation import check_non_negative, is_concrete

# SELU constants (Klambauer et al. 2017), as in torch.nn.SELU and keras.activations.selu.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
# The negative saturation value of SELU, -scale * alpha, that alpha dropout sets dropped units to.
ALPHA_PRIME = -SELU_SCALE * SELU_ALPHA  # -1.7580993408473766


def _normal_like(key: Any, x: jax.Array, sampler: Sampler) -> jax.Array:
    """Standard normals of ``x``'s shape; float32 at least (cast back by the caller)."""
    dtype = acc_dtype(x.dtype)
    return _sampling.normal(key, x.shape, dtype, sampler)


def gaussian_dropout(
    key: Any,
    x: jax.Array,
    rate: float | jax.Array,
    *,
    deterministic: bool = False,
    sampler: Sampler = None,
) -> jax.Array:
    r"""Gaussian dropout: multiplicative noise $y = x \odot \epsilon$, $\epsilon \sim N(1, \sigma^2)$.

    $\sigma^2 = \text{rate} / (1 - \text{rate})$, the variance of inverted
    Bernoulli dropout's multiplier $m/(1-\text{rate})$: same mean and
    variance, no zeros (Srivastava et al. 2014, section 10; Keras
    ``GaussianDropout``). $y = x$ when deterministic. ``rate == 1`` returns zeros
    (Keras 3 raises ``ZeroDivisionError`` there and tf-keras 2.x returns the input
    unchanged; the limit $\sigma \to \infty$ has no meaning, jaxreg follows the
    family rule "rate 1 drops everything"), and so do rates within $2^{-25}$ of 1,
    whose keep probability quantizes to 0 as in :func:`dropout`: the same rule for
    a Python rate and a traced one.

    Args:
      key: a ``jax.random`` key; may be ``None`` when deterministic or ``rate == 0``.
      x: the input (float dtype, preserved; the noise is computed in float32
        or wider).
      rate: in [0, 1] (may be traced).
      deterministic: evaluation mode: returns ``x``.
      sampler: ``None`` (default ``"fast"``: Box-Muller from the counter-based
        hash), ``"fast"`` or ``"jax"`` (``jax.random.normal``).

    Returns:
      An array of ``x``'s shape and dtype.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxreg
      >>> y = jaxreg.gaussian_dropout(jax.random.key(0), jnp.ones(100_000), 0.5)
      >>> round(float(y.mean()), 1), round(float(y.std()), 1)
      (1.0, 1.0)

    References:
      Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
      Overfitting", JMLR 2014, https://jmlr.org/papers/v15/srivastava14a.html;
      Keras ``GaussianDropout``.
    """
    x, rate = checked_input("gaussian_dropout", key, x, rate, sampler, deterministic=deterministic)
    if (out := result_without_sampling("gaussian_dropout", key, x, rate, deterministic)) is not None:
        return out
    # One rule for concrete and traced rates: zeros when the quantized keep probability is 0
    # (1 - rate <= 2**-25), as for the masking ops; a traced float32 rate rounds to 1 there.
    _, q = _sampling.quantize_keep_prob(keep_prob_of(rate))
    if is_concrete(q):
        if q == 0:
            return jnp.zeros_like(x)
        stddev = math.sqrt(float(rate) / (1.0 - float(rate)))
    else:
        r = jnp.asarray(rate, jnp.float32)
        stddev = jnp.sqrt(jnp.where(r < 1, r / jnp.where(r < 1, 1 - r, 1.0), 0.0))
    z = _normal_like(key, x, sampler)
    y = (x.astype(z.dtype) * (1.0 + stddev * z)).astype(x.dtype)
    return zero_where_nothing_kept(q, y)


def gaussian_noise(
    key: Any,
    x: jax.Array,
    stddev: float | jax.Array,
    *,
    deterministic: bool = False,
    sampler: Sampler = None,
) -> jax.Array:
    r"""Additive Gaussian noise: $y = x + \sigma \epsilon$, $\epsilon \sim N(0, 1)$.

    Keras ``GaussianNoise``: a regularizer in training, identity when
    deterministic. ``stddev == 0`` returns ``x`` and needs no key.

    Args:
      key: a ``jax.random`` key; may be ``None`` when deterministic or ``stddev == 0``.
      x: the input (float dtype, preserved).
      stddev: $\sigma \ge 0$ (may be traced).
      deterministic: evaluation mode: returns ``x``.
      sampler: ``None`` (default ``"fast"``), ``"fast"`` or ``"jax"``.

    Returns:
      An array of ``x``'s shape and dtype.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxreg
      >>> y = jaxreg.gaussian_noise(jax.random.key(0), jnp.zeros(100_000), 2.0)
      >>> round(float(y.std()), 1)
      2.0

    References:
      Bishop, "Training with Noise is Equivalent to Tikhonov Regularization",
      Neural Computation 1995; Keras ``GaussianNoise``.
    """
    x, stddev = checked_input(
        "gaussian_noise",
        key,
        x,
        stddev,
        sampler,
        deterministic=deterministic,
        rate_name="stddev",
        check=check_non_negative,
    )
    if (
        out := result_without_sampling("gaussian_noise", key, x, stddev, deterministic, one_drops_all=False)
    ) is not None:
        return out
    z = _normal_like(key, x, sampler)
    return (x.astype(z.dtype) + stddev * z).astype(x.dtype)


def alpha_dropout(
    key: Any,
    x: jax.Array,
    rate: float | jax.Array,
    *,
    deterministic: bool = False,
    sampler: Sampler = None,
) -> jax.Array:
    r"""Alpha dropout: dropout that keeps SELU's zero mean and unit variance.

    Dropped units are set to SELU's negative saturation
    $\alpha' = -\lambda\alpha \approx -1.7581$ instead of 0, then an affine map
    restores the moments:

    $$y = a\,(m \odot x + \alpha' (1 - m)) + b,\quad
      a = \big(q\,(1 + (1 - q)\,\alpha'^2)\big)^{-1/2},\quad b = -a\,\alpha'\,(1 - q),$$

    $m \sim \mathrm{Bernoulli}(q)$, $q = 1 - \text{rate}$ (the sampler's
    quantized keep probability with the default sampler). These are PyTorch's
    (``F.alpha_dropout``) and Keras's (``AlphaDropout``) constants. For inputs
    with mean 0 and variance 1 the output has mean 0 and variance 1.
    $y = x$ when deterministic; ``rate == 1`` returns zeros (as PyTorch).

    Args:
      key: a ``jax.random`` key; may be ``None`` when deterministic or ``rate == 0``.
      x: the input, typically a SELU activation (float dtype, preserved).
      rate: in [0, 1] (may be traced).
      deterministic: evaluation mode: returns ``x``.
      sampler: ``None`` (default ``"fast"``), ``"fast"`` or ``"jax"``.

    Returns:
      An array of ``x``'s shape and dtype.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxreg
      >>> x = jax.nn.selu(jax.random.normal(jax.random.key(1), (200_000,)))
      >>> y = jaxreg.alpha_dropout(jax.random.key(0), x, 0.2)
      >>> round(float(y.mean()), 1) == 0.0, round(float(y.std()), 1)
      (True, 1.0)

    References:
      Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017,
      https://arxiv.org/abs/1706.02515; ``torch.nn.AlphaDropout``; Keras
      ``AlphaDropout``.
    """
    x, rate = checked_input("alpha_dropout", key, x, rate, sampler, deterministic=deterministic)
    if (out := result_without_sampling("alpha_dropout", key, x, rate, deterministic)) is not None:
        return out
    keep, q = _sampling.keep_mask(key, x.shape, keep_prob_of(rate), sampler)
    qs = safe_keep_prob(q)
    if is_concrete(qs):
        a = (qs * (1.0 + (1.0 - qs) * ALPHA_PRIME**2)) ** -0.5
    else:
        a = lax.rsqrt(qs * (1.0 + (1.0 - qs) * ALPHA_PRIME**2))
    b = -a * ALPHA_PRIME * (1.0 - qs)
    # The affine map in float32 (or wider), rounded once to x's dtype, so that
    # half-precision outputs do not carry the rounding of a and b (a bias in the moments).
    wide = acc_dtype(x.dtype)
    xw = x.astype(wide)
    y = jnp.asarray(a, wide) * lax.select(keep, xw, jnp.full_like(xw, ALPHA_PRIME)) + jnp.asarray(b, wide)
    return zero_where_nothing_kept(q, y.astype(x.dtype))
