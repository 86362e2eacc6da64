"""NNX wrapper of `jaxreg.drop_path_subset`: a residual branch run on a random subset of the batch."""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx

import jaxreg
from jaxreg._typing import Sampler
from jaxreg.nnx._base import StochasticModule


class DropPathSubset(StochasticModule):
    """Efficient stochastic depth: ``branch`` on ``round((1 - rate) B)`` examples, scattered back scaled.

    Returns the branch's contribution (add it to the residual:
    ``x + self.path(x)`` with ``self.path = DropPathSubset(branch, rate, rngs=rngs)``);
    in evaluation mode, ``branch(x)``. The branch (an ``nnx.Module``, a
    submodule of this one) must treat examples independently.

    Args:
      branch: the residual branch, a module or function of one array.
      rate: the drop probability (a Python number: the subset size is static).
      batch_axis: the example axis.
      sampler: the sampler of the op (``None``: library default, ``"fast"`` or ``"jax"``).
      deterministic: if true, ``branch(x)``; switched by ``train()`` / ``eval()``.
      rng_collection: the rng stream the keys are drawn from.
      rngs: an ``nnx.Rngs`` or ``nnx.RngStream`` to fork the module's stream from.

    References:
      Oquab et al., 2023, `DINOv2: Learning Robust Visual Features without
      Supervision <https://arxiv.org/abs/2304.07193>`_.
    """

    def __init__(
        self,
        branch: Callable[[jax.Array], jax.Array],
        rate: float,
        *,
        batch_axis: int = 0,
        sampler: Sampler = None,
        deterministic: bool | None = False,
        rng_collection: str = "dropout",
        rngs: nnx.Rngs | nnx.RngStream | None = None,
    ) -> None:
        super().__init__(deterministic=deterministic, rng_collection=rng_collection, rngs=rngs)
        self.branch = branch
        self.sampler = sampler
        self.rate = rate
        self.batch_axis = batch_axis

    def _apply(self, key: jax.Array | None, inputs: jax.Array, deterministic: bool) -> jax.Array:
        return jaxreg.drop_path_subset(
            key,
            inputs,
            self.branch,
            self.rate,
            deterministic=deterministic,
            batch_axis=self.batch_axis,
            sampler=self.sampler,
        )
