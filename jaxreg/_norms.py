r"""The one accumulation dtype and the one gradient-safe Euclidean norm of jaxreg.

Penalties, constraints, the proximal group lasso, spectral and weight
normalization all compute in :func:`acc_dtype` and take their norms with
:func:`safe_norm`, so that low-precision leaves get float32 arithmetic and no
norm has a NaN gradient at zero.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp


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
