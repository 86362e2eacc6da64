"""Mask dropout with an explicit key: ``dropout``, ``spatial_dropout``, ``drop_path``, ``dropconnect``.

Every mask comes from ``_sampling.keep_mask`` (one mechanism for the whole family).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp

from jaxreg._masking import resolve_mask
from jaxreg._stochastic import _sampling
from jaxreg._stochastic._prologue import (
    MODES,
    apply_keep_mask,
    check_argument_order,
    checked_input,
    keep_prob_of,
    masked_shape,
    result_without_sampling,
)
from jaxreg._typing import Mask, Sampler
from jaxreg._validation import check_axis, check_rate, is_zero


def dropout(
    key: Any,
    x: jax.Array,
    rate: float | jax.Array,
    *,
    deterministic: bool = False,
    broadcast_dims: int | Sequence[int] = (),
    mode: Literal["inverted", "classic"] = "inverted",
    sampler: Sampler = None,
) -> jax.Array:
    r"""Dropout: zeroes each element with probability ``rate``.

    Training (``deterministic=False``), with $m_i \sim \mathrm{Bernoulli}(q)$,
    $q \approx 1 - \text{rate}$ the keep probability:

    * ``mode="inverted"`` (PyTorch, Flax, Keras): $y = m \odot x / q$; at
      evaluation $y = x$.
    * ``mode="classic"`` (Srivastava et al. 2014, the original formulation):
      $y = m \odot x$; at evaluation $y = (1 - \text{rate})\,x$.

    Both give the same expected activation at train and test time.

    ``broadcast_dims`` follows ``flax.linen.Dropout``: the mask has size 1 along
    those axes and is shared (broadcast) along them, e.g. ``broadcast_dims=(1,)``
    for one mask per sequence over a ``(batch, time, features)`` input.

    ``sampler="jax"`` draws ``jax.random.bernoulli(key, 1 - rate, mask_shape)``
    and computes ``lax.select(mask, x / (1 - rate), 0)`` in ``x``'s dtype:
    bit-identical to ``flax.linen.Dropout`` for the same key (tested on CPU; on a
    GPU the mask is the same and values may differ by one ulp, see the samplers
    guide), and equal
    in value to ``hk.dropout`` up to the sign of zero (Haiku multiplies by the
    mask, giving ``-0.0`` for dropped negatives and NaN for dropped infinities).
    The default (``None`` = ``"fast"``) hashes each element's global index with
    seed words from the key inside the fusion that applies the mask (see the
    samplers guide, ``docs/guides/samplers.md``); its keep probability is quantized to $2^{-24}$
    and the inverted scaling uses the quantized $q$, computed in float32 (or
    wider) and rounded once to ``x``'s dtype, so $E[y] = x$ up to that one
    rounding, in half precision too. (``sampler="jax"`` in bfloat16 divides by
    ``bfloat16(1 - rate)``, as Flax: a relative bias of up to $2^{-9}$.)

    A traced ``rate`` gets a zero gradient with the fast sampler (the
    quantization of $q$ is piecewise constant); the rate is a hyperparameter,
    not a parameter. Rates within $2^{-25}$ of 1 quantize to $q = 0$ and give
    zeros, as ``rate == 1``.

    Called eagerly (outside ``jit``), mask and select still run as one compiled
    kernel: the call writes only its output, as under ``jit``, and for a sharded
    ``x`` it runs sharded like ``x``.

    Args:
      key: a ``jax.random`` key (typed or legacy); may be ``None`` when
        ``deterministic`` or ``rate == 0``.
      x: the input array (any real float dtype; the dtype is preserved). An
        integer or bool ``x`` raises a ``TypeError``, as does a key passed here
        or as ``rate`` (the key comes first).
      rate: drop probability in [0, 1]; a Python float or a (traced) JAX scalar.
      deterministic: evaluation mode: no randomness, no key needed. A bool
        (Python, NumPy or a concrete JAX scalar); anything else raises a
        ``TypeError``.
      broadcast_dims: axes along which one mask value is shared: an int or a
        sequence of ints (negative ones count from the end).
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
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    x, rate = checked_input("dropout", key, x, rate, sampler, deterministic=deterministic)
    mask_shape = masked_shape(x.shape, broadcast_dims)
    if deterministic and mode == "classic" and not is_zero(rate):
        return x * jnp.asarray(keep_prob_of(rate), x.dtype)
    if (out := result_without_sampling("dropout", key, x, rate, deterministic)) is not None:
        return out
    return apply_keep_mask(key, x, rate, mask_shape, scale=mode == "inverted", sampler=sampler)


