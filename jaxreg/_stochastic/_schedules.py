r"""Rates over depth and over training: ``drop_path_rates``, ``early_dropout``, ``late_dropout``.

Per-layer rates in a stacked model
----------------------------------
Vision transformers give block $l$ of $L$ the drop-path rate
$r_l = r \cdot l / (L - 1)$ (`drop_path_rates`). When the blocks are one
stacked module (``nn.scan``, ``nnx.vmap`` + ``nnx.scan``, or plain
``jax.lax.scan`` over stacked parameters), the rate is a different number
per layer, so it must travel *with the layers* as an array, like their
parameters, and each layer must get its own key:

* functional: ``lax.scan`` over ``(stacked_params, rates, jax.random.split(key, L))``
  and call ``jaxreg.drop_path(key_l, branch, rate_l)``: every op of the family
  accepts a traced rate.
* ``jaxreg.nnx``: build the stack with ``nnx.split_rngs(splits=L)`` and
  ``nnx.vmap`` over ``(rates, rngs)``, passing the rate to the module as a
  JAX array: the NNX modules store an array strength as pytree data, so
  ``nnx.vmap`` stacks it and ``nnx.scan`` hands each layer its own slice (and
  its own rng stream).
* ``jaxreg.equinox``: build the stack with ``eqx.filter_vmap`` over the rates
  (the strength is a regular field, so it is stacked), then ``lax.scan`` over
  the array part (``eqx.partition(stack, eqx.is_array)``) and one key per layer.
* ``jaxreg.linen``: pass the rates as a scanned input of ``nn.scan``
  (``in_axes=0``) with ``split_rngs={"params": True, "dropout": True}`` and
  build ``DropPath(rate)`` inside the scanned block.

What fails: giving an NNX module a Python-float attribute that ``nnx.vmap``
sees as a traced value. ``flax.nnx.Dropout(rate)`` built under ``nnx.vmap``
with ``rate`` from an array stores the ``BatchTracer`` as a static attribute:
the trace ends with the ``vmap``, and the first call raises
``UnexpectedTracerError`` ("a BatchTracer ... escaped"). Equally, a Python
list of rates indexed by the scan's layer counter cannot work: the counter is
traced.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreg._validation import check_count, check_rate, is_concrete

DEPTH_KINDS = ("linear", "constant")
EARLY_MODES = ("constant", "linear")


def drop_path_rates(
    rate: float | jax.Array, depth: int, *, kind: Literal["linear", "constant"] = "linear"
) -> jax.Array:
    r"""Per-block drop-path rates for a network of ``depth`` residual blocks.

    ``kind="linear"`` (timm's ``calculate_drop_path_rates``, big_vision, DeiT,
    Swin): $r_l = \text{rate} \cdot l / (L - 1)$ for $l = 0, \dots, L - 1$, from 0
    at the first block to ``rate`` at the last ($r_0 = 0$ when $L = 1$, as
    ``torch.linspace(0, rate, 1)``). ``kind="constant"``: $r_l = \text{rate}$
    (Huang et al.'s "uniform" rule).

    Feed the array to a stacked model as described in this module's
    documentation (the rates travel with the layers; one key per layer).

    Args:
      rate: the largest rate, in [0, 1] (may be traced).
      depth: the number of blocks $L \ge 1$ (a Python int: it is a shape).
      kind: ``"linear"`` or ``"constant"``.

    Returns:
      A float32 array of shape ``(depth,)``.

    Examples:
      >>> import jaxreg
      >>> jaxreg.drop_path_rates(0.1, 5).tolist()  # doctest: +ELLIPSIS
      [0.0, 0.025..., 0.05..., 0.075..., 0.1...]
      >>> jaxreg.drop_path_rates(0.2, 3, kind="constant").tolist()  # doctest: +ELLIPSIS
      [0.2..., 0.2..., 0.2...]

    References:
      Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016,
      https://arxiv.org/abs/1603.09382; timm ``timm.layers.calculate_drop_path_rates``.
    """
    check_rate("rate", rate)
    depth = check_count("depth", depth, minimum=1)
    if kind not in DEPTH_KINDS:
        raise ValueError(f"kind must be one of {DEPTH_KINDS}, got {kind!r}")
    if kind == "constant":
        return jnp.full((depth,), rate, jnp.float32)
    if is_concrete(rate):  # float64 linspace, rounded once, as torch.linspace's values
        return jnp.asarray(np.linspace(0.0, float(rate), depth), jnp.float32)
    return jnp.asarray(rate, jnp.float32) * jnp.asarray(np.linspace(0.0, 1.0, depth), jnp.float32)


def early_dropout(
    rate: float | jax.Array, cutoff_step: int, *, mode: Literal["constant", "linear"] = "constant"
) -> optax.Schedule:
    r"""Early dropout (Liu et al. 2023): dropout only in the first ``cutoff_step`` steps.

    An optax schedule of the rate, evaluated at the step count $t$:

    * ``mode="constant"``: $r(t) = \text{rate}$ for $t < T$, 0 for $t \ge T$;
    * ``mode="linear"``: $r(t) = \text{rate}\,(1 - t / T)$ for $t < T$, 0 for
      $t \ge T$ (``optax.linear_schedule(rate, 0, T)``),

    with $T$ = ``cutoff_step``. Liu et al. find early dropout helps models that
    underfit (it lowers the variance of the early mini-batch gradients). Pass the
    schedule's value as the (traced) rate of any op of the family, e.g.
    ``jaxreg.dropout(key, x, schedule(step))`` inside the jitted train step.

    Args:
      rate: the rate before the cutoff, in [0, 1] (may be a JAX scalar).
      cutoff_step: $T \ge 1$, the first step without dropout.
      mode: ``"constant"`` or ``"linear"``.

    Returns:
      A schedule ``step -> rate`` (``optax.Schedule``).

    Examples:
      >>> import jaxreg
      >>> s = jaxreg.early_dropout(0.1, 100, mode="linear")
      >>> [round(float(s(t)), 3) for t in (0, 50, 100, 200)]
      [0.1, 0.05, 0.0, 0.0]

    References:
      Liu et al., "Dropout Reduces Underfitting", ICML 2023,
      https://arxiv.org/abs/2303.01500.
    """
    check_rate("rate", rate)
    cutoff_step = check_count("cutoff_step", cutoff_step, minimum=1)
    if mode not in EARLY_MODES:
        raise ValueError(f"mode must be one of {EARLY_MODES}, got {mode!r}")
    if mode == "linear":
        return optax.linear_schedule(rate, 0.0, cutoff_step)
    return optax.join_schedules([optax.constant_schedule(rate), optax.constant_schedule(0.0)], [cutoff_step])


def late_dropout(rate: float | jax.Array, start_step: int) -> optax.Schedule:
    r"""Late dropout (Liu et al. 2023): no dropout before ``start_step``, then ``rate``.

    An optax schedule: $r(t) = 0$ for $t < S$ and $r(t) = \text{rate}$ for
    $t \ge S$, $S$ = ``start_step``. Liu et al. use it against overfitting in
    models that already fit well. ``start_step=0`` is standard dropout.

    Args:
      rate: the rate from ``start_step`` on, in [0, 1] (may be a JAX scalar).
      start_step: $S \ge 0$, the first step with dropout.

    Returns:
      A schedule ``step -> rate`` (``optax.Schedule``).

    Examples:
      >>> import jaxreg
      >>> s = jaxreg.late_dropout(0.3, 10)
      >>> [round(float(s(t)), 3) for t in (0, 9, 10, 1000)]
      [0.0, 0.0, 0.3, 0.3]

    References:
      Liu et al., "Dropout Reduces Underfitting", ICML 2023,
      https://arxiv.org/abs/2303.01500.
    """
    check_rate("rate", rate)
    start_step = check_count("start_step", start_step, minimum=0)
    return optax.join_schedules([optax.constant_schedule(0.0), optax.constant_schedule(rate)], [start_step])
