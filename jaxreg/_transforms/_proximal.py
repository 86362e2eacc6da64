r"""Proximal gradient steps: transforms placed last in a chain that land on prox(params + updates).

With $z = w + u$ the plain step (``u`` already scaled by the learning rate),
each transform returns the update $\mathrm{prox}(z) - w$, so that
``optax.apply_updates`` lands on $\mathrm{prox}(z)$. Entries that the prox sets
to zero land on exactly ``0.0`` (``w + (-w)`` is exact in floating point).

**Landing bound.** The update is $\mathrm{prox}(z) - w$ rounded to the params'
dtype and ``optax.apply_updates`` adds it with one more rounding, so every
other entry lands within $\delta_w(|w| + 2|\mathrm{prox}(z)|)(1 + \delta_w)$ of
$\mathrm{prox}(z)$, $\delta_w$ the unit roundoff of the params' dtype ($2^{-24}$
float32, $2^{-11}$ float16, $2^{-8}$ bfloat16, $2^{-53}$ float64). When $|w|$ is
many orders of magnitude above $|\mathrm{prox}(z)|$ that is up to an ulp of
$w$: a float32 entry at 3000 whose prox value is 6e-5 lands on 0 (the spacing
there is 2.4e-4).

On a mesh (``jax.sharding``), every update keeps its parameter's sharding.
``prox_l1`` and ``prox_elastic_net`` are elementwise: no communication.
``prox_group_lasso`` needs the group norms: see its docstring.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreg._norms import acc_dtype, group_axes, norm_parts_fast
from jaxreg._transforms._generic import build_proximal
from jaxreg._typing import GroupAxes, Mask
from jaxreg._validation import (
    check_bool,
    check_float_array,
    check_group_axes,
    check_non_negative,
    concrete_float,
)


def soft_threshold(z: jax.Array, threshold: jax.Array | float) -> jax.Array:
    r"""Soft-thresholding $S(z, t) = \mathrm{sign}(z)\max(|z| - t, 0)$, the prox of $t\|\cdot\|_1$.

    Entries with $|z| \le t$ become exactly 0; the others move towards 0 by $t$.
    This is the step :func:`prox_l1` takes with $t = \eta\lambda$ (and
    :func:`prox_elastic_net` before its $1/(1 + \eta l_2)$ shrinkage); use it
    directly to write your own proximal loops.

    Args:
      z: a real floating-point array (an integer ``z`` raises a ``TypeError``:
        the result would be rounded to integers).
      threshold: $t \ge 0$, a number, a JAX scalar (may be traced) or an array
        broadcasting against ``z``, cast to the dtype of ``z``. A negative or NaN
        threshold known at trace time (a Python or NumPy number or array, a
        concrete JAX scalar) raises a ``ValueError``; a non-number (a string,
        ``None``, a bool) a ``TypeError``. $t = \infty$ gives zeros.

    Returns:
      An array of the shape and dtype of ``z``.

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> jaxreg.soft_threshold(jnp.array([2.0, 0.5, -3.0]), 1.0).tolist()
      [1.0, 0.0, -2.0]

    References:
      Parikh and Boyd, "Proximal Algorithms", Foundations and Trends in
      Optimization, 2014, sec. 6.5.2 (https://web.stanford.edu/~boyd/papers/prox_algs.html);
      ``jaxopt.prox.prox_lasso``.
    """
    z = jnp.asarray(z)
    check_float_array("z", z)
    _check_threshold(threshold)
    return _shrink(z, threshold)


def _check_threshold(threshold: Any) -> None:
    if isinstance(threshold, (jax.Array, np.ndarray, np.generic)) and np.ndim(threshold) > 0:
        dtype = threshold.dtype
        if not (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
            raise TypeError(f"threshold must be a real number or array, got an array of dtype {dtype}")
        if isinstance(threshold, np.ndarray):  # known at trace time (a JAX array's values are not read)
            values = np.asarray(threshold, np.float64)
            if np.isnan(values).any() or (values < 0).any():
                raise ValueError(f"threshold must be >= 0 everywhere, got {threshold!r}")
        return
    t = concrete_float("threshold", threshold)
    if t is not None and not t >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold!r}")


def _shrink(z: jax.Array, threshold: Any) -> jax.Array:
    """$S(z, t)$ without argument checks (the prox transforms' hyperparameters are checked once)."""
    t = jnp.asarray(threshold, z.dtype)
    return jnp.sign(z) * jnp.maximum(jnp.abs(z) - t, 0)


def _shrink_non_negative(z: jax.Array, threshold: Any) -> jax.Array:
    r"""$\max(z - t, 0)$: the prox of $t\|\cdot\|_1$ plus the indicator of $z \ge 0$."""
    return jnp.maximum(z - jnp.asarray(threshold, z.dtype), 0)


def prox_l1(
    strength: optax.ScalarOrSchedule,
    learning_rate: optax.ScalarOrSchedule,
    mask: Mask = None,
    *,
    factors: Any = None,
    non_negative: bool = False,
) -> optax.GradientTransformation:
    r"""Proximal L1 step (ISTA soft-thresholding), placed **last** in the chain.

    With $z = w + u$ it lands on $S(z, \eta\lambda) = \mathrm{sign}(z)\max(|z| -
    \eta\lambda, 0)$, one step of proximal gradient descent on $J(w) +
    \lambda\|w\|_1$. With ``non_negative=True`` (the non-negative lasso, the
    ``positive=True`` of scikit-learn's ``Lasso``) it lands on $\max(z -
    \eta\lambda, 0)$, the prox of $\eta\lambda\|w\|_1$ plus the indicator of
    $w \ge 0$. Unlike :func:`add_l1` (the subgradient rule, which
    oscillates around zero) it produces exact zeros. ``learning_rate`` must be the
    step size that scaled the incoming updates, e.g.
    ``optax.chain(optax.sgd(lr), jaxreg.prox_l1(lam, lr))``. With an adaptive
    optimizer (Adam) the step is a heuristic, not a true proximal step.

    Entries with $|z| \le \eta\lambda$ land on exactly 0; the others within
    $\delta_w(|w| + 2|S|)(1 + \delta_w)$ of their soft-threshold value $S$, $\delta_w$ the unit
    roundoff of the params' dtype (the landing bound of the module notes: up to
    an ulp of $w$ when $|w| \gg |S|$).

    Args:
      strength: $\lambda \ge 0$ (float, JAX scalar or optax schedule).
      learning_rate: $\eta \ge 0$ (float, JAX scalar or optax schedule).
      mask: which leaves to threshold (``optax.masked`` semantics).
      factors: per-leaf multipliers of the strength: a pytree of non-negative numbers
        (or a prefix of one) or a callable ``params -> pytree`` such as
        :func:`jaxreg.masks.factors`; a leaf of factor 0 keeps its update exactly.
        With factors the state is a tuple of one state per distinct factor.
      non_negative: a Python bool; ``True`` also projects onto $w \ge 0$.

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, optax, jaxreg
      >>> tx = optax.chain(optax.sgd(1.0), jaxreg.prox_l1(strength=0.5, learning_rate=1.0))
      >>> params = {"w": jnp.array([2.0, 0.3, -1.0])}
      >>> updates, _ = tx.update({"w": jnp.zeros(3)}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)["w"].tolist()
      [1.5, 0.0, -0.5]
      >>> tx = jaxreg.prox_l1(strength=0.5, learning_rate=1.0, non_negative=True)
      >>> updates, _ = tx.update({"w": jnp.zeros(3)}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)["w"].tolist()
      [1.5, 0.0, 0.0]

    References:
      Beck and Teboulle, "A Fast Iterative Shrinkage-Thresholding Algorithm",
      SIAM J. Imaging Sci. 2009; Parikh and Boyd, "Proximal Algorithms", 2014;
      jaxopt.prox.prox_lasso.
    """
    check_non_negative("strength", strength, allow_schedule=True)
    check_non_negative("learning_rate", learning_rate, allow_schedule=True)
    if check_bool("non_negative", non_negative):
        return build_proximal("prox_l1", _shrink_non_negative, (strength,), learning_rate, mask, factors)
    return build_proximal("prox_l1", _shrink, (strength,), learning_rate, mask, factors)


def prox_elastic_net(
    l1: optax.ScalarOrSchedule,
    l2: optax.ScalarOrSchedule,
    learning_rate: optax.ScalarOrSchedule,
    mask: Mask = None,
    *,
    factors: Any = None,
) -> optax.GradientTransformation:
    r"""Proximal elastic-net step, placed **last** in the chain.

    Lands on $S(z, \eta l_1) / (1 + \eta l_2)$ with $z = w + u$: the prox of
    $\eta(l_1\|w\|_1 + \frac{l_2}{2}\|w\|_2^2)$, the same convention as
    :func:`elastic_net_penalty`. Entries with $|z| \le \eta l_1$ land on exactly
    0; the others within $\delta_w(|w| + 2|P|)(1 + \delta_w)$ of their prox value $P$,
    $\delta_w$ the unit roundoff of the params' dtype (up to an ulp of $w$ when $|w|
    \gg |P|$).

    Args:
      l1: L1 strength $\ge 0$ (float, JAX scalar or optax schedule).
      l2: L2 strength $\ge 0$ (float, JAX scalar or optax schedule).
      learning_rate: $\eta \ge 0$, the step size that scaled the updates.
      mask: which leaves (``optax.masked`` semantics).
      factors: per-leaf multipliers of the strength: a pytree of non-negative numbers
        (or a prefix of one) or a callable ``params -> pytree`` such as
        :func:`jaxreg.masks.factors`; a leaf of factor 0 keeps its update exactly.
        With factors the state is a tuple of one state per distinct factor.

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, optax, jaxreg
      >>> tx = optax.chain(optax.sgd(1.0), jaxreg.prox_elastic_net(l1=0.5, l2=1.0, learning_rate=1.0))
      >>> params = {"w": jnp.array([2.0, 0.25, -1.0])}
      >>> updates, _ = tx.update({"w": jnp.zeros(3)}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)["w"].tolist()  # S(w, 0.5) / (1 + 1)
      [0.75, 0.0, -0.25]

    References:
      Zou and Hastie, 2005; Parikh and Boyd, "Proximal Algorithms", 2014, sec. 6.5.3;
      jaxopt.prox.prox_elastic_net.
    """
    check_non_negative("l1", l1, allow_schedule=True)
    check_non_negative("l2", l2, allow_schedule=True)
    check_non_negative("learning_rate", learning_rate, allow_schedule=True)

    def prox(z, t1, t2):
        return _shrink(z, t1) / jnp.asarray(1 + t2, z.dtype)

    return build_proximal("prox_elastic_net", prox, (l1, l2), learning_rate, mask, factors)


def prox_ridge(
    strength: optax.ScalarOrSchedule,
    learning_rate: optax.ScalarOrSchedule,
    *,
    mask: Mask = None,
    factors: Any = None,
) -> optax.GradientTransformation:
    r"""Proximal ridge (L2) step, placed **last** in the chain.

    Lands on $z / (1 + \eta\lambda)$ with $z = w + u$: the prox of
    $\eta\frac{\lambda}{2}\|w\|_2^2$, with the 1/2 of :func:`l2_penalty`. With
    plain SGD this is the implicit (backward) form of weight decay: the explicit
    ``add_decayed_weights(lam)`` multiplies by $1 - \eta\lambda$, this step
    divides by $1 + \eta\lambda$ (the same to first order in $\eta\lambda$, and
    never overshooting zero).

    Args:
      strength: $\lambda \ge 0$ (float, JAX scalar or optax schedule).
      learning_rate: $\eta \ge 0$, the step size that scaled the updates.
      mask: which leaves (``optax.masked`` semantics).
      factors: per-leaf multipliers of the strength: a pytree of non-negative numbers
        (or a prefix of one) or a callable ``params -> pytree`` such as
        :func:`jaxreg.masks.factors`; a leaf of factor 0 keeps its update exactly.
        With factors the state is a tuple of one state per distinct factor.

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, optax, jaxreg
      >>> tx = optax.chain(optax.sgd(1.0), jaxreg.prox_ridge(strength=1.0, learning_rate=1.0))
      >>> params = {"w": jnp.array([2.0, -1.0])}
      >>> updates, _ = tx.update({"w": jnp.zeros(2)}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)["w"].tolist()  # w / (1 + 1)
      [1.0, -0.5]

    References:
      Parikh and Boyd, "Proximal Algorithms", 2014, sec. 6.1.1
      (https://web.stanford.edu/~boyd/papers/prox_algs.html); ``jaxopt.prox.prox_ridge``.
    """
    check_non_negative("strength", strength, allow_schedule=True)
    check_non_negative("learning_rate", learning_rate, allow_schedule=True)

    def prox(z, t):
        return z / jnp.asarray(1 + t, z.dtype)

    return build_proximal("prox_ridge", prox, (strength,), learning_rate, mask, factors)


def prox_group_lasso(
    strength: optax.ScalarOrSchedule,
    learning_rate: optax.ScalarOrSchedule,
    axis: GroupAxes = 0,
    mask: Mask = None,
    *,
    factors: Any = None,
) -> optax.GradientTransformation:
    r"""Proximal group-lasso step (block soft-thresholding), placed **last** in the chain.

    For each group $g$ of $z = w + u$ it lands on $z_g \max(1 - \eta\lambda /
    \|z_g\|_2, 0)$, the prox of $\eta\lambda\sum_g\|w_g\|_2$, with the groups of
    :func:`group_lasso_penalty`. A group with $\|z_g\| = 0$ stays at zero (no
    NaN, no inf). The group norms are computed on values scaled by a power of
    two, so they neither overflow nor underflow (float32 groups of entries 1e20
    or 1e-25 are thresholded correctly). Groups with $\|z_g\| \le \eta\lambda$
    land on exactly 0; the other entries within $\delta_w(|w| + 2|P|)(1 +
    \delta_w)$ of their prox value $P$, $\delta_w$ the unit roundoff of the
    params' dtype (up to an ulp of $w$ when $|w| \gg |P|$).

    **``axis`` indexes the groups: the opposite of the constraints' ``axis``.**
    A group is the set of entries of one leaf that share their indices along
    every axis of ``axis`` (an int or a tuple of ints); the norm runs over all
    the other axes. The constraints (:func:`max_norm`, :func:`unit_norm`,
    :func:`min_max_norm`) follow Keras: their ``axis`` names the axes the norm
    *runs over*, so the same value selects the complementary vectors (the table
    of :func:`group_lasso_penalty` lists both for typical values). On a Dense
    kernel ``(in, out)``, ``axis=0`` makes each row ``w[i, :]`` a group, where
    ``max_norm(axis=0)`` bounds each column ``w[:, j]``.

    ``axis=0`` on a Dense kernel is feature selection; ``axis=(2, 3)`` on an
    HWIO conv kernel prunes the ``kh x kw`` kernel of each (input, output)
    channel pair. Negative axes count from the end of each leaf (``-1`` is the
    output axis of both kernels). Leaves with ``ndim < 2`` are one group. An
    axis out of range for a leaf, or one given twice (``(1, -1)`` on a 2-D
    leaf), raises a ``ValueError`` naming ``axis``, the leaf's key path and
    shape.

    Sharded params: a leaf sharded only along axes of ``axis`` keeps each group
    on one device and needs no communication. A leaf sharded along another
    dimension (any dimension, for ``ndim < 2``) splits its groups across
    devices: the norms need one all-reduce of one partial sum of squares per
    group, over the mesh axes of those dimensions. Never an all-gather; the
    update keeps the parameter's sharding.

    Args:
      strength: $\lambda \ge 0$ (float, JAX scalar or optax schedule).
      learning_rate: $\eta \ge 0$, the step size that scaled the updates.
      axis: the axes that index groups, a Python int or a tuple of ints. With
        ``optax.inject_hyperparams`` pass ``static_args=("axis",)``: optax turns
        int arguments into arrays, which cannot select an axis (a ``TypeError``
        says so).
      mask: which leaves (``optax.masked`` semantics).
      factors: per-leaf multipliers of the strength: a pytree of non-negative numbers
        (or a prefix of one) or a callable ``params -> pytree`` such as
        :func:`jaxreg.masks.factors`; a leaf of factor 0 keeps its update exactly.
        With factors the state is a tuple of one state per distinct factor.

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, numpy as np, optax, jaxreg
      >>> tx = optax.chain(optax.sgd(1.0), jaxreg.prox_group_lasso(strength=1.0, learning_rate=1.0, axis=0))
      >>> params = {"kernel": jnp.array([[3.0, 4.0], [0.3, 0.4], [0.0, 1.0]])}  # row norms 5, 0.5, 1
      >>> updates, _ = tx.update({"kernel": jnp.zeros((3, 2))}, tx.init(params), params)
      >>> np.asarray(optax.apply_updates(params, updates)["kernel"], float).round(6).tolist()
      [[2.4, 3.2], [0.0, 0.0], [0.0, 0.0]]
      >>> conv = {"kernel": jnp.ones((3, 3, 2, 4)).at[:, :, 0, 1].set(0.1)}  # HWIO
      >>> tx = jaxreg.prox_group_lasso(strength=1.5, learning_rate=1.0, axis=(2, 3))
      >>> updates, _ = tx.update({"kernel": jnp.zeros((3, 3, 2, 4))}, tx.init(conv), conv)
      >>> kept = optax.apply_updates(conv, updates)["kernel"]  # 3x3 kernels: norm 3, or 0.3 for (0, 1)
      >>> kept.sum(axis=(0, 1)).tolist()  # per (in, out) pair: 9 * (1 - 1.5 / 3), or 0
      [[4.5, 0.0, 4.5, 4.5], [4.5, 4.5, 4.5, 4.5]]

    References:
      Yuan and Lin, 2006; Parikh and Boyd, "Proximal Algorithms", 2014, sec. 6.5.4;
      jaxopt.prox.prox_group_lasso.
    """
    check_non_negative("strength", strength, allow_schedule=True)
    check_non_negative("learning_rate", learning_rate, allow_schedule=True)
    check_group_axes("axis", axis)

    return build_proximal(
        "prox_group_lasso",
        lambda z, t: group_shrink(z, t, axis),
        (strength,),
        learning_rate,
        mask,
        factors,
        sequential=True,
    )


def group_shrink(z: jax.Array, threshold: Any, axis: GroupAxes) -> tuple[jax.Array, jax.Array]:
    r"""Block soft-thresholding $z_g \max(1 - t / \|z_g\|_2, 0)$ per group of :func:`group_norms`.

    A group with $\|z_g\| = 0$ stays at zero (no NaN, no inf). The norms are
    those of :func:`group_norms`, in one pass over ``z`` where that is exact
    (:func:`jaxreg._norms.norm_parts_fast`). Returns the result and the norms (the
    token of a sequential :func:`jaxreg._transforms._base.landing_transform`).
    """
    t = jnp.asarray(threshold, z.dtype)

    def zero_ok(bound: float) -> jax.Array:
        # A group whose norm is below t lands on 0, whatever its value. Compared in float32 or
        # wider: bound may be below float16's range.
        return t.astype(acc_dtype(t.dtype)) >= bound

    r, p = norm_parts_fast(z, group_axes(z.ndim, axis), zero_ok=zero_ok)
    norms = p * r
    scale = jnp.maximum(1 - t / jnp.where(norms > 0, norms, 1), 0)
    return jnp.where(norms > 0, z * scale, jnp.zeros_like(z)), norms


def prox_sparse_group_lasso(
    l1: optax.ScalarOrSchedule,
    group: optax.ScalarOrSchedule,
    learning_rate: optax.ScalarOrSchedule,
    axis: GroupAxes = 0,
    *,
    mask: Mask = None,
    factors: Any = None,
) -> optax.GradientTransformation:
    r"""Proximal sparse-group-lasso step, placed **last** in the chain.

    The prox of $\eta(l_1\|w\|_1 + \lambda_g\sum_g\|w_g\|_2)$: soft-threshold,
    then shrink each group of the result, landing on
    $v_g \max(1 - \eta\lambda_g / \|v_g\|_2, 0)$ with $v = S(z, \eta l_1)$ and
    $z = w + u$. It zeroes whole groups and single entries within the groups it
    keeps. ``l1=0`` is :func:`prox_group_lasso`, ``group=0`` is :func:`prox_l1`.

    **``axis`` indexes the groups: the opposite of the constraints' ``axis``.**
    As for :func:`prox_group_lasso` (the table of :func:`group_lasso_penalty`
    lists the groups for typical values), ``axis`` (an int or a tuple of ints) names the axes that *index*
    the groups and the norm runs over all the other axes: ``axis=0`` on a Dense
    kernel ``(in, out)`` makes each input feature's row ``w[i, :]`` a group,
    ``axis=(2, 3)`` on an HWIO conv kernel each ``kh x kw`` kernel
    ``w[:, :, c, o]``. The constraints' ``axis`` (:func:`max_norm`) names the
    axes the norm runs over: ``max_norm(axis=0)`` bounds each column
    ``w[:, j]``. Leaves with ``ndim < 2`` are one group.

    Args:
      l1: $l_1 \ge 0$, the entrywise strength (float, JAX scalar or optax schedule).
      group: $\lambda_g \ge 0$, the group strength (float, JAX scalar or optax schedule).
      learning_rate: $\eta \ge 0$, the step size that scaled the updates.
      axis: the axes that index groups, a Python int or a tuple of ints (with
        ``optax.inject_hyperparams``, ``static_args=("axis",)``).
      mask: which leaves (``optax.masked`` semantics).
      factors: per-leaf multipliers of both strengths: a pytree of non-negative
        numbers (or a prefix of one) or a callable ``params -> pytree`` such as
        :func:`jaxreg.masks.factors`; a leaf of factor 0 keeps its update exactly.

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, numpy as np, optax, jaxreg
      >>> tx = jaxreg.prox_sparse_group_lasso(l1=1.0, group=1.0, learning_rate=1.0)
      >>> params = {"kernel": jnp.array([[4.0, 5.0], [1.5, 0.5]])}  # rows: groups
      >>> updates, _ = tx.update({"kernel": jnp.zeros((2, 2))}, tx.init(params), params)
      >>> np.asarray(optax.apply_updates(params, updates)["kernel"], float).round(6).tolist()
      [[2.4, 3.2], [0.0, 0.0]]

    References:
      Simon, Friedman, Hastie and Tibshirani, "A Sparse-Group Lasso", J. Comput.
      Graph. Stat. 2013 (https://doi.org/10.1080/10618600.2012.681250).
    """
    check_non_negative("l1", l1, allow_schedule=True)
    check_non_negative("group", group, allow_schedule=True)
    check_non_negative("learning_rate", learning_rate, allow_schedule=True)
    check_group_axes("axis", axis)

    def prox(z, t1, tg):
        return group_shrink(_shrink(z, t1), tg, axis)

    return build_proximal(
        "prox_sparse_group_lasso", prox, (l1, group), learning_rate, mask, factors, sequential=True
    )
