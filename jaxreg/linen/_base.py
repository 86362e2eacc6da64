"""The one base class of jaxreg's linen dropout-family modules: mode and key resolution."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import flax.linen as nn
import jax

from jaxreg._validation import is_zero


class StochasticModule(nn.Module):
    """Base of the linen dropout-family modules: resolves the mode and the key, then calls the op.

    The conventions are those of `flax.linen.Dropout`: ``deterministic`` is a
    field *or* a call argument (``flax.linen.merge_param``: exactly one of the
    two is set); in training the key is the call-time ``rng`` if given, else
    ``self.make_rng(self.rng_collection)``; a concrete strength of 0 draws no key.

    A subclass declares its fields (its strength, named by ``strength_field``,
    ``"rate"`` by default; ``deterministic: bool | None = None``;
    ``rng_collection: str = "dropout"``; its options) and implements
    ``_apply(key, inputs, deterministic)`` by calling its functional op.
    """

    strength_field: ClassVar[str] = "rate"

    if TYPE_CHECKING:  # declared by each subclass (dataclass fields cannot follow defaults here)
        deterministic: bool | None
        rng_collection: str

    def _apply(self, key: jax.Array | None, inputs: jax.Array, deterministic: bool) -> jax.Array:
        raise NotImplementedError

    def __call__(
        self, inputs: jax.Array, deterministic: bool | None = None, rng: jax.Array | None = None
    ) -> jax.Array:
        """Applies the op; ``deterministic`` and ``rng`` as in `flax.linen.Dropout`.

        Args:
          inputs: the array to perturb.
          deterministic: overrides the field of the same name (exactly one of the
            two must be set); if true, the op's inference-time output, no key drawn.
          rng: a key to use instead of ``self.make_rng(self.rng_collection)``.

        Returns:
          The op's output, of the shape and dtype of ``inputs``.
        """
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        strength: Any = getattr(self, self.strength_field)
        if deterministic or is_zero(strength):
            return self._apply(None, inputs, bool(deterministic))
        if rng is None:
            rng = self.make_rng(self.rng_collection)
        return self._apply(rng, inputs, False)
