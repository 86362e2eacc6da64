"""Masks over parameter pytrees: the one helper that applies a per-leaf rule.

A ``mask`` follows ``optax.masked``: ``None`` (every leaf), a pytree of bools
with the structure of the params or a prefix of it, or a callable that maps
the params (or updates) to such a pytree. Only leaves with a real floating dtype
are ever selected: integer, bool and ``float0`` leaves pass through unchanged, and
``None`` leaves and ``optax.MaskedNode`` are empty subtrees that no rule sees.
Complex leaves are not supported (norms, signs and thresholds of complex numbers
are not what these rules compute): a complex leaf that the mask selects raises a
``TypeError`` naming its key path; exclude it with ``mask=``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxreg._typing import Mask


def is_float_leaf(x: Any) -> bool:
    """True for array leaves with a real floating dtype (not complex, integer, bool or float0)."""
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.floating)


def key_path_str(path: tuple) -> str:
    """A key path joined with '/': ``dense/kernel``, ``layers/0/kernel``, ``params/Dense_0/bias``.

    The one spelling of a leaf's path in jaxreg: what :func:`jaxreg.masks.by_path`
    matches, the key of the Flax wrappers' per-weight state, and what error
    messages name. Accepts ``jax.tree_util`` key entries (dict keys, attribute
    names, sequence indices) and the raw keys of ``nnx`` flat-state paths.

    A trailing ``.value`` attribute key, the array inside an ``nnx.Variable`` of an
    ``nnx.State``, is left out, so an NNX parameter reads ``linear/kernel`` as in
    the module's own attribute path.
    """
    if len(path) > 1 and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == "value":
        path = path[:-1]
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def resolve_mask(mask: Mask, tree: Any) -> Any:
    """Returns a bool per leaf of ``tree``: the mask, broadcast, and float leaves only.

    Raises:
      ValueError: if ``mask`` is not a prefix of ``tree``; the message names the
        key path where the two differ.
      TypeError: if the mask selects a complex leaf; the message names its key path.
    """
    if mask is None:
        mask = True
    elif callable(mask):
        mask = mask(tree)
    try:
        flags = jax.tree.map(lambda m, sub: jax.tree.map(lambda _: bool(m), sub), mask, tree)
    except ValueError as e:
        where = str(e).replace("tree_map tree", "mask")
        raise ValueError(f"mask does not match the structure of params: {where}") from None

    def leaf_flag(path, keep, leaf):
        dtype = getattr(leaf, "dtype", None)
        if keep and dtype is not None and jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(
                f"params leaf '{key_path_str(path)}' has the complex dtype {dtype}: complex leaves are "
                "not supported; exclude them with mask="
            )
        return keep and is_float_leaf(leaf)

    return jax.tree_util.tree_map_with_path(leaf_flag, flags, tree)


def selected_leaves(tree: Any, mask: Mask) -> list[tuple[str, jax.Array]]:
    """``(key path, leaf)`` for the float leaves of ``tree`` that ``mask`` selects, in tree order."""
    flags = jax.tree.leaves(resolve_mask(mask, tree))
    items = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(key_path_str(path), leaf) for (path, leaf), keep in zip(items, flags, strict=True) if keep]


def masked(inner: optax.GradientTransformation, mask: Mask) -> optax.GradientTransformation:
    """Applies ``inner`` to the float leaves of the params that ``mask`` selects.

    Every jaxreg transform is built as ``masked(inner, mask)``, so ``inner``
    only sees float leaves and the others pass through unchanged. Unlike
    ``optax.masked``, a callable mask and the float test are applied to the
    params (not the updates, whose dtypes an earlier transform may have
    promoted), falling back to the updates when no params are given.
    """

    def init_fn(params):
        return optax.masked(inner, resolve_mask(mask, params)).init(params)

    def update_fn(updates, state, params=None):
        mask_tree = resolve_mask(mask, updates if params is None else params)
        return optax.masked(inner, mask_tree).update(updates, state, params)

    return optax.GradientTransformation(init_fn, update_fn)
