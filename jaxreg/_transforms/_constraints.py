r"""Weight constraints (Keras's ``keras.constraints``) as optax transforms placed **last**.

A constraint is a projection $P$ applied after every step. With $z = w + u$ the
plain step (``u`` already scaled by the learning rate), each transform returns
the update $P(z) - w$, so that ``optax.apply_updates`` lands on $P(z)$: exactly
what Keras does when it calls ``kernel_constraint`` on the variable after the
optimizer step. They are built by the same mechanism as the proximal steps
(:func:`jaxreg.prox_l1`), and so go at the very end of the chain::

    optax.chain(optax.sgd(lr, momentum=0.9), jaxreg.max_norm(3.0, mask=jaxreg.masks.weights_only))

**Axes: the axes the norm runs over, the opposite of the group lasso's.**
``axis`` names the axes the norm is taken over, as in Keras: one norm per index
of the remaining axes. On a Dense kernel ``(in, out)``, ``axis=0`` constrains
each output unit's incoming weight vector ``w[:, j]`` (the max-norm of
Srivastava et al.); on a conv kernel ``(h, w, in, out)``, ``axis=(0, 1, 2)``
constrains each filter. ``axis=None`` takes one norm over the whole leaf. The
group lasso (:func:`jaxreg.group_lasso_penalty`, :func:`jaxreg.prox_group_lasso`)
uses ``axis`` the other way round, for the axes that *index* its groups:
:func:`max_norm` tabulates both for typical values.

**Biases.** Keras applies a constraint per variable (``kernel_constraint`` and
``bias_constraint`` are separate). Here the constraint applies to every float
leaf that ``mask`` selects, with the same Keras semantics: with ``mask=None``
and ``axis=0``, a 1-D bias is constrained as a single vector, and a leaf for
which ``axis`` is out of range (a bias under ``axis=(0, 1, 2)``) raises a
``ValueError`` that names ``axis`` and the leaf. To constrain kernels only, as
``kernel_constraint=`` does, pass ``mask=jaxreg.masks.weights_only``.

**Epsilon.** Keras divides by ``norm + epsilon`` (``epsilon = 1e-7``), which
shrinks every vector slightly. Here the rescaling factor is ``desired /
max(norm, 1e-7)``, and exactly 1 where the norm is already feasible: the result
differs from Keras's by a relative ``1e-7 / norm``, a zero vector stays zero
and nothing divides by zero. Norms are computed in float32 for low-precision
leaves (float64 for float64 leaves), on values scaled by a power of two (an
exact scaling), so they neither overflow nor underflow: float32 or bfloat16
entries of 1e20, or a norm above the dtype's largest value, are projected as
accurately as entries of 1. The scaling costs one max-reduction per norm
before the sum of squares, except on one CPU device for leaves of at least
$2^{20}$ entries, whose squares are summed once unscaled and scaled only where
that sum could have overflowed or underflowed (see the performance notes).

**What is exact, and what holds up to rounding.** Write $N$ for the number of
entries per norm, $\delta = 2^{-24}$ for the float32 arithmetic (also used for
float16 and bfloat16 leaves; $2^{-53}$ for float64 leaves) and $\delta_w$ for the
unit roundoff of the params' dtype ($2^{-24}$ float32, $2^{-11}$ float16,
$2^{-8}$ bfloat16, $2^{-53}$ float64).

- *Feasible vectors are exact.* A vector whose computed norm is already feasible
  is returned bit for bit, so params that satisfy the constraint and receive a
  zero update do not move.
- *Idempotent up to rounding only.* A projected vector has norm $d(1 + \eta)$
  with $|\eta| \le (N/2 + 3)\delta$ (to first order in $\delta$; plus $\delta_w$ for a
  float16/bfloat16 leaf), $d$ the target norm, so it may be infeasible by that
  much: projecting it again moves each entry by at most a relative $(N + 6)\delta$
  (plus $2\delta_w$ for a float16/bfloat16 leaf).
- *Not idempotent below the floor.* A norm $n < 10^{-7}$ is scaled by
  $d / 10^{-7}$, not $d / n$: :func:`unit_norm` lands on norm $n / 10^{-7} < 1$
  and a second step on norm 1 (:func:`min_max_norm` likewise, towards
  ``min_value``).
- *Landing.* The update $P(z) - w$ is rounded to the params' dtype and
  ``optax.apply_updates`` adds it to $w$ with one more rounding, so each entry
  lands within $\delta_w(|w| + 2|P(z)|)(1 + \delta_w)$ of $P(z)$. When $|w|$ is many
  orders of magnitude above $|P(z)|$ this is up to an ulp of $w$:
  ``max_norm(1e-4)`` on the column ``[3000, 4000]`` lands on ``[0, 0]`` (float32
  spacing at 4000 is 2.4e-4), not on ``[6e-5, 8e-5]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxreg._norms import acc_dtype, norm_parts_fast, reciprocal_power_of_two
from jaxreg._transforms._generic import build_projected
from jaxreg._typing import Axis, Mask
from jaxreg._validation import (
    check_axes,
    check_less_equal,
    check_non_negative,
    check_positive,
    check_rate,
)

EPSILON = 1e-7  # keras.backend.epsilon()


def _leaf_axes(axis: Axis, z: jax.Array) -> tuple[int, ...] | None:
    try:
        return check_axes("axis", axis, z.ndim)
    except ValueError as e:
        if z.ndim >= 2:  # a kernel: the axis itself is wrong, the mask would not help
            raise
        raise ValueError(
            f"{e}; constraints apply to every selected leaf, pass mask=jaxreg.masks.weights_only "
            "to constrain kernels only"
        ) from None


def rescale_norms(z: jax.Array, axis: Axis, desired_norm, zero_ok=None) -> tuple[jax.Array, jax.Array]:
    r"""Rescales ``z`` so that each norm $n$ over ``axis`` becomes $d$ = ``desired_norm(r, p)``.

    Returns $z \cdot d / \max(n, \epsilon)$ with $n = \|z\|_2$ over ``axis``
    (kept dims), and exactly $z$ where $d = n$. The norm is passed in parts, $n
    = p\,r$ with $p$ a power of two (:func:`jaxreg._norms.norm_parts_fast`: $p = 1$
    when one pass over ``z`` gives the norms exactly), and the result is
    evaluated as $(z / p) \cdot d / \max(r, \epsilon / p)$: the same value, with
    no overflow for any finite ``z``, even where $n$ itself exceeds the dtype's
    largest value. ``zero_ok(b)``: whether the result is the same for every norm
    below ``b`` (see :func:`jaxreg._norms.norm_parts_fast`). Computed in float32 or
    wider, returned in the dtype of ``z``, with ``p`` (the token of a sequential
    :func:`jaxreg._transforms._base.landing_transform`).
    """
    axes = _leaf_axes(axis, z)
    acc = acc_dtype(z.dtype)
    z_acc = z.astype(acc)
    r, p = norm_parts_fast(z_acc, axes, zero_ok=zero_ok)
    # The exact norm n (not floored: desired_norm and the "already feasible" test need it), and
    # the floor max(n, eps) only as the divisor.
    desired = jnp.asarray(desired_norm(r, p), acc)
    # The factor, and p itself where the norm is already the target: one per-norm array, the
    # quotient computed last, so that XLA computes it in one small kernel per leaf and the
    # elementwise pass reads it alone. Where the factor is p, (z / p) * p is z: those vectors are
    # returned as they are (also where z / p would have lost subnormal bits).
    feasible = desired == p * r
    factor = jnp.where(feasible, p, desired) / jnp.where(feasible, 1, jnp.maximum(r, EPSILON / p))
    # z / p, as a product: 1 / p is exact (p is a power of two), and so is z * (1 / p).
    rescaled = (z_acc * reciprocal_power_of_two(p)) * factor
    return jnp.where(factor == p, z_acc, rescaled).astype(z.dtype), p


def _check_axis_spec(axis: Axis) -> None:
    check_axes("axis", axis)


def max_norm(
    max_value: optax.ScalarOrSchedule, axis: Axis = 0, mask: Mask = None
) -> optax.GradientTransformation:
    r"""Max-norm constraint, placed **last** in the chain (Keras ``MaxNorm``).

    With $z = w + u$ it lands on $z \cdot \min(n, c) / \max(n, \epsilon)$ per
    norm $n = \|z\|_2$ over ``axis``: vectors with $n \le c$ are unchanged, longer
    ones are scaled back onto the sphere of radius $c$ (the Euclidean projection
    onto the ball). Keras computes $z \cdot \mathrm{clip}(n, 0, c) / (\epsilon + n)$;
    see the module notes for the epsilon. Srivastava et al. pair it with dropout
    (their $c$ is typically 3 to 4).

    **``axis`` is the axes the norm runs over: the opposite of the group lasso's ``axis``.**
    As in Keras, there is one norm per index of the remaining axes. The group
    lasso (:func:`group_lasso_penalty`, :func:`prox_group_lasso`,
    :func:`prox_sparse_group_lasso`) names with ``axis`` the axes that *index*
    its groups, so the same value selects the complementary vectors. With
    ``i, j, y, x, c, o`` the fixed indices of one norm or group:

    ==========================  =============  =================  =================  ===============
    kernel                      ``axis``       constraint norm    group lasso group  one norm per
    ==========================  =============  =================  =================  ===============
    Dense ``(in, out)``         ``0``          ``w[:, j]``        ``w[i, :]``        output unit
    Dense ``(in, out)``         ``1``          ``w[i, :]``        ``w[:, j]``        input feature
    HWIO ``(kh, kw, in, out)``  ``3``          ``w[y, x, c, :]``  ``w[:, :, :, o]``  ``(y, x, c)``
    HWIO ``(kh, kw, in, out)``  ``2``          ``w[y, x, :, o]``  ``w[:, :, c, :]``  ``(y, x, o)``
    HWIO ``(kh, kw, in, out)``  ``(2, 3)``     ``w[y, x, :, :]``  ``w[:, :, c, o]``  position
    HWIO ``(kh, kw, in, out)``  ``(0, 1, 2)``  ``w[:, :, :, o]``  ``w[y, x, c, :]``  output filter
    ==========================  =============  =================  =================  ===============

    ``axis=0`` on a Dense kernel is the max-norm of Srivastava et al. (each
    unit's incoming weights); ``axis=(0, 1, 2)`` on an HWIO conv kernel bounds
    each output filter; ``axis=None`` takes one norm over the whole leaf.

    **Rounding** (module notes; $N$ entries per norm, $\delta = 2^{-24}$, or
    $2^{-53}$ for float64 leaves, and $\delta_w$ the unit roundoff of the params'
    dtype): a vector with $n \le c$ is returned bit for bit; a projected one has
    norm $c(1 + \eta)$, $|\eta| \le (N/2 + 3)\delta$, so a second projection
    moves entries by at most a relative $(N + 6)\delta$ (plus $2\delta_w$ for a
    float16/bfloat16 leaf): idempotent up to rounding. The params land within
    $\delta_w(|w| + 2|P(z)|)(1 + \delta_w)$ of $P(z)$: up to an ulp of $w$ when
    $|w| \gg |P(z)|$ (``max_norm(1e-4)`` on the column ``[3000, 4000]`` lands
    on ``[0, 0]``). For $c < 10^{-7}$ the floor lands a norm $n < 10^{-7}$ on
    $c\,n / 10^{-7} < c$ (feasible).

    Args:
      max_value: the radius $c > 0$ (float, JAX scalar or optax schedule).
      axis: the axes the norm is taken over (Keras semantics): ``0`` on a Dense
        kernel ``(in, out)`` constrains each unit's incoming weights; ``(0, 1, 2)``
        each filter of an HWIO conv kernel; ``None`` the whole leaf. Python ints:
        with ``optax.inject_hyperparams`` pass ``static_args=("axis",)`` (optax
        turns an int into an array, which cannot select axes: a ``TypeError``
        says so).
      mask: which leaves (``optax.masked`` semantics); usually
        ``jaxreg.masks.weights_only``, so biases are left alone.

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, numpy as np, optax, jaxreg
      >>> tx = optax.chain(optax.sgd(1.0), jaxreg.max_norm(2.0, axis=0))
      >>> params = {"kernel": jnp.array([[3.0, 1.0], [4.0, 0.0]])}  # column norms 5 and 1
      >>> updates, _ = tx.update({"kernel": jnp.zeros((2, 2))}, tx.init(params), params)
      >>> np.asarray(optax.apply_updates(params, updates)["kernel"], float).round(6).tolist()
      [[1.2, 1.0], [1.6, 0.0]]

    References:
      Keras, ``keras.constraints.MaxNorm``
      (https://keras.io/api/layers/constraints/); Srivastava et al., 2014,
      `Dropout: A Simple Way to Prevent Neural Networks from Overfitting
      <https://jmlr.org/papers/v15/srivastava14a.html>`_, section 5.1.
    """
    check_positive("max_value", max_value, allow_schedule=True)
    _check_axis_spec(axis)

    def project(z, c):
        # A norm below c is kept, whatever its value.
        return rescale_norms(z, axis, lambda r, p: jnp.minimum(p * r, c), lambda bound: c >= bound)

    return build_projected("max_norm", project, (max_value,), mask, sequential=True)


def unit_norm(axis: Axis = 0, mask: Mask = None) -> optax.GradientTransformation:
    r"""Unit-norm constraint, placed **last** in the chain (Keras ``UnitNorm``).

    Lands on $z / \max(n, \epsilon)$ per norm $n = \|z\|_2$ over ``axis`` (Keras:
    $z / (\epsilon + n)$). A zero vector stays zero: it has no unit-norm
    projection.

    **``axis`` is the axes the norm runs over: the opposite of the group lasso's ``axis``**
    (Keras semantics; :func:`max_norm` tabulates both): ``axis=0`` on a Dense
    kernel ``(in, out)`` normalizes each column ``w[:, j]``, where
    ``prox_group_lasso(axis=0)`` groups each row ``w[i, :]``.

    **Rounding** (module notes; $N$ entries per norm, $\delta = 2^{-24}$, or
    $2^{-53}$ for float64 leaves, and $\delta_w$ the unit roundoff of the params'
    dtype): a vector of computed norm exactly 1 is returned bit for bit; a
    projected one has norm $1 + \eta$, $|\eta| \le (N/2 + 3)\delta$, so a
    second projection moves entries by at most a relative $(N + 6)\delta$ (plus
    $2\delta_w$ for a float16/bfloat16 leaf). Below the floor it is not
    idempotent: a norm $n < \epsilon = 10^{-7}$ lands on norm $n / \epsilon < 1$
    (``[3e-9, 4e-9]`` on ``[0.03, 0.04]``), and a second step on norm 1. The
    params land within $\delta_w(|w| + 2|P(z)|)(1 + \delta_w)$ of $P(z)$: up to
    an ulp of $w$ when $|w| \gg 1$ (``[5e7]`` in float32 lands on 0).

    Args:
      axis: the axes the norm is taken over, as in :func:`max_norm`: the opposite
        of the group lasso's ``axis`` (with ``optax.inject_hyperparams``,
        ``static_args=("axis",)``).
      mask: which leaves (``optax.masked`` semantics).

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, numpy as np, optax, jaxreg
      >>> tx = jaxreg.unit_norm(axis=1)
      >>> params = {"w": jnp.array([[3.0, 4.0], [0.0, 0.0]])}
      >>> updates, _ = tx.update({"w": jnp.zeros((2, 2))}, tx.init(params), params)
      >>> np.asarray(optax.apply_updates(params, updates)["w"], float).round(6).tolist()
      [[0.6, 0.8], [0.0, 0.0]]

    References:
      Keras, ``keras.constraints.UnitNorm`` (https://keras.io/api/layers/constraints/).
    """
    _check_axis_spec(axis)

    def project(z):
        # A norm below the floor epsilon is scaled by 1 / epsilon, whatever its value.
        return rescale_norms(z, axis, lambda r, p: jnp.ones_like(r), lambda bound: bound <= EPSILON)

    return build_projected("unit_norm", project, (), mask, sequential=True)


def min_max_norm(
    min_value: optax.ScalarOrSchedule,
    max_value: optax.ScalarOrSchedule,
    rate: optax.ScalarOrSchedule = 1.0,
    axis: Axis = 0,
    mask: Mask = None,
) -> optax.GradientTransformation:
    r"""Min-max-norm constraint, placed **last** in the chain (Keras ``MinMaxNorm``).

    Per norm $n = \|z\|_2$ over ``axis`` it lands on $z \cdot d / \max(n, \epsilon)$
    with $d = r \cdot \mathrm{clip}(n, a, b) + (1 - r) \cdot n$: ``rate=1`` enforces
    $a \le n \le b$ strictly, ``rate < 1`` moves the norm part of the way towards
    the interval at each step. A zero vector stays zero (it cannot be scaled up).
    ``min_value``, ``max_value`` and ``rate`` may be floats, JAX scalars or optax
    schedules.

    **``axis`` is the axes the norm runs over: the opposite of the group lasso's ``axis``**
    (Keras semantics; :func:`max_norm` tabulates both): ``axis=0`` on a Dense
    kernel ``(in, out)`` bounds the norm of each column ``w[:, j]``, where
    ``prox_group_lasso(axis=0)`` groups each row ``w[i, :]``.

    **Rounding** (module notes; $N$ entries per norm, $\delta = 2^{-24}$, or
    $2^{-53}$ for float64 leaves, and $\delta_w$ the unit roundoff of the params'
    dtype): with ``rate=1`` a vector with $a \le n \le b$ is returned bit for
    bit, a projected one has norm $d(1 + \eta)$, $|\eta| \le (N/2 + 3)\delta$,
    and a second projection moves entries by at most a relative $(N + 6)\delta$
    (plus $2\delta_w$ for a float16/bfloat16 leaf). Below the floor a norm $n <
    \epsilon = 10^{-7}$ lands on $n\,d / \epsilon < d$ with $d = r a + (1 - r)
    n$, not on $d$. The params land within $\delta_w(|w| + 2|P(z)|)(1 +
    \delta_w)$ of $P(z)$.

    Args:
      min_value: the lower bound $a \ge 0$ on the norm.
      max_value: the upper bound $b > 0$, with $a \le b$.
      rate: $r \in [0, 1]$, the fraction of the way to the interval per step.
      axis: the axes the norm is taken over, as in :func:`max_norm`: the opposite
        of the group lasso's ``axis`` (with ``optax.inject_hyperparams``,
        ``static_args=("axis",)``).
      mask: which leaves (``optax.masked`` semantics).

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, numpy as np, optax, jaxreg
      >>> tx = optax.chain(optax.sgd(1.0), jaxreg.min_max_norm(1.0, 2.0, axis=0))
      >>> params = {"kernel": jnp.array([[3.0, 0.3], [4.0, 0.4]])}  # column norms 5 and 0.5
      >>> updates, _ = tx.update({"kernel": jnp.zeros((2, 2))}, tx.init(params), params)
      >>> np.asarray(optax.apply_updates(params, updates)["kernel"], float).round(6).tolist()
      [[1.2, 0.6], [1.6, 0.8]]

    References:
      Keras, ``keras.constraints.MinMaxNorm`` (https://keras.io/api/layers/constraints/).
    """
    check_non_negative("min_value", min_value, allow_schedule=True)
    check_positive("max_value", max_value, allow_schedule=True)
    check_less_equal("min_value", min_value, "max_value", max_value, allow_schedule=True)
    check_rate("rate", rate, allow_schedule=True)
    _check_axis_spec(axis)

    def project(z, a, b, r):
        # r * clip(n, a, b) + (1 - r) * n with n = p * s in parts: no overflow, and no 0 * inf at r = 1.
        # At r = 1 a norm below a and below epsilon lands on norm a / epsilon, whatever its value.
        return rescale_norms(
            z,
            axis,
            lambda s, p: r * jnp.clip(p * s, a, b) + ((1 - r) * p) * s,
            lambda bound: (r == 1) & (a >= bound) & (bound <= EPSILON),
        )

    return build_projected("min_max_norm", project, (min_value, max_value, rate), mask, sequential=True)


def non_negative(mask: Mask = None) -> optax.GradientTransformation:
    r"""Non-negativity constraint, placed **last** in the chain (Keras ``NonNeg``).

    Lands on $\max(z, 0)$ elementwise: this is
    ``jaxreg.projected(optax.projections.projection_non_negative)`` (the same
    builder; errors name ``non_negative``) restricted to the float leaves that
    ``mask`` selects. Entries that would go negative land on exactly ``0.0``
    (the update is ``-w``); the others keep the incoming update and land where
    the plain step does, on ``w + u`` rounded once: exactly idempotent, and the
    same bits as ``optax.keep_params_nonnegative``.

    Args:
      mask: which leaves (``optax.masked`` semantics).

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, optax, jaxreg
      >>> tx = optax.chain(optax.sgd(1.0), jaxreg.non_negative())
      >>> params = {"w": jnp.array([0.5, 2.0])}
      >>> updates, _ = tx.update({"w": jnp.array([1.0, 1.0])}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)["w"].tolist()
      [0.0, 1.0]

    References:
      Keras, ``keras.constraints.NonNeg``; ``optax.projections.projection_non_negative``;
      ``optax.keep_params_nonnegative``.
    """
    return build_projected(
        "non_negative", optax.projections.projection_non_negative, (), mask, keep_fixed=True
    )
