"""Ready-made ``mask`` callables: ``params -> bool pytree``, with ``optax.masked`` semantics.

They work on plain dicts, Flax linen params and ``flax.nnx.State`` alike (any
pytree), and can be passed to jaxreg's and optax's ``mask=`` arguments.

**With** ``optax.inject_hyperparams``, declare a callable mask static::

    optax.inject_hyperparams(jaxreg.add_l1, static_args=("mask",))(strength=1e-4, mask=weights_only)

otherwise optax takes every callable argument for a schedule and calls it on the
step count, and the "mask" it gets back selects nothing. The masks of this
module raise a ``TypeError`` when called on a step count; a mask of your own
would silently disable the regularization.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg._masking import is_float_leaf, key_path_str


def _reject_step_count(params: Any, name: str) -> None:
    # optax.inject_hyperparams calls a callable argument it takes for a schedule on the step
    # count, a 0-d int32 array: no params pytree is a bare integer scalar.
    if isinstance(params, jax.Array) and params.ndim == 0 and jnp.issubdtype(params.dtype, jnp.integer):
        raise TypeError(
            f"jaxreg.masks.{name} was called on a step count, not on params: optax.inject_hyperparams "
            "takes a callable mask for a schedule; pass static_args=('mask',)"
        )


def weights_only(params: Any) -> Any:
    """True for float leaves with ``ndim >= 2`` (kernels, embeddings), False otherwise.

    Biases, norm scales and other vectors are not selected, the usual choice for
    weight decay (e.g. BERT and GPT training recipes exclude them).

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> jaxreg.masks.weights_only({"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)})
      {'bias': False, 'kernel': True}
    """
    _reject_step_count(params, "weights_only")
    return jax.tree.map(lambda x: is_float_leaf(x) and np.ndim(x) >= 2, params)


def by_path(include: str | None = None, exclude: str | None = None) -> Callable[[Any], Any]:
    """A mask that selects leaves by their '/'-joined key path.

    A leaf is selected when ``include`` is None or ``re.search(include, path)``
    matches, and ``exclude`` is None or does not match. Paths join the pytree's
    keys with '/': ``params/Dense_0/kernel`` for linen, ``layers/0/kernel`` or
    ``linear/kernel`` for ``nnx.State`` (an nnx ``Param`` wrapper adds no key).

    Args:
      include: regular expression a selected path must match (``re.search``).
      exclude: regular expression a selected path must not match.

    Returns:
      A callable ``params -> bool pytree``.

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
      >>> jaxreg.masks.by_path(exclude=r"(bias|scale|embedding)")(params)
      {'dense': {'bias': False, 'kernel': True}}
    """
    inc = None if include is None else re.compile(include)
    exc = None if exclude is None else re.compile(exclude)

    def mask_fn(params: Any) -> Any:
        _reject_step_count(params, "by_path")

        def select(path, _):
            p = key_path_str(path)
            return (inc is None or inc.search(p) is not None) and (exc is None or exc.search(p) is None)

        return jax.tree_util.tree_map_with_path(select, params)

    return mask_fn


__all__ = ["by_path", "weights_only"]
