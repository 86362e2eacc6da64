"""Masks over parameter pytrees: the one helper that applies a per-leaf rule.

A ``mask`` follows ``optax.masked``: ``None`` (every leaf), a pytree of bools
with the structure of the params or a prefix of it, or a callable that maps
the params (or updates) to such a pytree. As in ``optax.masked``, a mask is
called only if it is a callable whose pytree leaves are all callables (a plain
function): a callable pytree of bools, such as an Equinox module, is used as a
pytree. Only float leaves are ever selected: arrays and NumPy scalars with a
real floating dtype, and Python floats (as in optax and jaxopt); integer, bool
and ``float0`` leaves and Python ints and bools pass through unchanged, and
``None`` leaves and ``optax.MaskedNode`` are empty subtrees that no rule sees.
Complex leaves are not supported (norms, signs and thresholds of complex numbers
are not what these rules compute): a complex leaf that the mask selects raises a
``TypeError`` naming its key path; exclude it with ``mask=``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreg._typing import Mask


def leaf_dtype(x: Any) -> Any:
    """The dtype of a leaf: its own for arrays and NumPy scalars, JAX's for Python floats and complexes.

    ``None`` for every other leaf (Python ints and bools, strings, objects): they
    are never selected.
    """
    dtype = getattr(x, "dtype", None)
    if dtype is None and isinstance(x, (float, complex)):  # bool and int are not float
        return jnp.result_type(x)
    return dtype


def is_float_leaf(x: Any) -> bool:
    """True for float leaves: a real floating dtype (not complex, integer, bool or float0), or a Python float."""
    dtype = leaf_dtype(x)
    return dtype is not None and jnp.issubdtype(dtype, jnp.floating)


def as_array_leaf(x: Any) -> Any:
    """A selected leaf as rules see it: a JAX array (Python floats and NumPy values converted).

    NumPy values take JAX's dtype (``np.float64`` is float32 unless
    ``jax_enable_x64``), as they would in any JAX computation.
    """
    return jnp.asarray(x) if isinstance(x, (float, np.ndarray, np.generic)) else x


def is_mask_callable(mask: Mask) -> bool:
    """Whether ``mask`` is a function to call on the params, by ``optax.masked``'s rule.

    True when every pytree leaf of ``mask`` is callable (a plain function is one
    callable leaf); a callable pytree with non-callable leaves (an Equinox
    module of bools) is a mask pytree, not a function.
    """
    callable_leaves = jax.tree.leaves(jax.tree.map(callable, mask))
    return len(callable_leaves) > 0 and all(callable_leaves)


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


def broadcast_prefix(name: str, prefix: Any, tree: Any) -> Any:
    """``prefix`` (or ``prefix(tree)`` for a callable, optax's rule) with each value copied to every leaf below it.

    The one broadcast of ``mask=`` and ``factors=``: a pytree with the structure of
    ``tree`` or a prefix of it; a ``ValueError`` names ``name`` and where the two differ.
    """
    if is_mask_callable(prefix):
        prefix = prefix(tree)
    try:
        return jax.tree.map(lambda value, sub: jax.tree.map(lambda _: value, sub), prefix, tree)
    except ValueError as e:
        where = str(e).replace("tree_map tree", name)
        raise ValueError(f"{name} does not match the structure of params: {where}") from None


def resolve_mask(mask: Mask, tree: Any) -> Any:
    """Returns a bool per leaf of ``tree``: the mask, broadcast, and float leaves only.

    Raises:
      ValueError: if ``mask`` is not a prefix of ``tree``; the message names the
        key path where the two differ.
      TypeError: if the mask selects a complex leaf; the message names its key path.
    """
    if mask is None:
        mask = True
    flags = jax.tree.map(bool, broadcast_prefix("mask", mask, tree))

    def leaf_flag(path, keep, leaf):
        dtype = leaf_dtype(leaf)
        if keep and dtype is not None and jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(
                f"params leaf '{key_path_str(path)}' has the complex dtype {dtype}: complex leaves are "
                "not supported; exclude them with mask="
            )
        return keep and is_float_leaf(leaf)

    return jax.tree_util.tree_map_with_path(leaf_flag, flags, tree)


def selected_leaves(tree: Any, mask: Mask) -> list[tuple[str, jax.Array]]:
    """``(key path, leaf)`` for the float leaves of ``tree`` that ``mask`` selects, in tree order.

    Python floats come back as JAX scalars (:func:`as_array_leaf`).
    """
    flags = jax.tree.leaves(resolve_mask(mask, tree))
    items = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [
        (key_path_str(path), as_array_leaf(leaf))
        for (path, leaf), keep in zip(items, flags, strict=True)
        if keep
    ]


def masked(inner: optax.GradientTransformation, mask: Mask) -> optax.GradientTransformation:
    """Applies ``inner`` to the float leaves of the params that ``mask`` selects.

    Every jaxreg transform is built as ``masked(inner, mask)``, so ``inner``
    only sees float leaves (Python floats as JAX scalars) and the others pass
    through unchanged. As optax's own transforms, the state is ``inner``'s state
    when ``mask`` is ``None`` and ``optax.MaskedState(inner_state)`` otherwise.
    ``None`` updates pass through as in optax: a ``None`` leaf stays ``None``, and
    ``update(None, state, params)`` returns ``None`` updates (and advances the
    state). Unlike ``optax.masked``, a callable mask and the float test are
    applied to the params (not the updates, whose dtypes an earlier transform
    may have promoted), falling back to the updates when no params are given.
    """

    def init_fn(params):
        if mask is None:  # the inner states of jaxreg's transforms do not depend on the leaves
            resolve_mask(mask, params)  # the leaf checks (complex leaves), as at every update
            return inner.init(params)
        # A function of the params, so that optax.masked can pass optax.tree_utils.tree_map_params's
        # placeholder through without resolving the mask on it.
        return optax.masked(inner, lambda p: resolve_mask(mask, p)).init(params)

    def update_fn(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        flags = resolve_mask(mask, updates if params is None else params)
        if updates is None:
            active = jax.tree.map(lambda _: False, flags)
        else:  # a None update (no gradient for that leaf) is not transformed
            active = jax.tree.map(lambda f, u: f and u is not None, flags, updates)

        def select(tree):
            return jax.tree.map(lambda a, x: as_array_leaf(x) if a else optax.MaskedNode(), active, tree)

        inner_state = state if mask is None else state.inner_state
        # With no updates at all every leaf is masked out (``active`` is all False).
        inner_updates = select(active if updates is None else updates)
        inner_params = None if params is None else select(params)
        new_inner, inner_state = inner.update(inner_updates, inner_state, inner_params)
        state = inner_state if mask is None else optax.MaskedState(inner_state=inner_state)
        if updates is None:
            return None, state
        return jax.tree.map(lambda a, new, old: new if a else old, active, new_inner, updates), state

    return optax.GradientTransformation(init_fn, update_fn)
