"""Monte Carlo dropout for linen models: dropout-family layers in training mode, the rest as called."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

import jaxreg
from jaxreg._validation import is_zero
from jaxreg.linen._base import StochasticModule


def _dropout_in_training_mode(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
    """Interceptor: every jaxreg dropout-family module and ``nn.Dropout`` runs its training-mode op."""
    module = context.module
    if context.method_name != "__call__" or not isinstance(module, (StochasticModule, nn.Dropout)):
        return next_fun(*args, **kwargs)
    inputs = args[0] if args else kwargs["inputs"]
    if isinstance(module, nn.Dropout):
        if is_zero(module.rate):
            return inputs
        key = module.make_rng(module.rng_collection)
        # flax.linen.Dropout's training mode, bit for bit (sampler="jax", tested)
        return jaxreg.dropout(
            key, inputs, module.rate, broadcast_dims=tuple(module.broadcast_dims), sampler="jax"
        )
    strength = getattr(module, module.strength_field)
    rng = kwargs.get("rng", args[2] if len(args) > 2 else None)
    if rng is None and not is_zero(strength):
        rng = module.make_rng(module.rng_collection)
    return module._apply(rng, inputs, False)


def mc_dropout(
    key: jax.Array,
    model: nn.Module,
    variables: Any,
    *args: Any,
    num_samples: int,
    batch_size: int | None = None,
    rng_collection: str = "dropout",
    **kwargs: Any,
) -> jaxreg.MCDropoutPrediction:
    """`jaxreg.mc_dropout` for a linen model: ``model.apply(variables, *args, **kwargs)`` per pass.

    During the passes every jaxreg dropout-family module (``jaxreg.linen.Dropout``,
    ``DropPath``, ...) and every ``flax.linen.Dropout`` runs in training mode
    with a fresh key (pass ``s`` gets ``rngs={rng_collection: key_s}``), whatever
    its ``deterministic`` attribute or argument says; every other layer runs as
    ``kwargs`` ask: pass your evaluation flags (e.g. ``train=False``) so that
    BatchNorm uses its running statistics. The variables are not changed.

    Args:
      key: a ``jax.random`` key, split into one key per pass.
      model: the linen module.
      variables: its variables (``{"params": ..., "batch_stats": ...}``).
      *args: the inputs of ``model.apply``.
      num_samples: the number of passes.
      batch_size: the passes run together (``None``: all; see `jaxreg.mc_dropout`).
      rng_collection: the rng collection the dropout layers draw from.
      **kwargs: keyword arguments of ``model.apply`` (e.g. ``train=False``).

    Returns:
      `jaxreg.MCDropoutPrediction` of the model's output.

    Examples:
      >>> import flax.linen as nn, jax, jax.numpy as jnp, jaxreg.linen as jrl
      >>> class MLP(nn.Module):
      ...     @nn.compact
      ...     def __call__(self, x, train: bool):
      ...         x = nn.BatchNorm(use_running_average=not train)(nn.Dense(16)(x))
      ...         return nn.Dense(3)(jrl.Dropout(0.5, deterministic=not train)(nn.relu(x)))
      >>> x, model = jnp.ones((4, 5)), MLP()
      >>> variables = model.init(jax.random.key(0), x, train=False)
      >>> pred = jrl.mc_dropout(jax.random.key(1), model, variables, x, num_samples=8, train=False)
      >>> pred.mean.shape, bool((pred.variance > 0).any())
      ((4, 3), True)
    """

    def forward(k: jax.Array, *inputs: Any) -> Any:
        with nn.intercept_methods(_dropout_in_training_mode):
            return model.apply(variables, *inputs, rngs={rng_collection: k}, **kwargs)

    return jaxreg.mc_dropout(key, forward, *args, num_samples=num_samples, batch_size=batch_size)
