r"""Mixing and erasing augmentations on NHWC batches: ``cutmix``, ``mixup_or_cutmix``, ``random_erasing``.

The scalars of each draw (mixing coefficients, box centres and sizes, the
pairing permutation) come from ``jax.random`` (Beta draws have no counter-based
equivalent); the per-pixel noise of ``random_erasing(value="normal")`` comes
from the family's sampler.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax import lax

from jaxreg._norms import acc_dtype
from jaxreg._stochastic import _sampling
from jaxreg._stochastic._mixup import mixup
from jaxreg._stochastic._pairing import Pairing, beta, check_pairing, mix, partners, per_example
from jaxreg._stochastic._prologue import require_key
from jaxreg._typing import Sampler
from jaxreg._validation import check_less_equal, check_ndim, check_positive, check_rate, is_zero

ERASE_VALUES = ("zeros", "normal")
ERASE_ATTEMPTS = 10  # torchvision's and timm's number of tries for a box that fits


def _nhwc_batch(key: Any, x: Any, y: Any, alpha: Any, num_classes: int | None) -> tuple[jax.Array, jax.Array]:
    """``x`` as a float NHWC array and ``y`` as float labels: mixup's checks and one-hot encoding."""
    x = jnp.asarray(x)
    check_ndim("x", x, 4)
    return mixup(key, x, y, alpha, num_classes=num_classes, deterministic=True)  # no mixing: checks only


def _box_mask(
    top: jax.Array, bottom: jax.Array, left: jax.Array, right: jax.Array, h: int, w: int
) -> jax.Array:
    """``[top, bottom) x [left, right)`` as a boolean ``(batch or 1, h, w, 1)`` mask (bounds per example or scalar)."""
    rows = lax.broadcasted_iota(jnp.int32, (1, h, w, 1), 1)
    cols = lax.broadcasted_iota(jnp.int32, (1, h, w, 1), 2)

    def b(v: jax.Array) -> jax.Array:
        return per_example(jnp.atleast_1d(v), 4)

    return (b(top) <= rows) & (rows < b(bottom)) & (b(left) <= cols) & (cols < b(right))


