r"""Any proximal operator or projection as an optax transform placed **last** in a chain.

With $z = w + u$ the plain step (``u`` already scaled by the learning rate),
:func:`proximal` lands on $\mathrm{prox}_{\eta\lambda}(z)$ and :func:`projected`
on $P(z)$, leaf by leaf: the contract of :func:`jaxreg.prox_l1` and of the
constraints (:func:`jaxreg.max_norm`), which are built by the same two builders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from jaxreg._masking import masked
from jaxreg._transforms._base import landing_transform, masked_with_factors, scaled
from jaxreg._typing import Mask
from jaxreg._validation import check_non_negative


def build_proximal(
    name: str,
    prox_fn: Callable[..., Any],
    strengths: tuple[Any, ...],
    learning_rate: optax.ScalarOrSchedule,
    mask: Mask,
    factors: Any,
    *,
    sequential: bool = False,
) -> optax.GradientTransformation:
    """The proximal builder: lands on ``prox_fn(z, lr_t * s1_t, lr_t * s2_t, ...)``.

    Every strength is multiplied by the leaf's factor (``factors=``, see
    :func:`jaxreg._transforms._base.masked_with_factors`); errors name ``name``.
    ``sequential``: see :func:`jaxreg._transforms._base.landing_transform`.
    """

    def make(f: float) -> optax.GradientTransformation:
        def leaf(z, lr, *values):
            return prox_fn(z, *(lr * s for s in values))

        hyperparams = (learning_rate, *(scaled(s, f) for s in strengths))
        return landing_transform(name, leaf, hyperparams, sequential=sequential)

    return masked_with_factors(make, mask, factors)


def build_projected(
    name: str,
    proj_fn: Callable[..., Any],
    hyperparams: tuple[Any, ...],
    mask: Mask,
    *,
    keep_fixed: bool = False,
    sequential: bool = False,
) -> optax.GradientTransformation:
    """The projection builder: lands on ``proj_fn(z, *hyperparams at the count)``; errors name ``name``.

    ``keep_fixed``: entries that ``proj_fn`` leaves unchanged keep the incoming update;
    ``sequential``: leaves landed one after the other (both: see
    :func:`jaxreg._transforms._base.landing_transform`).
    """
    return masked(
        landing_transform(name, proj_fn, hyperparams, keep_fixed=keep_fixed, sequential=sequential), mask
    )


def proximal(
    prox_fn: Callable[[jax.Array, Any], jax.Array],
    strength: optax.ScalarOrSchedule,
    learning_rate: optax.ScalarOrSchedule,
    *,
    mask: Mask = None,
    factors: Any = None,
) -> optax.GradientTransformation:
    r"""Any proximal operator as a proximal gradient step, placed **last** in the chain.

    With $z = w + u$ it lands on ``prox_fn(z, learning_rate_t * strength_t)``
    per selected leaf: for ``prox_fn(z, t)`` $= \mathrm{prox}_{t g}(z) =
    \arg\min_x \tfrac12\|x - z\|_2^2 + t\,g(x)$, one step of proximal gradient
    descent on $J(w) + \lambda g(w)$. :func:`prox_l1`, :func:`prox_elastic_net`,
    :func:`prox_ridge`, :func:`prox_group_lasso`, :func:`prox_sparse_group_lasso`
    and :func:`prox_nuclear_norm` are built this way. ``learning_rate`` must be
    the step size that scaled the incoming updates, e.g.
    ``optax.chain(optax.sgd(lr), jaxreg.proximal(prox_fn, lam, lr))``.

    The signature ``prox_fn(x, t)`` is jaxopt's (``jaxopt.prox.prox_lasso(x,
    l1reg)``), so its prox functions work as they are; so does
    :func:`jaxreg.soft_threshold`. With ``optax.inject_hyperparams`` pass
    ``static_args=("prox_fn",)``: optax would otherwise call ``prox_fn`` as a
    schedule of the step count.

    Args:
      prox_fn: ``(z, t) -> array`` of the shape of ``z``, traceable by JAX. ``z``
        is a leaf of ``params + updates`` (a JAX array); ``t`` is the product
        $\eta_t\lambda_t$ (a Python float, or a JAX scalar when a hyperparameter
        is a JAX scalar or a schedule). The result is cast to the update's dtype.
      strength: $\lambda \ge 0$ (float, JAX scalar or optax schedule).
      learning_rate: $\eta \ge 0$ (float, JAX scalar or optax schedule).
      mask: which leaves (``optax.masked`` semantics); only float leaves are ever
        selected.
      factors: per-leaf multipliers of the strength: a pytree of non-negative numbers
        (or a prefix of one) or a callable ``params -> pytree`` such as
        :func:`jaxreg.masks.factors`; a leaf of factor 0 keeps its update exactly.
        With factors the state is a tuple of one state per distinct factor.

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, optax, jaxreg
      >>> tx = optax.chain(optax.sgd(1.0), jaxreg.proximal(jaxreg.soft_threshold, 0.5, 1.0))
      >>> params = {"w": jnp.array([2.0, 0.3, -1.0])}
      >>> updates, _ = tx.update({"w": jnp.zeros(3)}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)["w"].tolist()
      [1.5, 0.0, -0.5]

    References:
      Parikh and Boyd, "Proximal Algorithms", Foundations and Trends in
      Optimization, 2014 (https://web.stanford.edu/~boyd/papers/prox_algs.html).
    """
    if not callable(prox_fn):
        raise TypeError(f"prox_fn must be a callable (z, t) -> array, got {prox_fn!r}")
    check_non_negative("strength", strength, allow_schedule=True)
    check_non_negative("learning_rate", learning_rate, allow_schedule=True)
    return build_proximal("proximal", prox_fn, (strength,), learning_rate, mask, factors)


def projected(
    proj_fn: Callable[[jax.Array], jax.Array], *, mask: Mask = None
) -> optax.GradientTransformation:
    r"""Any projection as a transform, placed **last** in the chain.

    With $z = w + u$ it lands on ``proj_fn(z)`` per selected leaf: projected
    gradient descent when ``proj_fn`` is the Euclidean projection onto a convex
    set. Every function of ``optax.projections`` works, directly or through
    ``functools.partial`` for its extra arguments (``projection_box`` with
    ``lower=`` and ``upper=``, ``projection_l2_ball`` with ``scale=``).
    Note that ``proj_fn`` sees one whole leaf: ``projection_simplex`` makes the
    entries of each leaf sum to one, not the rows. An entry that ``proj_fn``
    leaves unchanged keeps the incoming update, so it lands where the plain step
    does, bit for bit: :func:`non_negative` is
    ``projected(optax.projections.projection_non_negative)``, and so also
    ``optax.keep_params_nonnegative``. The constraints (:func:`max_norm`,
    :func:`unit_norm`, :func:`min_max_norm`) are built by the same builder.
    :func:`keep_top_k` and :func:`keep_n_of_m` are projections too (onto sets
    of sparse arrays) but are not built on it: one selects across leaves
    (``scope="global"``) and both can keep state (``freeze=True``).

    Args:
      proj_fn: ``z -> array`` of the shape of ``z``, traceable by JAX; the result
        is cast to the update's dtype.
      mask: which leaves (``optax.masked`` semantics); only float leaves are ever
        selected.

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.

    Examples:
      >>> import functools, jax.numpy as jnp, optax, jaxreg
      >>> box = functools.partial(optax.projections.projection_box, lower=-1.0, upper=1.0)
      >>> tx = optax.chain(optax.sgd(1.0), jaxreg.projected(box))
      >>> params = {"w": jnp.array([2.0, 0.5, -3.0])}
      >>> updates, _ = tx.update({"w": jnp.zeros(3)}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)["w"].tolist()
      [1.0, 0.5, -1.0]

    References:
      Parikh and Boyd, "Proximal Algorithms", 2014, sec. 1.2 (the projection is the
      prox of the indicator function) (https://web.stanford.edu/~boyd/papers/prox_algs.html);
      ``optax.projections``.
    """
    if not callable(proj_fn):
        raise TypeError(f"proj_fn must be a callable z -> array, got {proj_fn!r}")
    return build_projected("projected", proj_fn, (), mask, keep_fixed=True)
