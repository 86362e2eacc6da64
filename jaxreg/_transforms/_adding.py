"""Gradient transformations that add a penalty's gradient: ``add_l1``, ``add_decayed_weights``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxreg._transforms._base import (
    count_init,
    count_next,
    masked_with_factors,
    require_params,
    scaled,
    times,
    value_at,
)
from jaxreg._typing import Mask
from jaxreg._validation import check_non_negative, is_zero


def add_l1(
    strength: optax.ScalarOrSchedule, mask: Mask = None, *, factors: Any = None
) -> optax.GradientTransformation:
    r"""Adds the L1 subgradient: $g \leftarrow g + \lambda\,\mathrm{sign}(w)$, with $\mathrm{sign}(0) = 0$.

    This is the subgradient rule $w \leftarrow w - \eta(\partial J/\partial w +
    \lambda\,\mathrm{sign}(w))$, the gradient of ``strength * l1_penalty(params)``.
    Place it **before** the learning-rate scaling, like ``optax.add_decayed_weights``:
    ``optax.chain(jaxreg.add_l1(1e-4), optax.sgd(0.1))``. It shrinks weights but
    oscillates around zero rather than reaching it: for exact zeros use
    :func:`prox_l1`.

    A concrete $\lambda$ beyond the range of a leaf's dtype (``1e39`` on float32)
    gives $\pm\infty$ where $w \ne 0$ and leaves $g$ unchanged where $w = 0$ (no
    NaN from $\infty \cdot 0$).

    Args:
      strength: $\lambda \ge 0$; a float, a JAX scalar or an optax schedule of the
        step count.
      mask: which leaves to regularize (``optax.masked`` semantics; see
        :mod:`jaxreg.masks`). Non-float leaves always pass through.
      factors: per-leaf multipliers of the strength: a pytree of non-negative numbers
        (or a prefix of one) or a callable ``params -> pytree`` such as
        :func:`jaxreg.masks.factors`; a leaf of factor 0 keeps its update exactly.
        With factors the state is a tuple of one state per distinct factor.

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, optax, jaxreg
      >>> tx = jaxreg.add_l1(0.5)  # then optax.chain(tx, optax.sgd(learning_rate))
      >>> params = {"w": jnp.array([2.0, 0.0, -1.0])}
      >>> grads = {"w": jnp.array([0.25, 0.25, 0.25])}
      >>> updates, _ = tx.update(grads, tx.init(params), params)
      >>> updates["w"].tolist()  # g + 0.5 * sign(w), sign(0) = 0
      [0.75, 0.25, -0.25]

    References:
      Tsuruoka et al., "Stochastic Gradient Descent Training for L1-regularized
      Log-linear Models with Cumulative Penalty", ACL 2009 (on the subgradient rule).
    """
    check_non_negative("strength", strength, allow_schedule=True)

    def make(strength):  # the transform with these strengths

        def update_fn(updates, state, params=None):
            require_params(params, "add_l1")
            s = value_at(strength, state.count)
            updates = jax.tree.map(
                lambda g, w: (g + times(s, jnp.sign(w).astype(g.dtype))).astype(g.dtype), updates, params
            )
            return updates, count_next(state)

        return optax.GradientTransformation(count_init, update_fn)

    return masked_with_factors(lambda f: make(scaled(strength, f)), mask, factors)


def add_decayed_weights(
    weight_decay: optax.ScalarOrSchedule = 0.0, mask: Mask = None, *, factors: Any = None
) -> optax.GradientTransformation:
    r"""Adds the L2 gradient: $g \leftarrow g + \lambda w$ (``optax.add_decayed_weights``).

    The update of optax's transform, with jaxreg's validation, mask semantics
    (non-float leaves pass through), each leaf's dtype kept under schedules, and
    the state of every jaxreg transform (:class:`CountState`). It is the gradient of ``weight_decay * l2_penalty(params)`` (note
    the 1/2 in :func:`l2_penalty`). Placed **before** the learning-rate scaling
    it is coupled L2, PyTorch's ``SGD(weight_decay=lam)``, equal to adding
    ``lam/2 * ||w||^2`` to the loss; placed after ``optax.scale_by_adam`` it is
    decoupled decay as in ``optax.adamw`` (Loshchilov and Hutter, 2019).

    A concrete $\lambda$ beyond the range of a leaf's dtype (``1e39`` on float32,
    ``1e5`` on float16) is applied without rounding it to ``inf`` first: each
    $\lambda w$ that fits the dtype is exact up to rounding, $\lambda \cdot 0 = 0$,
    and only products that do not fit overflow to $\pm\infty$.

    Args:
      weight_decay: $\lambda \ge 0$; a float, a JAX scalar or an optax schedule.
      mask: which leaves to decay (``optax.masked`` semantics), e.g.
        ``jaxreg.masks.weights_only`` to skip biases and norm scales.
      factors: per-leaf multipliers of the strength: a pytree of non-negative numbers
        (or a prefix of one) or a callable ``params -> pytree`` such as
        :func:`jaxreg.masks.factors`; a leaf of factor 0 keeps its update exactly.
        With factors the state is a tuple of one state per distinct factor.

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, optax, jaxreg
      >>> tx = jaxreg.add_decayed_weights(0.5)  # then optax.chain(tx, optax.sgd(learning_rate))
      >>> params = {"w": jnp.array([2.0, -1.0])}
      >>> updates, _ = tx.update({"w": jnp.array([0.25, 0.25])}, tx.init(params), params)
      >>> updates["w"].tolist()  # g + 0.5 * w
      [1.25, -0.25]

    References:
      Krogh and Hertz, "A Simple Weight Decay Can Improve Generalization", 1991;
      optax.add_decayed_weights.
    """
    check_non_negative("weight_decay", weight_decay, allow_schedule=True)

    def make(weight_decay):  # the transform with these strengths

        def update_fn(updates, state, params=None):
            require_params(params, "add_decayed_weights")
            if is_zero(weight_decay):  # as optax: a constant 0 adds nothing (not even 0 * inf)
                return updates, count_next(state)
            s = value_at(weight_decay, state.count)
            updates = jax.tree.map(lambda g, w: (g + times(s, w)).astype(g.dtype), updates, params)
            return updates, count_next(state)

        return optax.GradientTransformation(count_init, update_fn)

    return masked_with_factors(lambda f: make(scaled(weight_decay, f)), mask, factors)