def spatial_dropout(
    key: Any,
    x: jax.Array,
    rate: float | jax.Array,
    *,
    channel_axis: int = -1,
    batch_axis: int | None = 0,
    deterministic: bool = False,
    sampler: Sampler = None,
) -> jax.Array:
    r"""Spatial (channel) dropout: zeroes whole feature maps.

    One keep decision $m_{b,c} \sim \mathrm{Bernoulli}(q)$ per (example,
    channel), shared over every other axis (the spatial ones):
    $y = m_{b,c}\, x / q$ (inverted scaling), $y = x$ when deterministic.
    Equivalent to ``dropout(..., broadcast_dims=<all but batch and channel>)``.

    Conventions: channels last by default (Keras ``SpatialDropout1D/2D/3D``,
    NHWC); PyTorch's ``Dropout1d/2d/3d`` are channels first, i.e.
    ``channel_axis=1``. ``batch_axis=None`` for an unbatched input (one
    decision per channel).

    Args:
      key: a ``jax.random`` key; may be ``None`` when deterministic or ``rate == 0``.
      x: input with a channel axis (and a batch axis unless ``batch_axis=None``).
      rate: probability of dropping a channel, in [0, 1] (may be traced).
      channel_axis: the feature-map axis.
      batch_axis: the example axis, or ``None``.
      deterministic: evaluation mode: returns ``x``.
      sampler: ``None`` (default ``"fast"``), ``"fast"`` or ``"jax"``.

    Returns:
      An array of ``x``'s shape and dtype.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxreg
      >>> y = jaxreg.spatial_dropout(jax.random.key(0), jnp.ones((2, 4, 4, 3)), 0.5)
      >>> bool(((y == 0).all(axis=(1, 2)) | (y != 0).all(axis=(1, 2))).all())
      True

    References:
      Tompson et al., "Efficient Object Localization Using Convolutional
      Networks", CVPR 2015, https://arxiv.org/abs/1411.4280; Keras
      ``SpatialDropout2D``; ``torch.nn.Dropout2d``.
    """
    x, rate = checked_input("spatial_dropout", key, x, rate, sampler, deterministic=deterministic)
    c = check_axis("channel_axis", channel_axis, x.ndim, "x")
    b = None if batch_axis is None else check_axis("batch_axis", batch_axis, x.ndim, "x")
    if b == c:
        raise ValueError(f"batch_axis and channel_axis must differ, got {batch_axis} and {channel_axis}")
    if (out := result_without_sampling("spatial_dropout", key, x, rate, deterministic)) is not None:
        return out
    shared = [d for d in range(x.ndim) if d not in (b, c)]
    return apply_keep_mask(key, x, rate, masked_shape(x.shape, shared), scale=True, sampler=sampler)


