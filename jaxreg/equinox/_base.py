"""The one base class of jaxreg's Equinox dropout-family modules: the ``inference`` flag and the key."""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax

from jaxreg._typing import Sampler
from jaxreg._validation import is_zero


class StochasticModule(eqx.Module):
    """Base of the Equinox dropout-family modules: resolves the mode and the key, then calls the op.

    The conventions are those of `equinox.nn.Dropout`: an ``inference`` field
    (set for a whole model by ``eqx.nn.inference_mode``), overridden by an
    ``inference=`` call argument; the key is the keyword-only ``key=`` of the
    call; in inference mode, or for a concrete strength of 0, the op runs
    deterministically and no key is needed.

    A subclass declares its strength (a field named by ``strength_field``,
    ``"rate"`` by default; a regular field, so that ``eqx.tree_at`` can change it
    and an array of rates can be stacked with the layers) and its options (static
    fields), and implements ``_apply(key, x, inference)`` by calling its op.

    Attributes:
      inference: if true, the op's inference-time output and no key used
        (keyword-only).
      sampler: the mask and noise sampler of the op (``None``: the library
        default, ``"fast"``; ``"jax"``: ``jax.random``), keyword-only and static.
    """

    inference: bool = eqx.field(default=False, kw_only=True)
    sampler: Sampler = eqx.field(default=None, static=True, kw_only=True)
    strength_field: ClassVar[str] = "rate"

    def _apply(self, key: jax.Array | None, x: jax.Array, inference: bool) -> jax.Array:
        raise NotImplementedError

    def __call__(
        self, x: jax.Array, *, key: jax.Array | None = None, inference: bool | None = None
    ) -> jax.Array:
        """Applies the op.

        Args:
          x: the array to perturb.
          key: a ``jax.random`` key; needed in training mode for a nonzero strength.
          inference: overrides the ``inference`` field when not ``None``.

        Returns:
          The op's output, of the shape and dtype of ``x``.
        """
        if inference is None:
            inference = self.inference
        strength: Any = getattr(self, self.strength_field)
        if inference or is_zero(strength):
            return self._apply(None, x, bool(inference))
        if key is None:
            raise ValueError(
                f"{type(self).__name__} needs a key in training mode: call it with key=jax.random.key(...), "
                "or run it in inference mode (inference=True, or eqx.nn.inference_mode(model))"
            )
        return self._apply(key, x, False)
