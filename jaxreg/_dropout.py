"""Dropout with an explicit key: ``dropout`` and the helpers the family shares."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxreg import _sampling
from jaxreg._sampling import Sampler
from jaxreg._validation import check_axis, check_rate

MODES = ("inverted", "classic")


def is_concrete(value: Any) -> bool:
    """True for Python and NumPy numbers (values known at trace time)."""
    return isinstance(value, (numbers.Real, np.generic)) and not isinstance(value, bool)


def is_zero(value: Any) -> bool:
    """True only for a concrete 0 (a traced value is never known to be zero)."""
    return is_concrete(value) and float(value) == 0.0


def is_one(value: Any) -> bool:
    return is_concrete(value) and float(value) == 1.0


def require_key(key: Any, name: str) -> None:
    if key is None:
        raise ValueError(
            f"{name} needs a PRNG key in training mode: pass key=jax.random.key(...), "
            "or deterministic=True at evaluation"
        )


def keep_prob_of(rate: Any) -> Any:
    """``1 - rate``: a Python float for a concrete rate, a float32 array otherwise."""
    if is_concrete(rate):
        return 1.0 - float(rate)
    return 1.0 - jnp.asarray(rate, jnp.float32)


def safe_divide(x: jax.Array, q: Any) -> jax.Array:
    """``x / q`` in ``x``'s dtype; ``x / 1`` where ``q == 0`` (then every element is dropped).

    The guard keeps the gradient NaN-free at a traced ``rate == 1``: the dropped
    branch of the select gets a zero cotangent, and ``0 * (1 / 0)`` would be NaN.
    """
    if is_concrete(q):
        return x / jnp.asarray(q if q > 0 else 1.0, x.dtype)
    return x / jnp.where(q > 0, q, 1.0).astype(x.dtype)


def masked_shape(shape: Sequence[int], broadcast_dims: Sequence[int]) -> tuple[int, ...]:
    """``shape`` with 1 along ``broadcast_dims`` (axes along which the mask is shared)."""
    out = list(shape)
    for d in broadcast_dims:
        out[check_axis("broadcast_dims", d, len(shape), "x")] = 1
    return tuple(out)


def apply_keep_mask(
    key: Any,
    x: jax.Array,
    rate: Any,
    mask_shape: tuple[int, ...],
    *,
    scale: bool,
    sampler: Sampler,
) -> jax.Array:
    """Zeroes ``x`` where a keep mask of ``mask_shape`` (broadcast to ``x``) is False.

    With ``scale=True`` kept values are divided by the keep probability the
    sampler actually used (unbiased). This is the core of ``dropout``,
    ``spatial_dropout`` and ``drop_path``.
    """
    keep, q = _sampling.keep_mask(key, mask_shape, keep_prob_of(rate), sampler)
    keep = jnp.broadcast_to(keep, x.shape)
    kept = safe_divide(x, q) if scale else x
    return lax.select(keep, kept, jnp.zeros_like(x))


def dropout(
    key: Any,
    x: jax.Array,
    rate: float | jax.Array,
    *,
    deterministic: bool = False,
    broadcast_dims: Sequence[int] = (),
    mode: Literal["inverted", "classic"] = "inverted",
    sampler: Sampler = None,
) -> jax.Array:
    r"""Dropout: zeroes each element with probability ``rate``.

    Training (``deterministic=False``), with $m_i \sim \mathrm{Bernoulli}(q)$,
    $q \approx 1 - \text{rate}$ the keep probability:

    * ``mode="inverted"`` (PyTorch, Flax, Keras): $y = m \odot x / q$; at
      evaluation $y = x$.
    * ``mode="classic"`` (Srivastava et al. 2014, the seed's formulation):
      $y = m \odot x$; at evaluation $y = (1 - \text{rate})\,x$.

    Both give the same expected activation at train and test time.

    ``broadcast_dims`` follows ``flax.linen.Dropout``: the mask has size 1 along
    those axes and is shared (broadcast) along them, e.g. ``broadcast_dims=(1,)``
    for one mask per sequence over a ``(batch, time, features)`` input.

    ``sampler="jax"`` draws ``jax.random.bernoulli(key, 1 - rate, mask_shape)``
    and computes ``lax.select(mask, x / (1 - rate), 0)``: bit-identical to
    ``flax.linen.Dropout`` and ``hk.dropout`` for the same key. The default
    (``None`` = ``"fast"``) hashes each element's global index with seed words
    from the key inside the fusion that applies the mask (see
    :mod:`jaxreg._sampling`); its keep probability is quantized to $2^{-24}$
    and the inverted scaling uses the quantized $q$, so $E[y] = x$ exactly.

    Args:
      key: a ``jax.random`` key (typed or legacy); may be ``None`` when
        ``deterministic`` or ``rate == 0``.
      x: the input array (any float dtype; the dtype is preserved).
      rate: drop probability in [0, 1]; a Python float or a (traced) JAX scalar.
      deterministic: evaluation mode: no randomness, no key needed.
      broadcast_dims: axes along which one mask value is shared.
      mode: ``"inverted"`` or ``"classic"``.
      sampler: ``None`` (library default, ``"fast"``), ``"fast"`` or ``"jax"``.

    Returns:
      An array of ``x``'s shape and dtype. ``rate == 1`` gives zeros (with zero,
      NaN-free gradients, also for a traced rate).

    Examples:
      >>> import jax, jax.numpy as jnp, jaxreg
      >>> y = jaxreg.dropout(jax.random.key(0), jnp.ones(8), 0.5)
      >>> sorted(set(y.tolist())) in ([0.0, 2.0], [2.0], [0.0])
      True
      >>> jaxreg.dropout(None, jnp.ones(2), 0.5, deterministic=True, mode="classic").tolist()
      [0.5, 0.5]

    References:
      Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
      Overfitting", JMLR 2014, https://jmlr.org/papers/v15/srivastava14a.html;
      ``flax.linen.Dropout``; ``torch.nn.Dropout``.
    """
    check_rate("rate", rate)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    _sampling.resolve_sampler(sampler)
    x = jnp.asarray(x)
    if deterministic:
        if mode == "classic" and not is_zero(rate):
            return x * jnp.asarray(keep_prob_of(rate), x.dtype)
        return x
    if is_zero(rate):
        return x
    require_key(key, "dropout")
    if is_one(rate):
        return jnp.zeros_like(x)
    mask_shape = masked_shape(x.shape, broadcast_dims)
    return apply_keep_mask(key, x, rate, mask_shape, scale=mode == "inverted", sampler=sampler)
