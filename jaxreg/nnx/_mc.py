"""Monte Carlo dropout for NNX models: dropout-family layers in training mode, the rest in evaluation mode."""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

import jaxreg
from jaxreg.nnx._base import StochasticModule


def mc_dropout(
    key: jax.Array,
    model: nnx.Module,
    *args: Any,
    num_samples: int,
    batch_size: int | None = None,
    rng_collection: str = "dropout",
) -> jaxreg.MCDropoutPrediction:
    """`jaxreg.mc_dropout` for an NNX model: ``model(*args)`` per pass, on a view of the model.

    The passes run on ``nnx.view`` copies (the model itself is not changed):
    every module in evaluation mode (``deterministic=True``,
    ``use_running_average=True``: BatchNorm uses its running statistics), then
    the jaxreg dropout-family modules and ``nnx.Dropout`` back in training
    mode. Pass ``s`` reseeds the ``rng_collection`` streams with its own key
    (``nnx.reseed``; stacked streams are split to their shape).

    Args:
      key: a ``jax.random`` key, split into one key per pass.
      model: the NNX model; its dropout layers need an rng stream (``rngs=``
        at construction).
      *args: the inputs of ``model``.
      num_samples: the number of passes.
      batch_size: the passes run together (``None``: all; see `jaxreg.mc_dropout`).
      rng_collection: the rng stream the dropout layers draw from.

    Returns:
      `jaxreg.MCDropoutPrediction` of the model's output.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> import jaxreg.nnx as jrx
      >>> class MLP(nnx.Module):
      ...     def __init__(self, rngs):
      ...         self.linear1, self.norm = nnx.Linear(5, 16, rngs=rngs), nnx.BatchNorm(16, rngs=rngs)
      ...         self.drop, self.linear2 = jrx.Dropout(0.5, rngs=rngs), nnx.Linear(16, 3, rngs=rngs)
      ...     def __call__(self, x):
      ...         return self.linear2(self.drop(nnx.relu(self.norm(self.linear1(x)))))
      >>> model = MLP(nnx.Rngs(params=0, dropout=1))
      >>> pred = jrx.mc_dropout(jax.random.key(2), model, jnp.ones((4, 5)), num_samples=8)
      >>> pred.mean.shape, bool((pred.variance > 0).any())
      ((4, 3), True)
    """
    evaluation = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    mc = nnx.view(
        evaluation, only=(StochasticModule, nnx.Dropout), deterministic=False, raise_if_not_found=False
    )
    graphdef, state = nnx.split(mc)

    def forward(k: jax.Array, *inputs: Any) -> Any:
        copy = nnx.merge(graphdef, state, copy=True)  # fresh Variables, owned by this trace
        stream_keys: dict[str, Any] = {rng_collection: k}
        nnx.reseed(copy, policy="match_shape", **stream_keys)
        return copy(*inputs)

    return jaxreg.mc_dropout(key, forward, *args, num_samples=num_samples, batch_size=batch_size)
