r"""Norms and array views shared by penalties, transforms and reparametrizations.

The one accumulation dtype (:func:`acc_dtype`), the one gradient-safe
Euclidean norm (:func:`safe_norm`), the group norms of the group lasso
(:func:`group_norms`), "every axis except these" (:func:`axes_except`) and the
``(-1, out)`` matrix view of a kernel (:func:`as_matrix`). Low-precision leaves
get float32 arithmetic and no norm has a NaN gradient at zero.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxreg._validation import check_axis


def acc_dtype(*dtypes: Any) -> jnp.dtype:
    """The dtype jaxreg computes in for inputs of ``dtypes``: float32, or wider if an input is.

    bf16/f16 (and integer) inputs are computed in float32; float64 inputs (under
    ``jax_enable_x64``) in float64. Returned values are cast back by the caller
    where the result has the input's dtype (projections, normalized weights).
    """
    return functools.reduce(jnp.promote_types, dtypes, jnp.dtype(jnp.float32))


def safe_norm(
    x: jax.Array, axis: int | tuple[int, ...] | None = None, *, eps: float = 0.0, keepdims: bool = True
) -> jax.Array:
    r"""$\max(\|x\|_2, \epsilon)$ over ``axis``, in :func:`acc_dtype`, with a finite gradient everywhere.

    The gradient is $x / \|x\|_2$ where $\|x\|_2 > \epsilon$ and 0 elsewhere (in
    particular at $x = 0$, where ``jnp.sqrt`` alone gives a NaN gradient). With
    ``eps=0`` it is the exact norm; with ``eps > 0`` it is the floored norm that
    normalizations divide by, written as ``optax.safe_norm`` does (which only
    reduces over one or two axes).

    Args:
      x: a real array.
      axis: the axes to reduce over; ``None`` for all.
      eps: the lower bound $\epsilon \ge 0$.
      keepdims: keep the reduced axes (size 1) so the result broadcasts against ``x``.

    Returns:
      The norms, in ``acc_dtype(x.dtype)``.
    """
    x = jnp.asarray(x)
    x = x.astype(acc_dtype(x.dtype))
    sq = jnp.sum(jnp.square(x), axis=axis, keepdims=keepdims)
    above = sq > eps * eps
    return jnp.where(above, jnp.sqrt(jnp.where(above, sq, 1)), jnp.asarray(eps, sq.dtype))


def axes_except(ndim: int, kept: tuple[int, ...]) -> tuple[int, ...]:
    """The axes of an ``ndim``-D array that are not in ``kept`` (normalized, non-negative axes)."""
    return tuple(d for d in range(ndim) if d not in kept)


def as_matrix(w: jax.Array) -> jax.Array:
    """``w`` as the ``(-1, w.shape[-1])`` matrix (inputs x outputs of a kernel), in :func:`acc_dtype`."""
    return w.astype(acc_dtype(w.dtype)).reshape(-1, w.shape[-1])


def group_norms(w: jax.Array, axis: int, where: str = "") -> jax.Array:
    """Euclidean norm of each group of ``w``, keeping dims so it broadcasts against ``w``.

    A group is the set of entries that share an index along ``axis``; arrays with
    ``ndim < 2`` are one group. The gradient at a zero group is 0, not NaN.
    Computed in float32, or float64 for a float64 ``w``.
    """
    if w.ndim < 2:
        return safe_norm(w, None)
    axis = check_axis("axis", axis, w.ndim, where)
    return safe_norm(w, axes_except(w.ndim, (axis,)))