def drop_path(
    key: Any,
    x: jax.Array,
    rate: float | jax.Array,
    *,
    deterministic: bool = False,
    batch_axis: int = 0,
    scale_by_keep: bool = True,
    sampler: Sampler = None,
) -> jax.Array:
    r"""Stochastic depth (drop path): drops whole examples of a residual branch.

    One decision $m_b \sim \mathrm{Bernoulli}(q)$ per example along
    ``batch_axis``: $y = m_b\, x / q$ (or $m_b\, x$ with
    ``scale_by_keep=False``), $y = x$ when deterministic. Apply it to the
    residual branch, ``x + drop_path(key, f(x), rate)``, as timm's
    ``DropPath``; ``rate`` is the drop probability (Huang et al. parametrize by
    the survival probability $1 - \text{rate}$).

    Args:
      key: a ``jax.random`` key; may be ``None`` when deterministic or ``rate == 0``.
      x: the branch output, with an example axis.
      rate: probability of dropping an example's branch, in [0, 1] (may be traced).
      deterministic: evaluation mode: returns ``x``.
      batch_axis: the example axis.
      scale_by_keep: divide kept examples by the keep probability (timm's default).
      sampler: ``None`` (default ``"fast"``), ``"fast"`` or ``"jax"``.

    Returns:
      An array of ``x``'s shape and dtype.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxreg
      >>> y = jaxreg.drop_path(jax.random.key(0), jnp.ones((8, 3)), 0.5)
      >>> sorted(set(y.sum(axis=1).tolist())) in ([0.0, 6.0], [0.0], [6.0])
      True

    References:
      Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016,
      https://arxiv.org/abs/1603.09382; timm ``timm.layers.drop_path``.
    """
    x, rate = checked_input("drop_path", key, x, rate, sampler, deterministic=deterministic)
    b = check_axis("batch_axis", batch_axis, x.ndim, "x")
    if (out := result_without_sampling("drop_path", key, x, rate, deterministic)) is not None:
        return out
    shared = [d for d in range(x.ndim) if d != b]
    return apply_keep_mask(key, x, rate, masked_shape(x.shape, shared), scale=scale_by_keep, sampler=sampler)


def dropconnect(
    key: Any,
    params: Any,
    rate: float | jax.Array,
    *,
    mask: Mask = None,
    sampler: Sampler = None,
) -> Any:
    r"""DropConnect: drops individual weights of a params pytree.

    Each selected weight is kept with probability $q$ and scaled:
    $\tilde W = M \odot W / q$, $M_{ij} \sim \mathrm{Bernoulli}(q)$ (inverted
    scaling, so $E[\tilde W] = W$ and evaluation uses $W$ itself). Call it on
    the params inside the loss, ``loss(dropconnect(key, params, 0.5), batch)``;
    gradients flow to the kept weights. Each leaf gets its own key,
    ``jax.random.fold_in(key, i)`` with ``i`` the leaf's index in
    ``jax.tree.leaves(params)``, so masks of different leaves are independent.

    Wan et al. (2013) evaluate with a Gaussian moment-matching approximation;
    like most implementations, jaxreg uses the inverted-scaling mean instead.

    Args:
      key: a ``jax.random`` key; may be ``None`` when ``rate == 0``.
      params: a pytree of arrays.
      rate: probability of dropping a weight, in [0, 1] (may be traced).
      mask: which leaves to drop (``optax.masked`` semantics, see
        :mod:`jaxreg.masks`); non-float leaves always pass through.
      sampler: ``None`` (default ``"fast"``), ``"fast"`` or ``"jax"``.

    Returns:
      A pytree like ``params``.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxreg
      >>> p = {"w": jnp.ones((4, 4)), "b": jnp.ones(4)}
      >>> q = jaxreg.dropconnect(jax.random.key(0), p, 0.5, mask={"w": True, "b": False})
      >>> q["b"].tolist()
      [1.0, 1.0, 1.0, 1.0]

    References:
      Wan et al., "Regularization of Neural Networks using DropConnect", ICML
      2013, https://proceedings.mlr.press/v28/wan13.html.
    """
    signature = "dropconnect(key, params, rate)"
    check_argument_order("dropconnect", signature, "params", params, "rate", rate)
    rate = check_rate("rate", rate)
    _sampling.resolve_sampler(sampler)
    if key is not None:
        _sampling.check_key(key, f"; the signature is {signature}")
    if result_without_sampling("dropconnect", key, params, rate, False, one_drops_all=False) is not None:
        return params  # rate 0: no key needed (rate 1 zeroes the selected leaves below)
    assert key is not None  # result_without_sampling raised for a missing key
    leaves, treedef = jax.tree.flatten(params)
    flags = jax.tree.leaves(resolve_mask(mask, params))
    out = [
        dropout(jax.random.fold_in(key, i), leaf, rate, sampler=sampler) if keep else leaf
        for i, (leaf, keep) in enumerate(zip(leaves, flags, strict=True))
    ]
    return jax.tree.unflatten(treedef, out)
