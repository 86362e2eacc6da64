r"""Monte Carlo dropout: the predictive mean and variance of N stochastic forward passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxreg._norms import acc_dtype
from jaxreg._validation import check_count


class MCDropoutPrediction(NamedTuple):
    """Result of `mc_dropout`: per-element moments over the stochastic passes."""

    mean: Any  # pytree like the model's output: (1/N) sum_s f_s, float32 or wider
    variance: Any  # same structure: (1/N) sum_s (f_s - mean)^2 (no model-precision term)


def _moments(samples: Any) -> tuple[Any, Any]:
    """Mean and sum of squared deviations over axis 0 of every leaf, in float32 or wider."""
    wide = jax.tree.map(lambda a: a.astype(acc_dtype(a.dtype)), samples)
    mean = jax.tree.map(lambda a: a.mean(0), wide)
    return mean, jax.tree.map(lambda a, m: jnp.sum((a - m) ** 2, axis=0), wide, mean)


def mc_dropout(
    key: jax.Array,
    fn: Callable[..., Any],
    *args: Any,
    num_samples: int,
    batch_size: int | None = None,
) -> MCDropoutPrediction:
    r"""Monte Carlo dropout: runs ``fn(key_s, *args)`` for ``num_samples`` keys; returns mean and variance.

    ``fn(key, *args)`` is one stochastic forward pass (dropout in training mode,
    every other layer in evaluation mode) returning an array or a pytree of
    arrays $f_s$. With $N$ = ``num_samples`` and keys
    ``jax.random.split(key, N)``:

    $$\hat\mu = \frac1N \sum_{s=1}^N f_s,\qquad \hat\sigma^2 = \frac1N \sum_{s=1}^N (f_s - \hat\mu)^2,$$

    elementwise (the population variance, ``ddof=0``). Gal and Ghahramani's
    predictive variance for regression adds the model precision $\tau^{-1}$;
    add it yourself if you model it. For classification pass probabilities
    (``softmax`` inside ``fn``) and use, e.g., the entropy of the mean,
    $-\sum_c \hat\mu_c \log \hat\mu_c$.

    Memory: ``batch_size=None`` runs all passes at once (``jax.vmap`` over the
    keys: $N$ outputs in memory); ``batch_size=b`` runs ``N / b`` rounds of ``b``
    vmapped passes in a ``lax.scan`` and merges the rounds' moments with Chan et
    al.'s pairwise update (numerically stable), so only $b$ outputs are held.
    Wrap the call in ``jax.jit`` to compile it once.

    For Flax modules see ``jaxreg.linen.mc_dropout`` and ``jaxreg.nnx.mc_dropout``,
    which turn on dropout-family layers only (BatchNorm keeps its running
    statistics) and give each pass its own key.

    Args:
      key: a ``jax.random`` key, split into one key per pass.
      fn: a stochastic forward pass ``fn(key, *args) -> pytree of arrays``.
      *args: the inputs passed to ``fn`` unchanged in every pass.
      num_samples: $N \ge 1$, the number of passes.
      batch_size: the passes run together; must divide ``num_samples``
        (``None``: all of them).

    Returns:
      `MCDropoutPrediction` ``(mean, variance)``, each of ``fn``'s output
      structure and shapes, in float32 (or wider).

    Examples:
      >>> import jax, jax.numpy as jnp, jaxreg
      >>> w = jnp.ones((4, 2))
      >>> def forward(key, x):
      ...     return jaxreg.dropout(key, x, 0.5) @ w
      >>> pred = jaxreg.mc_dropout(jax.random.key(0), forward, jnp.ones((3, 4)), num_samples=64, batch_size=16)
      >>> pred.mean.shape, pred.variance.shape
      ((3, 2), (3, 2))
      >>> bool(jnp.all(jnp.abs(pred.mean - 4.0) < 1.0)), bool(jnp.all(pred.variance > 0))
      (True, True)

    References:
      Gal and Ghahramani, "Dropout as a Bayesian Approximation: Representing
      Model Uncertainty in Deep Learning", ICML 2016,
      https://arxiv.org/abs/1506.02142; Chan, Golub and LeVeque, "Updating
      Formulae and a Pairwise Algorithm for Computing Sample Variances", 1979.
    """
    num_samples = check_count("num_samples", num_samples, minimum=1)
    batch_size = num_samples if batch_size is None else check_count("batch_size", batch_size, minimum=1)
    if num_samples % batch_size:
        raise ValueError(
            f"batch_size must divide num_samples, got batch_size={batch_size}, num_samples={num_samples}"
        )
    rounds = num_samples // batch_size
    keys = jax.random.split(key, num_samples).reshape(rounds, batch_size, *jnp.shape(key))

    def passes(round_keys: jax.Array) -> tuple[Any, Any]:
        return _moments(jax.vmap(lambda k: fn(k, *args))(round_keys))

    mean, m2 = passes(keys[0])
    if rounds > 1:

        def merge(
            carry: tuple[Any, Any, jax.Array], round_keys: jax.Array
        ) -> tuple[tuple[Any, Any, jax.Array], None]:
            mean_a, m2_a, n_a = carry
            mean_b, m2_b = passes(round_keys)
            n = n_a + batch_size
            delta = jax.tree.map(jnp.subtract, mean_b, mean_a)
            mean = jax.tree.map(lambda a, d: a + d * (batch_size / n), mean_a, delta)
            m2 = jax.tree.map(lambda a, b, d: a + b + d * d * (n_a * batch_size / n), m2_a, m2_b, delta)
            return (mean, m2, n), None

        (mean, m2, _), _ = jax.lax.scan(merge, (mean, m2, jnp.float32(batch_size)), keys[1:])
    return MCDropoutPrediction(mean, jax.tree.map(lambda a: a / num_samples, m2))
