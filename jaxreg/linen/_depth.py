"""Linen wrapper of `jaxreg.drop_path_subset`: a residual branch run on a random subset of the batch."""

from __future__ import annotations

from collections.abc import Callable

import jax

import jaxreg
from jaxreg._typing import Sampler
from jaxreg.linen._base import StochasticModule


class DropPathSubset(StochasticModule):
    """Efficient stochastic depth: ``branch`` on ``round((1 - rate) B)`` examples, scattered back scaled.

    Returns the branch's contribution (add it to the residual:
    ``x + DropPathSubset(branch, rate)(x, deterministic=not train)``); at
    inference, ``branch(x)``. The branch (a linen module, a child of this one)
    must treat examples independently.

    Attributes:
      branch: the residual branch, a module or function of one array.
      rate: the drop probability (a Python number: the subset size is static).
      batch_axis: the example axis.
      deterministic: if true, ``branch(x)``; may instead be given at call time.
      rng_collection: the rng collection the key is drawn from.
      sampler: the sampler of the op (``None``: library default, ``"fast"`` or ``"jax"``).

    References:
      Oquab et al., 2023, `DINOv2: Learning Robust Visual Features without
      Supervision <https://arxiv.org/abs/2304.07193>`_.
    """

    branch: Callable[[jax.Array], jax.Array]
    rate: float
    batch_axis: int = 0
    deterministic: bool | None = None
    rng_collection: str = "dropout"
    sampler: Sampler = None

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
