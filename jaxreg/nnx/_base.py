"""The one base class of jaxreg's NNX dropout-family modules: mode, rng stream and key resolution."""

from __future__ import annotations

from typing import Any, ClassVar

import jax
from flax import nnx

from jaxreg._typing import Sampler
from jaxreg._validation import is_zero

RngsLike = nnx.Rngs | nnx.RngStream | jax.Array | None


class StochasticModule(nnx.Module):
    """Base of the NNX dropout-family modules: owns the rng stream, the mode and the key.

    The conventions are those of `flax.nnx.Dropout`: ``deterministic`` is set at
    construction and switched by ``model.train()`` / ``model.eval()``,
    ``set_attributes`` and ``nnx.view``; a call-time ``deterministic`` takes
    precedence. Keys come from an ``nnx.RngStream`` forked at construction from
    ``rngs[rng_collection]``; an ``nnx.Rngs``, ``nnx.RngStream`` or key passed as
    ``rngs=`` at call time takes precedence. A concrete strength of 0 draws no key.
    A strength given as a JAX array is pytree data (a Python number stays a
    static attribute), so stacks built with ``nnx.vmap`` get one rate per layer.

    A subclass's ``__init__`` calls ``super().__init__(deterministic=...,
    rng_collection=..., rngs=...)`` and stores its strength (the attribute named
    by ``strength_field``, ``"rate"`` by default) and options; its
    ``_apply(key, inputs, deterministic)`` calls its functional op.

    Args:
      deterministic: if true, the op's inference-time output and no key drawn.
      rng_collection: the rng stream the keys are drawn from.
      rngs: an ``nnx.Rngs`` or ``nnx.RngStream`` to fork the module's stream from.
    """

    strength_field: ClassVar[str] = "rate"
    sampler: Sampler  # set by each subclass's __init__

    def __init__(self, *, deterministic: bool | None, rng_collection: str, rngs: RngsLike) -> None:
        self.deterministic = deterministic
        self.rng_collection = rng_collection
        if isinstance(rngs, nnx.Rngs):
            self.rngs: nnx.RngStream | None = rngs[rng_collection].fork()
        elif isinstance(rngs, nnx.RngStream):
            self.rngs = rngs.fork()
        elif rngs is None:
            self.rngs = nnx.data(None)
        else:
            raise TypeError(f"rngs must be an nnx.Rngs, an nnx.RngStream or None, got {type(rngs)}")

    def __setattr__(self, name: str, value: Any) -> None:
        # A strength given as a JAX array is pytree data, not a static attribute: built
        # under nnx.vmap (one rate per stacked layer) it is stacked, and nnx.scan slices it.
        if name == self.strength_field and isinstance(value, jax.Array):
            value = nnx.data(value)
        super().__setattr__(name, value)

    def set_view(self, deterministic: bool | None = None) -> None:
        """Used by ``nnx.view``.

        Args:
          deterministic: if True, disables the random perturbation.
        """
        if deterministic is not None:
            self.deterministic = deterministic

    def _apply(self, key: jax.Array | None, inputs: jax.Array, deterministic: bool) -> jax.Array:
        raise NotImplementedError

    def __call__(
        self, inputs: jax.Array, *, deterministic: bool | None = None, rngs: RngsLike = None
    ) -> jax.Array:
        """Applies the op; call-time ``deterministic`` and ``rngs`` take precedence.

        Args:
          inputs: the array to perturb.
          deterministic: overrides the attribute of the same name.
          rngs: an ``nnx.Rngs``, ``nnx.RngStream`` or key to use instead of the
            module's own stream.

        Returns:
          The op's output, of the shape and dtype of ``inputs``.
        """
        deterministic, key = self._mode_and_key(deterministic, rngs)
        return self._apply(key, inputs, deterministic)

    def _mode_and_key(self, deterministic: bool | None, rngs: RngsLike) -> tuple[bool, jax.Array | None]:
        """Returns ``(deterministic, key)``; ``key`` is ``None`` when no random work is done."""
        name = type(self).__name__
        if deterministic is None:
            deterministic = self.deterministic
        if deterministic is None:
            raise ValueError(
                f"No `deterministic` argument was provided to {name}: pass it to the "
                "constructor or the call, call model.train() / model.eval(), or use nnx.view."
            )
        strength: Any = getattr(self, self.strength_field)
        if deterministic or is_zero(strength):
            return bool(deterministic), None
        if rngs is None:
            rngs = self.rngs
        if isinstance(rngs, nnx.Rngs):
            return False, rngs[self.rng_collection]()
        if isinstance(rngs, nnx.RngStream):
            return False, rngs()
        if isinstance(rngs, jax.Array):
            return False, rngs
        if rngs is None:
            raise ValueError(
                f"`deterministic` is False, but no `rngs` argument was provided to {name} "
                "as either a __call__ argument or a constructor argument."
            )
        raise TypeError(f"rngs must be an nnx.Rngs, an nnx.RngStream or a key, got {type(rngs)}")
