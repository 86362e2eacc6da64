"""What every jaxreg optax transform shares: the step-count state, schedules, the landing builder.

Transforms evaluate their hyperparameters (floats, JAX scalars or optax
schedules) at the step ``count`` kept in :class:`CountState`. Transforms that
land on a projection or a proximal map of ``params + updates`` are built with
:func:`landing_transform`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxreg._masking import broadcast_prefix, key_path_str, masked, resolve_mask
from jaxreg._norms import on_one_device, one_pass_candidate
from jaxreg._typing import Mask
from jaxreg._validation import as_float, concrete_float, is_concrete


class CountState(NamedTuple):
    """State of jaxreg's transforms: the step count at which schedules are evaluated."""

    count: jax.Array  # pyright: ignore[reportIncompatibleMethodOverride]  # shape (), int32; +1 per update


def count_init(params: Any) -> CountState:
    del params
    return CountState(count=jnp.zeros([], jnp.int32))


def count_next(state: CountState) -> CountState:
    return CountState(count=jnp.asarray(optax.safe_increment(state.count)))


def value_at(value: Any, count: jax.Array) -> Any:
    """Evaluates a float, JAX scalar or optax schedule at the step ``count``.

    Python and NumPy integers come back as floats, so that ``2**31`` never
    reaches ``jit`` as an ``int32``.
    """
    return as_float(value(count) if callable(value) else value)


def times(s: Any, x: jax.Array) -> jax.Array:
    """``s * x`` (promoted as JAX promotes it), finite wherever the product is.

    A concrete ``s`` beyond the range of ``x``'s dtype (``add_l1(1e39)`` on
    float32, ``1e5`` on float16) would round to ``inf`` first, and ``inf * 0``
    is NaN: it is applied as its mantissa times a power of two instead
    (``jnp.ldexp``), so ``s * 0 = 0`` and products that fit stay finite.
    """
    if is_concrete(s):
        v = float(s)
        if math.isfinite(v) and abs(v) > float(jnp.finfo(x.dtype).max):
            mantissa, exponent = math.frexp(v)
            return jnp.ldexp(mantissa * x, exponent)
    return s * x


def require_params(params: Any, name: str) -> Any:
    """Returns ``params``, raising a ``ValueError`` naming the transform if they are missing."""
    if params is None:
        raise ValueError(f"{name}.update needs params: call update(updates, state, params)")
    return params


def landing_transform(
    name, prox_leaf, hyperparams, *, keep_fixed: bool = False, sequential: bool = False
) -> optax.GradientTransformation:
    """Builds the transform ``u -> prox(w + u, *hyperparams at count) - w``, leaf by leaf.

    Every "land on a projection or prox of ``params + updates``" transform (the
    proximal steps here, the constraints of :mod:`jaxreg._transforms._constraints`) is built
    with it. A ``ValueError`` raised by ``prox_leaf`` (e.g. an axis out of range
    for a leaf) is re-raised naming the transform, the leaf's key path and shape.
    With ``keep_fixed``, an entry that ``prox_leaf`` leaves unchanged (``prox(z) == z``)
    keeps the update ``u`` itself, so it lands where the plain step does, bit for bit
    (also for infinite entries and the sign of a zero).

    ``sequential=True`` is for a ``prox_leaf`` that reads ``z = w + u`` more than
    once (a norm, then the rescaling), so that XLA writes ``z`` out as a temporary
    the size of the leaf. It returns ``(projected, token)``, ``token`` an array
    computed from ``z`` before the rescaling (its norms). The next leaf's ``z`` is
    made to depend on it (``w + (u + (-0.0 * |t|))``, ``t`` the first entry of
    ``token`` made finite: exactly ``w + u``), so that XLA computes the leaves one
    after the other and reuses one such temporary, instead of holding one per leaf
    at once (on CPU, a temporary buffer of more than 32 MiB is mapped afresh, page
    by page, on every call). The chain starts at the first large leaf on one
    device (:func:`jaxreg._norms.one_pass_candidate`): on a mesh the dependency
    would cost a collective, and small leaves alone need no ordering.
    """

    def update_fn(updates, state, params=None):
        require_params(params, name)
        values = [value_at(h, state.count) for h in hyperparams]
        order: list[jax.Array] = []  # -0.0, computed from the previous leaf's token

        def leaf(path, u, w):
            if order:
                u = u + order[0].astype(u.dtype)
            z = w + u
            try:
                projected = prox_leaf(z, *values)
            except ValueError as e:
                where = key_path_str(path)
                raise ValueError(f"{name}: params leaf '{where}' of shape {w.shape}: {e}") from None
            token = None
            if sequential:
                projected, token = projected
            # The chain starts at the first large leaf; every leaf after it passes it on.
            chain = (order and on_one_device(z)) or one_pass_candidate(z)
            if token is not None and token.size and chain:
                t = token.reshape(-1)[0]
                order[:] = [-0.0 * jnp.abs(jnp.where(jnp.isfinite(t), t, 0))]
            update = (projected - w).astype(u.dtype)
            return jnp.where(projected == z, u, update) if keep_fixed else update

        return jax.tree_util.tree_map_with_path(leaf, updates, params), count_next(state)

    return optax.GradientTransformation(count_init, update_fn)


