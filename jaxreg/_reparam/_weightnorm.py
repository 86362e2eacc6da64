r"""Weight normalization $w = g \cdot v / \|v\|$ as pure functions (Salimans and Kingma, 2016).

The direction ``v`` and the scale ``g`` are both parameters; the weight the
layer uses is computed from them at every call and never stored. The Flax
wrappers ``jaxreg.linen.WeightNorm`` and ``jaxreg.nnx.WeightNorm`` keep ``v`` as
the wrapped layer's own parameter and ``g`` as a trainable parameter next to it,
initialized by :func:`weight_norm_init` so the layer's output is unchanged at
initialization.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxreg._norms import axes_except, norm_parts, reciprocal_power_of_two, safe_norm
from jaxreg._typing import FeatureAxes
from jaxreg._validation import check_axes, check_batch_dims, check_positive


def _split_axes(
    v: jax.Array, feature_axes: FeatureAxes, batch_dims: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(kept axes, reduction axes) of ``v``, normalized: the stack axes, then each item's ``feature_axes``.

    ``feature_axes`` count the axes of one item ``v[i]`` (``v.shape[batch_dims:]``);
    ``None`` keeps no axis of the item.
    """
    batch_dims = check_batch_dims(batch_dims, v, "v", item_ndim=0)
    where = "v" if batch_dims == 0 else f"each item of v after batch_dims={batch_dims}"
    item = check_axes("feature_axes", feature_axes, v.ndim - batch_dims, where) or ()
    kept = tuple(range(batch_dims)) + tuple(batch_dims + a for a in item)
    return kept, axes_except(v.ndim, kept)


def weight_norm_init(v: jax.Array, *, feature_axes: FeatureAxes = -1, batch_dims: int = 0) -> jax.Array:
    r"""The scale $g = \|v\|_2$ that makes :func:`weight_normalize` return ``v`` itself.

    One norm per index of ``feature_axes`` (taken over all other axes), so that
    a layer using $g \cdot v / \|v\|$ computes the same output as with ``v`` at
    initialization (PyTorch's ``weight_norm`` does the same; ``flax.linen.WeightNorm``
    initializes the scale to ones instead, which changes the output: flax#4138).

    Args:
      v: the direction parameter (the layer's initial weight).
      feature_axes: the axes that keep one scale each (see :func:`weight_normalize`).
      batch_dims: the number of leading axes of ``v`` that index a stack of
        weights (see :func:`weight_normalize`).

    Returns:
      ``g`` of shape ``tuple(v.shape[a] for a in feature_axes)`` (``()`` for ``None``),
      after the stack's axes ``v.shape[:batch_dims]``; float32 or wider.
    """
    kept, reduce = _split_axes(v, feature_axes, batch_dims)
    return _norms(v, reduce, tuple(v.shape[a] for a in kept))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _norms(v: jax.Array, reduce: tuple[int, ...], shape: tuple[int, ...]) -> jax.Array:
    # Jitted so that an eager call compiles one program instead of one per operation.
    return safe_norm(v, reduce, keepdims=False).reshape(shape)


def weight_normalize(
    v: jax.Array, g: jax.Array, *, feature_axes: FeatureAxes = -1, eps: float = 1e-12, batch_dims: int = 0
) -> jax.Array:
    r"""Weight normalization $w = g \cdot v / \max(\|v\|_2, \epsilon)$.

    The norm is taken over every axis except ``feature_axes`` (the output axis),
    one scale $g$ per output unit: the convention of Salimans and Kingma
    ($w = g\, v / \|v\|$ for each unit's incoming weight vector $v$) and of
    ``torch.nn.utils.weight_norm(dim=0)`` on PyTorch's ``(out, in, ...)`` weights.
    Flax stores kernels output-last (``(in, out)``, ``(h, w, in, out)``), hence
    ``feature_axes=-1`` here, as in ``flax.linen.WeightNorm``. ``feature_axes=None``
    uses one norm and one scalar ``g`` for the whole tensor (torch ``dim=None``).

    Gradients reach both ``v`` and ``g``; they are finite at $v = 0$. The norm
    is computed on ``v`` scaled by a power of two (an exact scaling), so it
    neither overflows nor underflows: float32 entries of 1e20, or 3e38 (whose
    norm is above the float32 maximum), are normalized as accurately as entries
    of 1. This costs one max-reduction over ``v`` per call.

    Args:
      v: the direction parameter.
      g: the scale parameter, of shape ``tuple(v.shape[a] for a in feature_axes)``
        after the stack's axes ``v.shape[:batch_dims]`` (as returned by
        :func:`weight_norm_init`).
      feature_axes: the axes that keep one norm and one scale each (int, tuple or
        ``None``), counted in each item of the stack when ``batch_dims > 0``.
      eps: lower bound on the norm.
      batch_dims: the number of leading axes of ``v`` that index a stack of
        independent weights (a Python int, ``0 <= batch_dims <= v.ndim``): for a
        scanned stack of kernels ``(layers, in, out)``, ``batch_dims=1`` takes the
        norms within each layer's ``(in, out)`` kernel, ``g`` of shape
        ``(layers, out)``, as a loop over the layers would. ``feature_axes``
        indexes the axes of one item ``v[i]``, so the value used for one layer
        carries over to the stack; ``batch_dims=0`` with ``feature_axes=-1``
        would instead take each unit's norm across all the layers.

    Returns:
      ``w``, of the shape and dtype of ``v``.

    Examples:
      >>> import jax.numpy as jnp, numpy as np, jaxreg
      >>> v = jnp.array([[3.0, 0.0], [4.0, 2.0]])  # column norms 5 and 2
      >>> g = jaxreg.weight_norm_init(v)
      >>> g.tolist(), bool(jnp.allclose(jaxreg.weight_normalize(v, g), v))
      ([5.0, 2.0], True)
      >>> np.asarray(jaxreg.weight_normalize(v, jnp.ones(2)), float).round(6).tolist()
      [[0.6, 0.0], [0.8, 1.0]]

    References:
      Salimans and Kingma, 2016, `Weight Normalization: A Simple
      Reparameterization to Accelerate Training of Deep Neural Networks
      <https://arxiv.org/abs/1602.07868>`_; ``torch.nn.utils.weight_norm``.
    """
    eps = check_positive("eps", eps)
    kept, reduce = _split_axes(v, feature_axes, batch_dims)
    expected = tuple(v.shape[a] for a in kept)
    if jnp.shape(g) != expected:
        stack = f"batch_dims={batch_dims} and " if batch_dims else ""
        raise ValueError(
            f"g must have shape {expected} (v.shape at {stack}feature_axes={feature_axes!r}) for v of "
            f"shape {v.shape}, got {jnp.shape(g)}; create it with weight_norm_init(v"
            + (f", batch_dims={batch_dims})" if batch_dims else ")")
        )
    broadcast = [1] * v.ndim
    for a in kept:
        broadcast[a] = v.shape[a]
    # ||v|| = p * r with p a power of two (norm_parts): v * g / max(||v||, eps) is evaluated as
    # (v / p) * (g / max(r, eps / p)), the same value with no overflow or underflow of the norm,
    # and a finite gradient at v = 0. v / p as the product by the exact 1 / p, as normalize does.
    r, p = norm_parts(v, reduce)
    scale = jnp.reshape(g, broadcast).astype(r.dtype) / jnp.maximum(r, eps / p)
    return ((v.astype(r.dtype) * reciprocal_power_of_two(p)) * scale).astype(v.dtype)
