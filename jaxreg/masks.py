"""Ready-made ``mask`` callables: ``params -> bool pytree``, with ``optax.masked`` semantics.

They work on plain dicts, Flax linen params and ``flax.nnx.State`` alike (any
pytree), and can be passed to jaxreg's and optax's ``mask=`` arguments.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax

from jaxreg._tree import is_float_leaf, key_path_str


def weights_only(params: Any) -> Any:
    """True for float leaves with ``ndim >= 2`` (kernels, embeddings), False otherwise.

    Biases, norm scales and other vectors are not selected, the usual choice for
    weight decay (e.g. BERT and GPT training recipes exclude them).

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> jaxreg.masks.weights_only({"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)})
      {'bias': False, 'kernel': True}
    """
    return jax.tree.map(lambda x: is_float_leaf(x) and x.ndim >= 2, params)


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
        def select(path, _):
            p = key_path_str(path)
            return (inc is None or inc.search(p) is not None) and (exc is None or exc.search(p) is None)

        return jax.tree_util.tree_map_with_path(select, params)

    return mask_fn


__all__ = ["by_path", "weights_only"]
