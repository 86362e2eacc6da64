r"""Weight-decay variants of current practice: decoupled, corrected and cautious decay.

Each is an optax transform that adds a multiple of the params to the updates,
at a given place in an optax chain:

- :func:`decoupled_weight_decay` goes **after** the learning-rate scaling: its
  decay does not scale with the learning rate.
- :func:`corrected_weight_decay` and :func:`cautious_weight_decay` go where
  ``optax.adamw`` puts its decay: after the preconditioner (``scale_by_adam``),
  **before** the learning-rate scaling, so the decay is multiplied by $\eta_t$.

Their strengths are floats, JAX scalars or optax schedules, evaluated at the
step count kept in :class:`CountState` (+1 per update, as in
``optax.scale_by_learning_rate``).
"""

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
    value_at,
)
from jaxreg._typing import Mask
from jaxreg._validation import check_less_equal, check_non_negative, check_positive


def _add_scaled_params(updates, params, scale):
    """``u + scale * w`` leaf by leaf, in each update's dtype."""
    return jax.tree.map(lambda u, w: u + jnp.asarray(scale, u.dtype) * w.astype(u.dtype), updates, params)


def decoupled_weight_decay(
    weight_decay: optax.ScalarOrSchedule,
    *,
    schedule: optax.ScalarOrSchedule | None = None,
    mask: Mask = None,
    factors: Any = None,
) -> optax.GradientTransformation:
    r"""Weight decay that does not scale with the learning rate: $u \leftarrow u - \lambda\,s_t\,w$.

    Loshchilov and Hutter's Algorithm 2 (AdamW) with its schedule multiplier
    $\eta_t$: $w_t = w_{t-1} - \eta_t(\alpha\,\hat m_t / (\sqrt{\hat v_t} +
    \epsilon) + \lambda\,w_{t-1})$. The decay is $\lambda\,s_t\,w$ with
    $s_t$ = ``schedule(count)`` (1 without a schedule), whatever the learning
    rate $\alpha$. Place it **after** the learning-rate scaling, since the
    updates it sees are already the steps that ``optax.apply_updates`` adds:

    ``optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(lr),
    jaxreg.decoupled_weight_decay(1e-4, schedule=s))``

    with ``lr = lambda t: alpha * s(t)`` for Algorithm 2 exactly. By contrast
    ``optax.adamw(lr, weight_decay=lam)`` decays by $\eta_t\lambda w$: its
    decay follows the learning rate, so changing the learning rate changes the
    regularization too (the coupling Loshchilov and Hutter remove).

    Use it when the learning rate is tuned or swept separately from the decay,
    or when the decay should follow its own schedule; ``weight_decay`` is then
    per step and absolute (typical values are $10^{-5}$ to $10^{-4}$, far
    smaller than ``optax.adamw``'s).

    Args:
      weight_decay: $\lambda \ge 0$; a float, a JAX scalar or an optax schedule
        of the step count.
      schedule: the multiplier $s_t \ge 0$; ``None`` (1), a float, a JAX scalar
        or an optax schedule of the step count, e.g. the learning-rate
        schedule divided by its peak.
      mask: which leaves to decay (``optax.masked`` semantics; see
        :mod:`jaxreg.masks`). Non-float leaves always pass through.
      factors: per-leaf multipliers of the strength: a pytree of non-negative numbers
        (or a prefix of one) or a callable ``params -> pytree`` such as
        :func:`jaxreg.masks.factors`; a leaf of factor 0 keeps its update exactly.
        With factors the state is a tuple of one state per distinct factor.

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, optax, jaxreg
      >>> tx = jaxreg.decoupled_weight_decay(0.5, schedule=optax.linear_schedule(1.0, 0.5, 1))
      >>> params = {"w": jnp.array([2.0, -1.0])}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.zeros(2)}, state, params)
      >>> updates["w"].tolist()  # u - 0.5 * s_0 * w, s_0 = 1
      [-1.0, 0.5]
      >>> updates, state = tx.update({"w": jnp.zeros(2)}, state, params)
      >>> updates["w"].tolist()  # s_1 = 0.5
      [-0.5, 0.25]

    References:
      Loshchilov and Hutter, "Decoupled Weight Decay Regularization", ICLR 2019,
      Algorithm 2, https://arxiv.org/abs/1711.05101
    """
    check_non_negative("weight_decay", weight_decay, allow_schedule=True)
    if schedule is not None:
        check_non_negative("schedule", schedule, allow_schedule=True)

    def make(weight_decay):  # the transform with these strengths

        def update_fn(updates, state, params=None):
            require_params(params, "decoupled_weight_decay")
            scale = value_at(weight_decay, state.count)
            if schedule is not None:
                scale = scale * value_at(schedule, state.count)
            return _add_scaled_params(updates, params, -scale), count_next(state)

        return optax.GradientTransformation(count_init, update_fn)

    return masked_with_factors(lambda f: make(scaled(weight_decay, f)), mask, factors)


