"""What every jaxreg optax transform shares: the step-count state, schedules, the landing builder.

Transforms evaluate their hyperparameters (floats, JAX scalars or optax
schedules) at the step ``count`` kept in :class:`CountState`. Transforms that
land on a projection or a proximal map of ``params + updates`` are built with
:func:`landing_transform`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxreg._masking import key_path_str


class CountState(NamedTuple):
    """State of jaxreg's transforms: the step count at which schedules are evaluated."""

    count: jax.Array  # pyright: ignore[reportIncompatibleMethodOverride]  # shape (), int32; +1 per update


def count_init(params: Any) -> CountState:
    del params
    return CountState(count=jnp.zeros([], jnp.int32))


def count_next(state: CountState) -> CountState:
    return CountState(count=jnp.asarray(optax.safe_increment(state.count)))


def value_at(value: Any, count: jax.Array) -> Any:
    """Evaluates a float, JAX scalar or optax schedule at the step ``count``."""
    return value(count) if callable(value) else value


def require_params(params: Any, name: str) -> None:
    if params is None:
        raise ValueError(f"{name}.update needs params: call update(updates, state, params)")


def landing_transform(name, prox_leaf, hyperparams) -> optax.GradientTransformation:
    """Builds the transform ``u -> prox(w + u, *hyperparams at count) - w``, leaf by leaf.

    Every "land on a projection or prox of ``params + updates``" transform (the
    proximal steps here, the constraints of :mod:`jaxreg._transforms._constraints`) is built
    with it. A ``ValueError`` raised by ``prox_leaf`` (e.g. an axis out of range
    for a leaf) is re-raised naming the transform, the leaf's key path and shape.
    """

    def update_fn(updates, state, params=None):
        require_params(params, name)
        values = [value_at(h, state.count) for h in hyperparams]

        def leaf(path, u, w):
            z = w + u
            try:
                projected = prox_leaf(z, *values)
            except ValueError as e:
                where = key_path_str(path)
                raise ValueError(f"{name}: params leaf '{where}' of shape {w.shape}: {e}") from None
            return (projected - w).astype(u.dtype)

        return jax.tree_util.tree_map_with_path(leaf, updates, params), count_next(state)

    return optax.GradientTransformation(count_init, update_fn)
