r"""Mixup (Zhang et al., 2018): convex combinations of pairs of examples and their labels.

**Label smoothing** is ``optax.smooth_labels(labels, alpha)`` (one-hot labels in,
$(1 - \alpha)\,y + \alpha / K$ out); jaxreg does not rewrite it. It composes
with mixup: smooth the one-hot labels, then mix them (or mix, then smooth: both
are affine in the labels, so the order does not matter).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxreg._stochastic._pairing import Pairing, beta, check_pairing, mix, partners
from jaxreg._validation import check_count, check_positive


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
    ``jax.random.permutation``, as in the paper's reference implementation (and
    timm's ``Mixup(mode="batch")``): each example is mixed with a partner from the
    same batch. Small $\alpha$ (0.1 to 0.4 in the paper) keeps $\lambda$ near 0 or 1.
    ``per_example=True`` draws one $\lambda_i$ per example instead (timm's
    ``mode="elem"``); ``pairing="flip"`` (timm) or ``"roll"`` (torchvision)
    replace the permutation by a fixed pairing that is cheaper on a sharded
    batch (see `jaxreg.cutmix` for what each costs on a mesh).

    Integer labels ``y`` of shape ``(batch,)`` are one-hot encoded with
    ``num_classes`` first; float labels of shape ``(batch, ...)`` (one-hot, or
    already smoothed with ``optax.smooth_labels``) are mixed as they are. Train
    with a loss that accepts soft labels, e.g.
    ``optax.softmax_cross_entropy(logits, y_mixed)``.

    Args:
      key: a ``jax.random`` key (split internally for $\lambda$ and $\pi$).
      x: inputs, float, batch on axis 0.
      y: integer class labels ``(batch,)`` or float labels ``(batch, ...)``.
      alpha: the Beta concentration $\alpha > 0$ (float or JAX scalar).
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