def corrected_weight_decay(
    weight_decay: optax.ScalarOrSchedule,
    learning_rate: optax.ScalarOrSchedule,
    *,
    max_learning_rate: float | jax.Array | None = None,
    mask: Mask = None,
    factors: Any = None,
) -> optax.GradientTransformation:
    r"""Weight decay scaled by the learning rate's fraction of its peak: $u \leftarrow u + \lambda\,(\eta_t / \eta_{\max})\,w$.

    Defazio's correction (AdamC): placed where ``optax.adamw`` puts its decay,
    after ``scale_by_adam`` and **before** the learning-rate scaling,

    ``optax.chain(optax.scale_by_adam(), jaxreg.corrected_weight_decay(wd, sched,
    max_learning_rate=peak), optax.scale_by_learning_rate(sched))``

    the step is $w \leftarrow w - \eta_t\,\hat m_t / (\sqrt{\hat v_t} + \epsilon)
    - \lambda\,(\eta_t^2 / \eta_{\max})\,w$: the applied decay is
    $\eta_t^2 / \eta_{\max}$ instead of AdamW's $\eta_t$. With decay
    proportional to $\eta_t$, the steady-state weight norm (of layers followed
    by a normalization) grows as the learning rate anneals and gradient norms
    rise at the end of training; the correction keeps the equilibrium norm
    independent of $\eta_t$. Use it with a decaying learning-rate schedule
    (cosine, linear); with a constant learning rate it is AdamW's decay.

    This is timm's ``corrected_weight_decay=True`` (``timm.optim.AdamWLegacy``,
    ``create_optimizer_v2("adamc")``), which multiplies the params by
    $1 - \lambda\,\eta_t^2/\eta_{\max}$ before its Adam step, with
    $\eta_{\max}$ the ``lr`` the optimizer was built with; the result is the
    same step (the test follows timm's trajectories to 1e-10).

    ``learning_rate`` must be the schedule of the ``scale_by_learning_rate``
    that follows: both are evaluated at their own step counts, which advance
    together (a transform that skips updates in between, such as
    ``optax.MultiSteps`` wrapping only part of the chain, would desynchronize
    them). Under ``optax.inject_hyperparams`` a schedule is evaluated before
    this function sees it, so pass ``max_learning_rate`` (otherwise
    $\eta_{\max} = \eta_t$ and the decay is AdamW's), or name
    ``"learning_rate"`` in ``static_args``.

    Args:
      weight_decay: $\lambda \ge 0$; a float, a JAX scalar or an optax schedule
        of the step count.
      learning_rate: $\eta_t \ge 0$; a float, a JAX scalar or the optax
        schedule of the learning-rate scaling that follows.
      max_learning_rate: $\eta_{\max} > 0$, the peak of the schedule; required
        when ``learning_rate`` is a schedule, and by default
        ``learning_rate`` itself (then $\eta_t / \eta_{\max} = 1$).
      mask: which leaves to decay (``optax.masked`` semantics; see
        :mod:`jaxreg.masks`). Non-float leaves always pass through.
      factors: per-leaf multipliers of the strength: a pytree of non-negative numbers
        (or a prefix of one) or a callable ``params -> pytree`` such as
        :func:`jaxreg.masks.factors`; a leaf of factor 0 keeps its update exactly.
        With factors the state is a tuple of one state per distinct factor.

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.

    Raises:
      ValueError: if ``learning_rate`` is a schedule and ``max_learning_rate``
        is not given, or a concrete value is negative (``max_learning_rate``,
        or ``learning_rate`` standing in for it, zero), or a concrete
        ``learning_rate`` exceeds ``max_learning_rate``.

    Examples:
      >>> import jax.numpy as jnp, optax, jaxreg
      >>> lr = optax.piecewise_constant_schedule(1.0, {1: 0.5})  # 1.0, then 0.5
      >>> tx = jaxreg.corrected_weight_decay(0.5, lr, max_learning_rate=1.0)
      >>> params = {"w": jnp.array([2.0, -1.0])}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.zeros(2)}, state, params)
      >>> updates["w"].tolist()  # u + 0.5 * (1.0 / 1.0) * w
      [1.0, -0.5]
      >>> updates, state = tx.update({"w": jnp.zeros(2)}, state, params)
      >>> updates["w"].tolist()  # u + 0.5 * (0.5 / 1.0) * w
      [0.5, -0.25]

    References:
      Defazio, "Why Gradients Rapidly Increase Near the End of Training",
      2025, https://arxiv.org/abs/2506.02285; timm's ``corrected_weight_decay``
      (``timm/optim/adamw.py``).
    """
    check_non_negative("weight_decay", weight_decay, allow_schedule=True)
    check_non_negative("learning_rate", learning_rate, allow_schedule=True)
    if max_learning_rate is None:
        if callable(learning_rate):
            raise ValueError(
                "corrected_weight_decay: learning_rate is a schedule, so max_learning_rate is required: "
                "pass max_learning_rate=<the schedule's peak value>"
            )
        check_positive("learning_rate", learning_rate)  # it is lr_max too: the ratio lr / lr_max needs > 0
        max_learning_rate = learning_rate
    else:
        check_positive("max_learning_rate", max_learning_rate)
        if not callable(learning_rate):
            check_less_equal("learning_rate", learning_rate, "max_learning_rate", max_learning_rate)
    lr_max = max_learning_rate

    def make(weight_decay):  # the transform with these strengths

        def update_fn(updates, state, params=None):
            require_params(params, "corrected_weight_decay")
            lr = value_at(learning_rate, state.count)
            scale = value_at(weight_decay, state.count) * (lr / lr_max)
            return _add_scaled_params(updates, params, scale), count_next(state)

        return optax.GradientTransformation(count_init, update_fn)

    return masked_with_factors(lambda f: make(scaled(weight_decay, f)), mask, factors)