def cutmix_box(
    lam: jax.Array, u_y: jax.Array, u_x: jax.Array, h: int, w: int
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    r"""timm's CutMix box for ``lam`` and centre uniforms ``u_y, u_x`` in [0, 1); returns ``(top, bottom, left, right, lam_c)``.

    Side $c_h = \lfloor H \sqrt{1 - \lambda} \rfloor$, centre
    $y_c = \lfloor u_y H \rfloor$ (likewise for the width); rows
    $[\mathrm{clip}(y_c - \lfloor c_h / 2 \rfloor),\ \mathrm{clip}(y_c + \lceil c_h / 2 \rceil))$
    clipped to $[0, H]$; $\lambda_c = 1 - \text{box area} / (H W)$.
    """
    ratio = jnp.sqrt(1.0 - jnp.asarray(lam, jnp.float32))
    cut_h, cut_w = jnp.floor(h * ratio).astype(jnp.int32), jnp.floor(w * ratio).astype(jnp.int32)
    cy = jnp.minimum(jnp.floor(u_y * h).astype(jnp.int32), h - 1)
    cx = jnp.minimum(jnp.floor(u_x * w).astype(jnp.int32), w - 1)
    top, bottom = jnp.clip(cy - cut_h // 2, 0, h), jnp.clip(cy + (cut_h + 1) // 2, 0, h)
    left, right = jnp.clip(cx - cut_w // 2, 0, w), jnp.clip(cx + (cut_w + 1) // 2, 0, w)
    lam_c = 1.0 - ((bottom - top) * (right - left)).astype(jnp.float32) / (h * w)
    return top, bottom, left, right, lam_c


@functools.partial(jax.jit, static_argnames=("per_example_lam", "pairing"))
def _mix_or_cut(
    key: jax.Array,
    x: jax.Array,
    y: jax.Array,
    *,
    mixup_alpha: Any,
    cutmix_alpha: Any,
    switch_prob: Any,
    per_example_lam: bool,
    pairing: Pairing,
) -> tuple[jax.Array, jax.Array]:
    """CutMix with probability ``switch_prob`` (per batch or per example), else mixup (if ``mixup_alpha``).

    Jitted so that eager calls run as one compiled program (the hyperparameters
    are traced: one compilation serves every value); under an outer ``jit`` it is inlined.
    """
    batch, h, w, _ = x.shape
    k_switch, k_mix, k_cut, k_box, k_pair = jax.random.split(key, 5)
    shape = (batch,) if per_example_lam else ()
    u_y, u_x = jax.random.uniform(k_box, (2, *shape))
    top, bottom, left, right, lam_cut = cutmix_box(
        beta(k_cut, cutmix_alpha, batch, per_example_lam), u_y, u_x, h, w
    )
    x_partner, y_partner = partners(k_pair, pairing, x, y)
    x_out = jnp.where(_box_mask(top, bottom, left, right, h, w), x_partner, x)
    lam = lam_cut
    if mixup_alpha is not None:
        use_cut = jax.random.bernoulli(k_switch, switch_prob, shape)
        lam_mix = beta(k_mix, mixup_alpha, batch, per_example_lam)
        x_out = jnp.where(per_example(use_cut, 4), x_out, mix(lam_mix, x, x_partner))
        lam = jnp.where(use_cut, lam_cut, lam_mix)
    return x_out, mix(lam, y, y_partner)


def cutmix(
    key: jax.Array,
    x: jax.Array,
    y: jax.Array,
    alpha: float | jax.Array,
    *,
    num_classes: int | None = None,
    deterministic: bool = False,
    per_example: bool = False,
    pairing: Pairing = "permutation",
) -> tuple[jax.Array, jax.Array]:
    r"""CutMix: paste a box of a partner example; mix the labels by the pasted area.

    On an NHWC batch, with $\lambda \sim \mathrm{Beta}(\alpha, \alpha)$ and the
    partner $\pi(i)$ (see ``pairing``), timm's box (``rand_bbox``): sides
    $c_h = \lfloor H \sqrt{1 - \lambda} \rfloor$, $c_w = \lfloor W \sqrt{1 - \lambda} \rfloor$
    around a uniform centre $(y_c, x_c) \in \{0..H-1\} \times \{0..W-1\}$, rows
    $[y_c - \lfloor c_h/2 \rfloor, y_c + \lceil c_h/2 \rceil)$ and columns likewise,
    clipped to the image. Then

    $$\tilde x_i = M \odot x_{\pi(i)} + (1 - M) \odot x_i,\qquad
      \tilde y_i = \lambda_c\, y_i + (1 - \lambda_c)\, y_{\pi(i)},\qquad
      \lambda_c = 1 - \frac{|\text{box}|}{H W},$$

    the label weight corrected to the area actually pasted after clipping
    (timm's ``correct_lam=True``; torchvision's ``CutMix`` also corrects, with a
    box of half-side $\lfloor \tfrac12 \sqrt{1-\lambda}\, W \rfloor$ instead).
    One $\lambda$ and box per batch (timm ``mode="batch"``, torchvision, Keras)
    or, with ``per_example=True``, one per example (timm ``mode="elem"``).

    Pairing, and what it costs on a batch-sharded array (compiled on 8
    simulated devices, tested):

    * ``"permutation"``: a random partner (``jax.random.permutation``); a
      data-dependent gather, so every device receives the whole batch (an
      all-gather of it with automatic sharding; with explicit sharding the
      gather raises ``ShardingTypeError``);
    * ``"flip"``: partner $B - 1 - i$ (timm): one collective permute of
      whole shards; also works with explicit sharding;
    * ``"roll"``: partner $i - 1$ (torchvision): one example sent to each
      neighbouring device; with explicit sharding ``jnp.roll`` raises.

    ``"flip"`` and ``"roll"`` pair by position: shuffle the data first.

    Args:
      key: a ``jax.random`` key (``None`` when ``deterministic``).
      x: images ``(batch, height, width, channels)``, float.
      y: integer class labels ``(batch,)`` or float labels ``(batch, ...)``.
      alpha: the Beta concentration $\alpha > 0$ (1.0 in the CutMix paper).
      num_classes: required for integer labels (as in `jaxreg.mixup`).
      deterministic: if true, no mixing: ``x`` and the (one-hot) labels.
      per_example: one $\lambda$ and box per example instead of per batch.
      pairing: ``"permutation"``, ``"flip"`` or ``"roll"``.

    Returns:
      ``(x_mixed, y_mixed)``, of the shapes of ``x`` and the (one-hot) labels.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxreg
      >>> x, y = jnp.zeros((2, 4, 4, 1)).at[1].set(1.0), jnp.array([0, 1])
      >>> xm, ym = jaxreg.cutmix(jax.random.key(0), x, y, 1.0, num_classes=2, pairing="flip")
      >>> bool(jnp.allclose(ym[0, 1], xm[0].mean()))  # label weight = pasted area
      True

    References:
      Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers
      with Localizable Features", ICCV 2019, https://arxiv.org/abs/1905.04899;
      timm ``timm.data.Mixup``; torchvision ``transforms.v2.CutMix``.
    """
    check_positive("alpha", alpha)
    check_pairing(pairing)
    x, y = _nhwc_batch(key, x, y, alpha, num_classes)
    if deterministic:
        return x, y
    require_key(key, "cutmix")
    return _mix_or_cut(
        key,
        x,
        y,
        mixup_alpha=None,
        cutmix_alpha=alpha,
        switch_prob=1.0,
        per_example_lam=per_example,
        pairing=pairing,
    )


def mixup_or_cutmix(
    key: jax.Array,
    x: jax.Array,
    y: jax.Array,
    *,
    mixup_alpha: float | jax.Array,
    cutmix_alpha: float | jax.Array,
    switch_prob: float | jax.Array = 0.5,
    num_classes: int | None = None,
    deterministic: bool = False,
    per_example: bool = False,
    pairing: Pairing = "permutation",
) -> tuple[jax.Array, jax.Array]:
    r"""CutMix with probability ``switch_prob``, mixup otherwise (timm's ``Mixup`` with both alphas).

    With $s \sim \mathrm{Bernoulli}(\text{switch\_prob})$: if $s$, `jaxreg.cutmix`
    with $\lambda \sim \mathrm{Beta}(\alpha_c, \alpha_c)$; else `jaxreg.mixup`
    with $\lambda \sim \mathrm{Beta}(\alpha_m, \alpha_m)$, both against the same
    partner. One switch and $\lambda$ per batch (timm ``mode="batch"``;
    torchvision's ``RandomChoice([MixUp(), CutMix()])``) or, with
    ``per_example=True``, per example (timm ``mode="elem"``). Both candidates
    are computed and one is selected (elementwise work, no branch), so the
    switch may be traced.

    Args:
      key: a ``jax.random`` key (``None`` when ``deterministic``).
      x: images ``(batch, height, width, channels)``, float.
      y: integer class labels ``(batch,)`` or float labels ``(batch, ...)``.
      mixup_alpha: mixup's Beta concentration $\alpha_m > 0$ (timm: 0.8).
      cutmix_alpha: CutMix's Beta concentration $\alpha_c > 0$ (timm: 1.0).
      switch_prob: the probability of CutMix, in [0, 1].
      num_classes: required for integer labels (as in `jaxreg.mixup`).
      deterministic: if true, no mixing: ``x`` and the (one-hot) labels.
      per_example: one switch and $\lambda$ per example instead of per batch.
      pairing: ``"permutation"``, ``"flip"`` or ``"roll"`` (costs in `jaxreg.cutmix`).

    Returns:
      ``(x_mixed, y_mixed)``, of the shapes of ``x`` and the (one-hot) labels.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxreg
      >>> x, y = jnp.ones((8, 4, 4, 3)), jnp.arange(8) % 3
      >>> xm, ym = jaxreg.mixup_or_cutmix(
      ...     jax.random.key(0), x, y, mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=3, per_example=True
      ... )
      >>> xm.shape, ym.shape, bool(jnp.allclose(ym.sum(axis=1), 1.0))
      ((8, 4, 4, 3), (8, 3), True)

    References:
      Yun et al., "CutMix", ICCV 2019, https://arxiv.org/abs/1905.04899;
      Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018,
      https://arxiv.org/abs/1710.09412; timm ``timm.data.Mixup``.
    """
    check_positive("mixup_alpha", mixup_alpha)
    check_positive("cutmix_alpha", cutmix_alpha)
    check_rate("switch_prob", switch_prob)
    check_pairing(pairing)
    x, y = _nhwc_batch(key, x, y, mixup_alpha, num_classes)
    if deterministic:
        return x, y
    require_key(key, "mixup_or_cutmix")
    return _mix_or_cut(
        key,
        x,
        y,
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
        switch_prob=switch_prob,
        per_example_lam=per_example,
        pairing=pairing,
    )


def erase_box(
    u_area: jax.Array,
    u_ratio: jax.Array,
    u_top: jax.Array,
    u_left: jax.Array,
    h: int,
    w: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    r"""torchvision's ``RandomErasing.get_params`` from uniforms in [0, 1); returns ``(top, left, bh, bw, fits)``.

    Per attempt: area $A = H W\,(s_0 + (s_1 - s_0) u)$, aspect
    $r = \exp(\ln r_0 + (\ln r_1 - \ln r_0) u')$, $b_h = \mathrm{round}(\sqrt{A r})$,
    $b_w = \mathrm{round}(\sqrt{A / r})$; the first attempt (last axis) with
    $b_h < H$ and $b_w < W$ is used, placed at
    $\lfloor u_t (H - b_h + 1) \rfloor$, $\lfloor u_l (W - b_w + 1) \rfloor$.
    ``fits`` is false when no attempt fits (then nothing is erased).
    """
    area = (h * w) * (scale[0] + (scale[1] - scale[0]) * u_area)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = jnp.exp(log_lo + (log_hi - log_lo) * u_ratio)
    bh = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    bw = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    ok = (bh < h) & (bw < w)
    first = jnp.argmax(ok, axis=-1)[..., None]
    bh = jnp.take_along_axis(bh, first, axis=-1)[..., 0]
    bw = jnp.take_along_axis(bw, first, axis=-1)[..., 0]
    top = jnp.minimum(jnp.floor(u_top * (h - bh + 1)).astype(jnp.int32), h - bh)
    left = jnp.minimum(jnp.floor(u_left * (w - bw + 1)).astype(jnp.int32), w - bw)
    return top, left, bh, bw, ok.any(axis=-1)


def random_erasing(
    key: Any,
    x: jax.Array,
    *,
    probability: float | jax.Array = 0.25,
    scale: tuple[float, float] = (0.02, 1 / 3),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: Literal["zeros", "normal"] | float = "zeros",
    deterministic: bool = False,
    sampler: Sampler = None,
) -> jax.Array:
    r"""Random erasing (Cutout): blanks one random box per example, with probability ``probability``.

    Each example of an NHWC batch, independently, with probability
    ``probability``: torchvision's ``RandomErasing`` box (up to 10 attempts of
    area $A = H W \cdot U(\text{scale})$ and aspect
    $r = \exp U(\ln \text{ratio})$, sides $\mathrm{round}(\sqrt{A r})$ by
    $\mathrm{round}(\sqrt{A / r})$, the first that fits strictly inside the
    image, at a uniform position; none fits: the example is unchanged) is set
    to ``value``: ``"zeros"`` (torchvision's default, timm's ``mode="const"``,
    Cutout), ``"normal"`` (a standard normal per pixel and channel, timm's
    ``mode="pixel"``, torchvision's ``value="random"``; meant for normalized
    inputs), or a number. ``x`` when deterministic or for ``probability == 0``
    (no key needed). timm's default probability in its training script is
    0.25, torchvision's 0.5.

    Args:
      key: a ``jax.random`` key; may be ``None`` when deterministic or
        ``probability == 0``.
      x: images ``(batch, height, width, channels)``.
      probability: the probability of erasing each example, in [0, 1] (may be traced).
      scale: the range of the erased area as a fraction of the image, ``0 < lo <= hi <= 1``.
      ratio: the range of the box's aspect ratio (height / width), ``0 < lo <= hi``.
      value: ``"zeros"``, ``"normal"`` or a number.
      deterministic: evaluation mode: returns ``x``.
      sampler: the sampler of the ``"normal"`` noise (``None``: library default).

    Returns:
      An array of ``x``'s shape and dtype.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxreg
      >>> y = jaxreg.random_erasing(jax.random.key(0), jnp.ones((64, 16, 16, 3)), probability=0.5)
      >>> erased = (y == 0).any(axis=(1, 2, 3))
      >>> 16 < int(erased.sum()) < 48
      True

    References:
      Zhong et al., "Random Erasing Data Augmentation", AAAI 2020,
      https://arxiv.org/abs/1708.04896; DeVries and Taylor, "Improved
      Regularization of Convolutional Neural Networks with Cutout", 2017,
      https://arxiv.org/abs/1708.04552; torchvision ``transforms.RandomErasing``;
      timm ``timm.data.RandomErasing``.
    """
    check_rate("probability", probability)
    for name, pair in (("scale", scale), ("ratio", ratio)):
        if len(pair) != 2:
            raise ValueError(f"{name} must be a pair (lo, hi), got {pair!r}")
        check_positive(f"{name}[0]", pair[0])
        check_less_equal(f"{name}[0]", pair[0], f"{name}[1]", pair[1])
    check_rate("scale[1]", scale[1])
    if not (value in ERASE_VALUES or (isinstance(value, (int, float)) and not isinstance(value, bool))):
        raise ValueError(f"value must be one of {ERASE_VALUES} or a number, got {value!r}")
    _sampling.resolve_sampler(sampler)
    x = jnp.asarray(x)
    check_ndim("x", x, 4)
    if deterministic or is_zero(probability):
        return x
    require_key(key, "random_erasing")
    return _erase(key, x, probability, scale=tuple(scale), ratio=tuple(ratio), value=value, sampler=sampler)


@functools.partial(jax.jit, static_argnames=("scale", "ratio", "value", "sampler"))
def _erase(
    key: Any,
    x: jax.Array,
    probability: Any,
    *,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    value: Any,
    sampler: Sampler,
) -> jax.Array:
    """The sampling part of `random_erasing`, jitted (one compiled program for eager calls)."""
    batch, h, w, _ = x.shape
    k_apply, k_box, k_noise = jax.random.split(key, 3)
    u_area, u_ratio = jax.random.uniform(k_box, (2, batch, ERASE_ATTEMPTS))
    u_top, u_left = jax.random.uniform(jax.random.fold_in(k_box, 1), (2, batch))
    top, left, bh, bw, fits = erase_box(u_area, u_ratio, u_top, u_left, h, w, scale, ratio)
    erase = jax.random.bernoulli(k_apply, probability, (batch,)) & fits
    box = _box_mask(jnp.where(erase, top, 0), jnp.where(erase, top + bh, 0), left, left + bw, h, w)
    if value == "normal":
        fill = _sampling.normal(k_noise, x.shape, acc_dtype(x.dtype), sampler).astype(x.dtype)
    else:
        fill = jnp.full_like(x, 0.0 if value == "zeros" else value)
    return jnp.where(box, fill, x)