def scaled(value: Any, factor: float) -> Any:
    """``factor * value`` for a float, a JAX scalar or an optax schedule (``value`` itself for 1)."""
    if factor == 1.0:
        return value
    if callable(value):
        schedule: Callable[[Any], Any] = value
        return lambda count: factor * schedule(count)
    return factor * as_float(value)


def _factor_per_leaf(factors: Any, tree: Any) -> Any:
    """A Python float per leaf of ``tree``: ``factors`` (or ``factors(tree)``) broadcast as a mask is."""
    per_leaf = broadcast_prefix("factors", factors, tree)

    def check(path, f):
        name = f"factors at '{key_path_str(path)}'"
        v = concrete_float(name, f)
        if v is None:
            raise TypeError(f"{name} must be a concrete number (it selects the program), got {f!r}")
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {f!r}")
        return v

    return jax.tree_util.tree_map_with_path(check, per_leaf)


def masked_with_factors(
    build: Callable[[float], optax.GradientTransformation], mask: Mask, factors: Any
) -> optax.GradientTransformation:
    """``masked(build(1.0), mask)``, or with ``factors``, ``build(f)`` on the leaves whose factor is ``f``.

    ``build(f)`` is the transform with every strength multiplied by ``f``
    (:func:`scaled`). With ``factors`` (a pytree of numbers, a prefix of one, or a
    callable ``params -> pytree``, e.g. :func:`jaxreg.masks.factors`), the selected
    leaves are grouped by factor and each group gets ``build(f)`` under its own
    mask; leaves of factor 0 are in no group, so their updates pass through
    exactly. The state is then a tuple of the groups' states, in increasing
    order of factor.
    """
    if factors is None:
        return masked(build(1.0), mask)

    def groups(tree: Any) -> list[tuple[float, Any]]:
        flags = resolve_mask(mask, tree)
        per_leaf = _factor_per_leaf(factors, tree)
        pairs = zip(jax.tree.leaves(flags), jax.tree.leaves(per_leaf), strict=True)
        values = sorted({f for keep, f in pairs if keep and f != 0.0})
        return [
            (v, jax.tree.map(lambda keep, f, v=v: bool(keep) and f == v, flags, per_leaf)) for v in values
        ]

    def init_fn(params: Any) -> tuple[Any, ...]:
        return tuple(masked(build(v), group).init(params) for v, group in groups(params))

    def update_fn(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        found = groups(updates if params is None else params)
        if len(found) != len(state):
            raise ValueError(
                f"factors give {len(found)} distinct nonzero factors here but {len(state)} at init: "
                "the factors of the params must not change between init and update"
            )
        new_state = []
        for (v, group), group_state in zip(found, state, strict=True):
            updates, group_state = masked(build(v), group).update(updates, group_state, params)
            new_state.append(group_state)
        return updates, tuple(new_state)

    return optax.GradientTransformation(init_fn, update_fn)
