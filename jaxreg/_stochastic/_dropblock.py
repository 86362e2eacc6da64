"""DropBlock: dropping contiguous square regions of NHWC feature maps."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxreg._stochastic import _sampling
from jaxreg._stochastic._prologue import checked_input, result_without_sampling, zero_where_rate_is_one
from jaxreg._typing import Sampler
from jaxreg._validation import check_count, check_rate, is_concrete


def dropblock_gamma(rate: Any, block_size: int, height: int, width: int) -> Any:
    r"""DropBlock's seed probability $\gamma$ (Ghiasi et al. 2018, eq. 1; timm).

    $$\gamma = \frac{\text{rate}}{b^2}\,\frac{H W}{(H - b + 1)(W - b + 1)},\quad b = \min(\text{block\_size}, H, W),$$

    clipped to [0, 1]. (timm 1.0.23 and later clip each side on its own,
    $\min(\text{block\_size}, H)$ and $\min(\text{block\_size}, W)$: the same
    $\gamma$ when the block fits the map or the map is square.)

    ``rate`` must lie in [0, 1] (checked when it is a concrete number; a traced
    rate is clipped through $\gamma$); ``block_size``, ``height`` and ``width``
    are ints $\ge 1$. A ``ValueError`` names the argument otherwise.
    """
    check_rate("rate", rate)
    block_size = check_count("block_size", block_size, minimum=1)
    height = check_count("height", height, minimum=1)
    width = check_count("width", width, minimum=1)
    b = min(block_size, height, width)
    factor = height * width / (b * b * (height - b + 1) * (width - b + 1))
    if is_concrete(rate):
        return min(max(float(rate) * factor, 0.0), 1.0)
    return jnp.clip(jnp.asarray(rate, jnp.float32) * factor, 0.0, 1.0)


def dropblock(
    key: Any,
    x: jax.Array,
    rate: float | jax.Array,
    block_size: int,
    *,
    deterministic: bool = False,
    sampler: Sampler = None,
) -> jax.Array:
    r"""DropBlock on NHWC input: drops ``block_size x block_size`` squares of each feature map.

    1. Seeds $s_{n,h,w,c} \sim \mathrm{Bernoulli}(\gamma)$ at every position
       (independently per example and channel), $\gamma$ from
       :func:`dropblock_gamma` (the paper's formula, as timm).
    2. Each seed drops the $b \times b$ square centred on it, clipped at the
       borders (a separable max-pool with ``SAME`` padding; for an even $b$ the square
       spans $b/2$ rows/columns before the seed and $b/2 - 1$ after).
    3. Kept values are rescaled by ``size / count(kept)`` over the whole tensor
       (paper, algorithm 1, and timm), so the mean activation is preserved.

    The dropped fraction is close to ``rate`` for the rates DropBlock is used
    with (within 0.03 for rates up to 0.3 on 56x56 maps with 7x7 blocks,
    tested) and falls below it for large rates, where blocks overlap. Seeds
    are drawn per channel, as timm's ``DropBlock2d(couple_channels=False)``
    (timm's default, ``couple_channels=True``, shares one mask across the
    channels); the paper places seeds only where the whole block fits.
    ``y = x`` when deterministic; ``rate == 1`` returns zeros.

    Args:
      key: a ``jax.random`` key; may be ``None`` when deterministic or ``rate == 0``.
      x: a ``(batch, height, width, channels)`` array.
      rate: the target fraction of dropped units, in [0, 1] (may be traced).
      block_size: the side $b \ge 1$ of the dropped squares; clipped to the map
        size. ``block_size=1`` is dropout with rescaling by the realised
        keep fraction.
      deterministic: evaluation mode: returns ``x``.
      sampler: ``None`` (default ``"fast"``), ``"fast"`` or ``"jax"``.

    Returns:
      An array of ``x``'s shape and dtype.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxreg
      >>> y = jaxreg.dropblock(jax.random.key(0), jnp.ones((8, 56, 56, 4)), 0.1, 7)
      >>> round(float((y == 0).mean()), 1)
      0.1

    References:
      Ghiasi, Lin and Le, "DropBlock: A regularization method for
      convolutional networks", NeurIPS 2018, https://arxiv.org/abs/1810.12890;
      timm ``timm.layers.DropBlock2d``.
    """
    x, rate = checked_input(
        "dropblock",
        key,
        x,
        rate,
        sampler,
        deterministic=deterministic,
        signature="dropblock(key, x, rate, block_size)",
    )
    block_size = check_count("block_size", block_size, minimum=1)
    if x.ndim != 4:
        raise ValueError(f"dropblock expects NHWC input (4-D), got x of shape {x.shape}")
    if (out := result_without_sampling("dropblock", key, x, rate, deterministic)) is not None:
        return out
    if x.size == 0:  # nothing to drop (and no map to place blocks on)
        return x
    _, height, width, _ = x.shape
    b = min(block_size, height, width)
    gamma = dropblock_gamma(rate, b, height, width)
    no_seed, _ = _sampling.keep_mask(key, x.shape, 1.0 - gamma, sampler)
    # Seeds as uint8 (1 byte per element instead of 4 for float32 intermediates), and
    # the b x b max-pool as two 1-D max-pools (rows, then columns): the same result, with
    # 2b instead of b^2 comparisons per element ("SAME" pads each axis independently).
    dropped = lax.convert_element_type(~no_seed, jnp.uint8)
    for window in ((1, b, 1, 1), (1, 1, b, 1)):
        dropped = lax.reduce_window(dropped, jnp.uint8(0), lax.max, window, (1, 1, 1, 1), "SAME")
    keep = dropped == 0
    scale = x.size / jnp.maximum(jnp.sum(keep, dtype=jnp.float32), 1.0)
    y = lax.select(keep, x * scale.astype(x.dtype), jnp.zeros_like(x))
    return zero_where_rate_is_one(rate, y)
