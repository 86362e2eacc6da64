"""Flax linen modules: the dropout family and the ``SpectralNorm`` / ``WeightNorm`` reparametrizations.

Each dropout-family module is a thin wrapper around the functional op of the same name in
``jaxreg`` (``Dropout`` -> `jaxreg.dropout`, ``DropPath`` -> `jaxreg.drop_path`,
...): the maths lives in the op, the module only resolves the mode and the key.
The conventions are those of `flax.linen.Dropout`:

- ``deterministic`` is an attribute *or* a call argument (`flax.linen.merge_param`:
  exactly one of the two must be set). When it is true the op returns its
  inference-time output and no key is drawn.
- In training the key comes from ``self.make_rng(self.rng_collection)``
  (``"dropout"`` by default), so ``apply`` needs ``rngs={"dropout": key}``; a
  key passed as ``rng=`` at call time takes precedence. ``init`` needs no
  dropout key when called with ``deterministic=True``.
- A rate (or ``GaussianNoise``'s ``stddev``) of exactly 0 returns the input
  unchanged and draws no key, so no ``"dropout"`` rng is needed either.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> import flax.linen as nn
  >>> import jaxreg.linen as jrl
  >>> class MLP(nn.Module):
  ...     @nn.compact
  ...     def __call__(self, x, train: bool):
  ...         x = nn.Dense(8)(x)
  ...         x = jrl.Dropout(0.5, deterministic=not train)(x)
  ...         return jrl.DropPath(0.2)(x, deterministic=not train)
  >>> model, x = MLP(), jnp.ones((4, 3))
  >>> variables = model.init(jax.random.key(0), x, train=False)
  >>> y = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
  >>> y.shape
  (4, 8)
  >>> y_eval = model.apply(variables, x, train=False)  # no "dropout" rng needed
"""

from jaxreg.linen._base import StochasticModule as StochasticModule
from jaxreg.linen._depth import DropPathSubset as DropPathSubset
from jaxreg.linen._mc import mc_dropout as mc_dropout
from jaxreg.linen._orthogonal import Orthogonal as Orthogonal
from jaxreg.linen._reparam import SpectralNorm as SpectralNorm
from jaxreg.linen._reparam import WeightNorm as WeightNorm
from jaxreg.linen._stochastic import AlphaDropout as AlphaDropout
from jaxreg.linen._stochastic import DropBlock as DropBlock
from jaxreg.linen._stochastic import Dropout as Dropout
from jaxreg.linen._stochastic import DropPath as DropPath
from jaxreg.linen._stochastic import GaussianDropout as GaussianDropout
from jaxreg.linen._stochastic import GaussianNoise as GaussianNoise
from jaxreg.linen._stochastic import SpatialDropout as SpatialDropout

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
