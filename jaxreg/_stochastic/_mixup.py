r"""Mixup (Zhang et al., 2018): convex combinations of pairs of examples and their labels.

**Label smoothing** is ``optax.smooth_labels(labels, alpha)`` (one-hot labels in,
$(1 - \alpha)\,y + \alpha / K$ out); jaxreg does not rewrite it. It composes
with mixup: smooth the one-hot labels, then mix them (or mix, then smooth: both
are affine in the labels, so the order does not matter).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from jaxreg._stochastic._pairing import Pairing, beta, check_pairing, mix, partners
from jaxreg._validation import check_count, check_positive, concrete_float

# The concentrations jax.random.beta draws from without NaN in float32. Its
# Gamma(a) draws for a < 1 are log G(a + 1) - E / a, E ~ Exponential(1) drawn
# from a float32 uniform, so E <= 24 ln 2 ~ 16.6: E / a overflows once
# a < 16.6 / 3.4e38 ~ 4.9e-38 (both draws overflowing give NaN), and a above the
# float32 maximum 3.4e38 is inf. The range keeps a factor 2 (3.4) from the limits.
ALPHA_MIN, ALPHA_MAX = 1e-37, 1e38


def mixup(
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
    r"""Mixup: $\tilde x = \lambda x + (1 - \lambda) x_{\pi}$, $\tilde y = \lambda y + (1 - \lambda) y_{\pi}$.

    One $\lambda \sim \mathrm{Beta}(\alpha, \alpha)$ is drawn per batch and
    $\pi$ is a uniformly random permutation of the batch (axis 0) from
    ``jax.random.permutation``, as in the paper's reference implementation
    (``torch.randperm``): each example is mixed with a partner from the same
    batch. timm's ``Mixup`` pairs the batch with its reverse (``x.flip(0)``),
    torchvision's ``MixUp`` and big_vision's ``mixup`` with itself rolled by
    one: ``pairing="flip"`` or ``"roll"`` replace the permutation by these fixed
    pairings, which are cheaper on a sharded batch (see `jaxreg.cutmix` for what
    each costs on a mesh). ``per_example=True`` draws one $\lambda_i$ per example
    instead (timm's ``mode="elem"``). Small $\alpha$ (0.1 to 0.4 in the paper)
    keeps $\lambda$ near 0 or 1.

    Integer labels ``y`` of shape ``(batch,)`` are one-hot encoded with
    ``num_classes`` first (labels in ``[0, num_classes)``); float labels of shape ``(batch, ...)`` (one-hot, or
    already smoothed with ``optax.smooth_labels``) are mixed as they are. Train
    with a loss that accepts soft labels, e.g.
    ``optax.softmax_cross_entropy(logits, y_mixed)``.

    Args:
      key: a ``jax.random`` key (split internally for $\lambda$ and $\pi$).
      x: inputs, float, batch on axis 0.
      y: integer class labels ``(batch,)`` in ``[0, num_classes)``, or float
        labels ``(batch, ...)``. Concrete integer labels outside that range
        raise ``ValueError``. Traced labels (under ``jit``) are not checked: an
        out-of-range label one-hot encodes to a row of zeros (as
        ``jax.nn.one_hot``), so a mixed label row that involves it sums to
        $\lambda$, $1 - \lambda$ or 0 instead of 1.
      alpha: the Beta concentration $\alpha$, in ``[1e-37, 1e38]`` (float or
        JAX scalar): the range in which ``jax.random.beta`` draws $\lambda$
        without NaN in float32. Concrete values outside it raise
        ``ValueError``; a traced $\alpha$ outside it gives NaN.
      num_classes: required for integer labels; for float labels, if given, it
        must equal ``y.shape[-1]``.
      deterministic: if true, no mixing: returns ``x`` and the (one-hot encoded)
        labels, so training and evaluation see labels of the same shape.
      per_example: one $\lambda$ per example instead of one per batch.
      pairing: ``"permutation"`` (random partner), ``"flip"`` (example
        ``B - 1 - i``) or ``"roll"`` (example ``i - 1``).

    Returns:
      ``(x_mixed, y_mixed)``: ``x_mixed`` has the shape and dtype of ``x``;
      ``y_mixed`` is float, ``(batch, num_classes)`` for integer labels.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxreg
      >>> x, y = jnp.arange(8.0).reshape(4, 2), jnp.array([0, 1, 2, 1])
      >>> xm, ym = jaxreg.mixup(jax.random.key(0), x, y, alpha=0.2, num_classes=3)
      >>> xm.shape, ym.shape, bool(jnp.allclose(ym.sum(axis=1), 1.0))
      ((4, 2), (4, 3), True)

    References:
      Zhang, Cisse, Dauphin and Lopez-Paz, 2018, `mixup: Beyond Empirical Risk
      Minimization <https://arxiv.org/abs/1710.09412>`_.
    """
    check_positive("alpha", alpha)
    a = concrete_float("alpha", alpha)
    if a is not None and not ALPHA_MIN <= a <= ALPHA_MAX:
        raise ValueError(
            f"alpha must lie in [{ALPHA_MIN:g}, {ALPHA_MAX:g}], the range in which jax.random.beta "
            f"draws lambda without NaN in float32, got {alpha!r}"
        )
    x, y = jnp.asarray(x), jnp.asarray(y)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must have a floating dtype to be mixed, got {x.dtype}")
    if x.ndim < 1 or y.ndim < 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must share the batch axis 0, got x of shape {x.shape} and y of shape {y.shape}"
        )
    if jnp.issubdtype(y.dtype, jnp.integer):
        if num_classes is None:
            raise ValueError("num_classes is required to one-hot encode integer labels y")
        num_classes = check_count("num_classes", num_classes, minimum=1)
        if y.ndim != 1:
            raise ValueError(f"integer labels y must have shape (batch,), got {y.shape}")
        _check_labels(y, num_classes)
        y = jax.nn.one_hot(y, num_classes, dtype=x.dtype)
    elif jnp.issubdtype(y.dtype, jnp.floating):
        if num_classes is not None and (y.ndim < 2 or y.shape[-1] != num_classes):
            raise ValueError(
                f"float labels y of shape {y.shape} do not have num_classes={num_classes} columns"
            )
    else:
        raise TypeError(f"y must hold integer class labels or float labels, got dtype {y.dtype}")
    check_pairing(pairing)
    if deterministic:
        return x, y
    key_lam, key_perm = jax.random.split(key)
    lam = beta(key_lam, alpha, x.shape[0], per_example)
    x_partner, y_partner = partners(key_perm, pairing, x, y)
    return mix(lam, x, x_partner), mix(lam, y, y_partner)


def _check_labels(y: jax.Array, num_classes: int) -> None:
    """Raises for concrete integer labels outside ``[0, num_classes)``; traced labels pass unchecked."""
    if isinstance(y, Tracer) or not y.is_fully_addressable:
        return
    labels = np.asarray(y)
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise ValueError(
            f"y must hold class labels in [0, num_classes) = [0, {num_classes}), "
            f"got {bad.size} outside it, e.g. {bad[0].item()}"
        )
