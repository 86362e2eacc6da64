"""Flax NNX modules: the dropout family and the ``SpectralNorm`` / ``WeightNorm`` reparametrizations.

Each dropout-family module is a thin wrapper around the functional op of the same name in
``jaxreg`` (``Dropout`` -> `jaxreg.dropout`, ``DropPath`` -> `jaxreg.drop_path`,
...): the maths lives in the op, the module only resolves the mode and the key.
The conventions are those of `flax.nnx.Dropout`:

- ``deterministic`` is a constructor argument (default ``False``) that
  ``model.train()`` / ``model.eval()``, ``set_attributes`` and ``nnx.view``
  switch; a ``deterministic`` passed at call time takes precedence.
- Keys come from an ``nnx.RngStream`` forked at construction from
  ``rngs[rng_collection]`` (``"dropout"``, falling back to ``"default"``); each
  training call draws a fresh key from it, so successive calls (eager or under
  ``nnx.jit``) use different masks. An ``nnx.Rngs``, ``nnx.RngStream`` or key
  passed as ``rngs=`` at call time takes precedence.
- A rate (or ``GaussianNoise``'s ``stddev``) of exactly 0 returns the input
  unchanged and needs no ``rngs``.

Examples:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> import jaxreg.nnx as jrx
  >>> class MLP(nnx.Module):
  ...     def __init__(self, rngs: nnx.Rngs):
  ...         self.linear = nnx.Linear(3, 8, rngs=rngs)
  ...         self.drop = jrx.Dropout(0.5, rngs=rngs)
  ...         self.path = jrx.DropPath(0.2, rngs=rngs)
  ...     def __call__(self, x):
  ...         return self.path(self.drop(self.linear(x)))
  >>> model, x = MLP(nnx.Rngs(params=0, dropout=1)), jnp.ones((4, 3))
  >>> model.train()  # masks drawn, a new one at every call
  >>> bool(jnp.any(model(x) != model(x)))
  True
  >>> model.eval()  # identity
  >>> bool(jnp.all(model(x) == model.linear(x)))
  True
"""

from jaxreg.nnx._base import StochasticModule as StochasticModule
from jaxreg.nnx._depth import DropPathSubset as DropPathSubset
from jaxreg.nnx._mc import mc_dropout as mc_dropout
from jaxreg.nnx._orthogonal import Orthogonal as Orthogonal
from jaxreg.nnx._reparam import SpectralNorm as SpectralNorm
from jaxreg.nnx._reparam import WeightNorm as WeightNorm
from jaxreg.nnx._stochastic import AlphaDropout as AlphaDropout
from jaxreg.nnx._stochastic import DropBlock as DropBlock
from jaxreg.nnx._stochastic import Dropout as Dropout
from jaxreg.nnx._stochastic import DropPath as DropPath
from jaxreg.nnx._stochastic import GaussianDropout as GaussianDropout
from jaxreg.nnx._stochastic import GaussianNoise as GaussianNoise
from jaxreg.nnx._stochastic import SpatialDropout as SpatialDropout

__all__ = [
    "AlphaDropout",
    "DropBlock",
    "DropPath",
    "DropPathSubset",
    "Dropout",
    "GaussianDropout",
    "GaussianNoise",
    "Orthogonal",
    "SpatialDropout",
    "SpectralNorm",
    "StochasticModule",
    "WeightNorm",
    "mc_dropout",
]