def cautious_weight_decay(
    weight_decay: optax.ScalarOrSchedule, *, mask: Mask = None, factors: Any = None
) -> optax.GradientTransformation:
    r"""Weight decay only where the step direction and the weight agree in sign: $u \leftarrow u + \lambda\,\mathbb{1}[u \odot w \ge 0] \odot w$.

    Chen et al.'s cautious weight decay (CWD), Algorithm 1: $x_{t+1} = x_t -
    \eta_t(u_t + \lambda\,\mathbb{I}(u_t x_t \ge 0)\,x_t)$ entrywise, where
    $u_t$ is the optimizer's update direction, the one the learning rate
    multiplies and that is subtracted. In optax that is the update **before**
    the learning-rate scaling (which negates it), so place this where
    ``optax.adamw`` puts its decay:

    ``optax.chain(optax.scale_by_adam(), jaxreg.cautious_weight_decay(0.1),
    optax.scale_by_learning_rate(lr))``

    and coordinate $i$ is decayed iff $u_i w_i \ge 0$, i.e. iff the step
    $-\eta_t u_i$ already moves $w_i$ towards zero. At zero, as in the paper's
    $\ge$: where $u_i = 0$ the coordinate **is** decayed (plain decoupled
    decay); where $w_i = 0$ the added term $\lambda w_i$ is 0 anyway.
    Coordinates with $u_i w_i < 0$ pass through unchanged. The test
    compares signs ($\mathrm{sign}(u_i)\,\mathrm{sign}(w_i) \ge 0$), so a
    product that underflows to 0 does not decide it. Placed after
    ``scale_by_learning_rate`` the test would see the negated step and decay
    exactly the wrong coordinates.

    Use it in place of AdamW's (or Lion's, or Muon's) decoupled decay with the
    same $\lambda$: it keeps decay from fighting the optimizer's step, so the
    iterates converge to stationary points of the unregularized loss (no new
    hyperparameter).

    Args:
      weight_decay: $\lambda \ge 0$; a float, a JAX scalar or an optax schedule
        of the step count.
      mask: which leaves to decay (``optax.masked`` semantics; see
        :mod:`jaxreg.masks`). Non-float leaves always pass through.
      factors: per-leaf multipliers of the strength: a pytree of non-negative numbers
        (or a prefix of one) or a callable ``params -> pytree`` such as
        :func:`jaxreg.masks.factors`; a leaf of factor 0 keeps its update exactly.
        With factors the state is a tuple of one state per distinct factor.

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, optax, jaxreg
      >>> tx = jaxreg.cautious_weight_decay(0.5)
      >>> params = {"w": jnp.array([2.0, -1.0, 3.0, 0.0])}
      >>> u = {"w": jnp.array([1.0, 1.0, 0.0, -1.0])}  # e.g. scale_by_adam's output
      >>> updates, _ = tx.update(u, tx.init(params), params)
      >>> updates["w"].tolist()  # same sign: decayed; opposite: unchanged; u = 0: decayed; w = 0: + 0
      [2.0, 1.0, 1.5, -1.0]

    References:
      Chen, Li, Liang, Su, Xie, Pierse, Liang, Lao and Liu, "Cautious Weight
      Decay", 2025, https://arxiv.org/abs/2510.12402
    """
    check_non_negative("weight_decay", weight_decay, allow_schedule=True)

    def make(weight_decay):  # the transform with these strengths

        def update_fn(updates, state, params=None):
            require_params(params, "cautious_weight_decay")
            lam = value_at(weight_decay, state.count)

            def leaf(u, w):
                w = w.astype(u.dtype)
                agree = jnp.sign(u) * jnp.sign(w) >= 0
                return u + jnp.asarray(lam, u.dtype) * jnp.where(agree, w, jnp.zeros_like(w))

            return jax.tree.map(leaf, updates, params), count_next(state)

        return optax.GradientTransformation(count_init, update_fn)

    return masked_with_factors(lambda f: make(scaled(weight_decay, f)), mask, factors)
