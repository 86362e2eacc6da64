"""Weight penalties: pure functions of a params pytree that return a scalar.

Each penalty sums over the float leaves that ``mask`` selects (see
:mod:`jaxreg.masks`): float arrays, NumPy float scalars and Python floats;
integer and bool leaves (Python ints and bools too) and ``None`` are ignored. Sums are
accumulated in float32 (float64 if a selected leaf is float64, under
``jax_enable_x64``), whatever the dtype of the other leaves, so bf16 parameters
give an accurate penalty whose gradient comes back in bf16.

On a mesh (``jax.sharding``), a penalty of sharded params is a sum of local
partial sums: the compiled program all-reduces one scalar per selected leaf
(two for the elastic net) over the mesh axes that leaf is sharded along, and
never gathers a parameter. Its gradient has the params' sharding and needs no
communication, except for group norms split across devices (see
:func:`group_lasso_penalty`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxreg._masking import selected_leaves
from jaxreg._norms import acc_dtype, group_norms
from jaxreg._typing import GroupAxes, Mask
from jaxreg._validation import check_group_axes, check_non_negative


def _sum_over(params: Any, mask: Mask, fn) -> jax.Array:
    """``sum(fn(leaf, path))`` over the selected leaves, in one accumulation dtype."""
    leaves = selected_leaves(params, mask)
    dtype = acc_dtype(*(leaf.dtype for _, leaf in leaves))
    total = jnp.zeros((), dtype)
    for path, leaf in leaves:
        total = total + jnp.sum(fn(leaf.astype(dtype), path))
    return total


def _abs(w: jax.Array) -> jax.Array:
    # sign(w) * w == |w|, with gradient sign(w) and sign(0) = 0: the subgradient
    # that `add_l1` adds. (jax.grad(jnp.abs)(0.) is 1, not 0.)
    return jnp.sign(w) * w


def l1_penalty(params: Any, mask: Mask = None) -> jax.Array:
    r"""L1 (lasso) penalty $\sum_i |w_i|$ over the selected leaves.

    Its gradient is $\mathrm{sign}(w)$ with $\mathrm{sign}(0) = 0$, exactly what
    ``add_l1(1.0)`` adds to the gradient. Keras ``L1(l1)`` is ``l1 * l1_penalty``;
    PyTorch has no built-in L1, users write ``loss + lam * w.abs().sum()``.

    Sharded params: the scalar sum needs one all-reduce of one scalar per
    sharded leaf; no all-gather.

    Args:
      params: any pytree of arrays.
      mask: ``None``, a bool pytree (or prefix) or a callable ``params -> mask``,
        with ``optax.masked`` semantics.

    Returns:
      A float32 scalar (float64 if a selected leaf is float64).

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> float(jaxreg.l1_penalty({"w": jnp.array([1.0, -2.0]), "b": jnp.array([3.0])},
      ...                         mask={"w": True, "b": False}))
      3.0

    References:
      Tibshirani, "Regression Shrinkage and Selection via the Lasso", 1996.
    """
    return _sum_over(params, mask, lambda w, _: _abs(w))


def l2_penalty(params: Any, mask: Mask = None) -> jax.Array:
    r"""L2 (ridge) penalty $\frac{1}{2} \sum_i w_i^2$ over the selected leaves.

    The 1/2 makes the gradient $w$, so ``lam * l2_penalty`` in the loss and
    ``add_decayed_weights(lam)`` in the chain give the same updates. Conventions
    elsewhere differ: Keras ``L2(l2)`` adds ``l2 * sum(w**2)`` (no 1/2, so it
    equals ``2 * l2 * l2_penalty``); PyTorch ``SGD(weight_decay=lam)`` adds
    ``lam * w`` to the gradient, which is ``lam * l2_penalty`` (``lam/2 *
    ||w||^2``, not ``lam * ||w||^2``).

    Sharded params: the scalar sum needs one all-reduce of one scalar per
    sharded leaf; no all-gather.

    Args:
      params: any pytree of arrays.
      mask: as in :func:`l1_penalty`.

    Returns:
      A float32 scalar (float64 if a selected leaf is float64).

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> float(jaxreg.l2_penalty({"w": jnp.array([1.0, -2.0])}))
      2.5

    References:
      Hoerl and Kennard, "Ridge Regression", 1970; Krogh and Hertz, "A Simple
      Weight Decay Can Improve Generalization", NeurIPS 1991.
    """
    return 0.5 * _sum_over(params, mask, lambda w, _: jnp.square(w))


def elastic_net_penalty(params: Any, l1: Any, l2: Any, mask: Mask = None) -> jax.Array:
    r"""Elastic-net penalty $l_1 \sum_i |w_i| + l_2 \cdot \frac{1}{2} \sum_i w_i^2$.

    scikit-learn's ``ElasticNet(alpha, l1_ratio)`` minimizes
    $\frac{1}{2n}\|y - Xw\|^2 + \alpha\rho\|w\|_1 + \frac{\alpha(1-\rho)}{2}\|w\|_2^2$,
    i.e. ``l1 = alpha * l1_ratio`` and ``l2 = alpha * (1 - l1_ratio)`` against a
    ``1/(2n)``-scaled squared error.

    Sharded params: the scalar sums need an all-reduce of two scalars (the L1
    and the L2 partial sums) per sharded leaf; no all-gather.

    Args:
      params: any pytree of arrays.
      l1: strength of the L1 term, >= 0: a number or a JAX scalar (a schedule
        raises a ``TypeError``: evaluate it at your step, ``l1_schedule(step)``).
      l2: strength of the L2 term, >= 0, likewise.
      mask: as in :func:`l1_penalty`.

    Returns:
      A float32 scalar (float64 if a selected leaf is float64).

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> w = {"w": jnp.array([1.0, -2.0])}
      >>> float(jaxreg.elastic_net_penalty(w, l1=0.5, l2=1.0))  # 0.5 * 3 + 1.0 * 5 / 2
      4.0

    References:
      Zou and Hastie, "Regularization and variable selection via the elastic
      net", JRSS B 2005.
    """
    l1 = check_non_negative("l1", l1)
    l2 = check_non_negative("l2", l2)
    return l1 * l1_penalty(params, mask) + l2 * l2_penalty(params, mask)


def group_lasso_penalty(params: Any, axis: GroupAxes = 0, mask: Mask = None) -> jax.Array:
    r"""Group-lasso penalty $\sum_g \|w_g\|_2$ over the groups of each selected leaf.

    **Groups: ``axis`` indexes them, the opposite of the constraints' ``axis``.**
    A group is the set of entries of one leaf that share their indices along
    every axis of ``axis`` (an int or a tuple of ints); the norm runs over all
    the other axes. The constraints (:func:`max_norm`, :func:`unit_norm`,
    :func:`min_max_norm`) follow Keras: their ``axis`` names the axes the norm
    *runs over*, so the same value selects the complementary vectors. With
    ``i, j, y, x, c, o`` the fixed indices of one group or norm:

    ==========================  =============  =================  =================  ================
    kernel                      ``axis``       constraint norm    group lasso group  one group per
    ==========================  =============  =================  =================  ================
    Dense ``(in, out)``         ``0``          ``w[:, j]``        ``w[i, :]``        input feature
    Dense ``(in, out)``         ``1``          ``w[i, :]``        ``w[:, j]``        output unit
    HWIO ``(kh, kw, in, out)``  ``3``          ``w[y, x, c, :]``  ``w[:, :, :, o]``  output filter
    HWIO ``(kh, kw, in, out)``  ``2``          ``w[y, x, :, o]``  ``w[:, :, c, :]``  input channel
    HWIO ``(kh, kw, in, out)``  ``(2, 3)``     ``w[y, x, :, :]``  ``w[:, :, c, o]``  (in, out) pair
    HWIO ``(kh, kw, in, out)``  ``(0, 1, 2)``  ``w[:, :, :, o]``  ``w[y, x, c, :]``  ``(y, x, c)``
    ==========================  =============  =================  =================  ================

    On a Dense kernel ``axis=0`` drives whole input features to zero (feature
    selection); on an HWIO conv kernel ``axis=(2, 3)`` drives the ``kh x kw``
    kernel of single (input, output) channel pairs to zero. Negative axes count
    from the end of each leaf (``-1`` is the output axis of both kernels).
    Leaves with ``ndim < 2`` (biases, scales) are each a single group. An axis
    out of range for a leaf, or one given twice (``(1, -1)`` on a 2-D leaf),
    raises a ``ValueError`` naming ``axis`` and the leaf's key path. Groups are
    not weighted by $\sqrt{|g|}$.

    The gradient at a group that is exactly zero is 0 (a valid subgradient).

    **Sharded params.** Two reductions can need communication, both all-reduces,
    never an all-gather: if a leaf is sharded along a dimension not in
    ``axis`` (for ``ndim < 2``: along any dimension), each group is split across
    devices and the norms need an all-reduce of one partial sum of squares per
    group; and the sum over groups to a scalar needs an all-reduce of one scalar
    per sharded leaf. A leaf sharded only along axes of ``axis`` keeps every
    group on one device, so its norms are local.

    Args:
      params: any pytree of arrays.
      axis: the axes that index groups, an int or a tuple of ints; negative
        values count from the end.
      mask: as in :func:`l1_penalty`.

    Returns:
      A float32 scalar (float64 if a selected leaf is float64).

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> kernel = jnp.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])  # (in=3, out=2)
      >>> float(jaxreg.group_lasso_penalty({"kernel": kernel}, axis=0))  # rows: 5 + 0 + 1
      6.0
      >>> round(float(jaxreg.group_lasso_penalty({"kernel": kernel}, axis=1)), 4)  # columns: sqrt(10) + 4
      7.1623
      >>> conv = jnp.ones((3, 3, 2, 4))  # HWIO: 8 kernels of 3 x 3 ones, each of norm 3
      >>> float(jaxreg.group_lasso_penalty({"kernel": conv}, axis=(2, 3)))
      24.0

    References:
      Yuan and Lin, "Model selection and estimation in regression with grouped
      variables", JRSS B 2006; Scardapane et al., "Group sparse regularization
      for deep neural networks", Neurocomputing 2017.
    """
    check_group_axes("axis", axis)  # even if every selected leaf is 1-D (one group, whatever the axis)
    return _sum_over(params, mask, lambda w, path: group_norms(w, axis, f"params leaf '{path}'"))
