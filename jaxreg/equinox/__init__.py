"""Equinox modules of the dropout family (``pip install 'jaxreg[equinox]'``).

Each module is a thin wrapper around the functional op of the same name in
``jaxreg`` (``Dropout`` -> `jaxreg.dropout`, ``DropPath`` -> `jaxreg.drop_path`,
...): the maths lives in the op; the one base class, `StochasticModule`, only
resolves the mode and the key. The conventions are those of `equinox.nn.Dropout`:

- an ``inference`` field (keyword-only, default ``False``), switched for a
  whole model by ``eqx.nn.inference_mode(model, value)``; an ``inference=``
  call argument takes precedence. In inference mode no key is needed.
- the key is the keyword-only ``key=`` of the call; a missing key in training
  raises ``ValueError``.
- the strength (``rate``, or ``GaussianNoise``'s ``stddev``) is a regular field
  (a Python float is static under ``eqx.filter_jit``, a JAX array is traced;
  ``eqx.tree_at`` can change it); the options are static fields. A strength of
  exactly 0 returns the input and needs no key.
- layers see one example, channels first (as ``eqx.nn.Conv2d``): ``DropPath``
  makes one decision for its whole input, ``SpatialDropout`` one per channel
  (axis 0), ``DropBlock`` takes ``(channels, height, width)``. Batch with
  ``jax.vmap`` and one key per example.

``Dropout(rate, sampler="jax")`` gives bit for bit the output of
``eqx.nn.Dropout(rate)`` for the same key (eagerly; under ``jit`` too for a
Python-float rate, while for a traced rate XLA compiles Equinox's ``x / q`` as
``x * (1 / q)``: the same mask, values within one ulp). For spectral and weight
normalization use Equinox's own ``eqx.nn.SpectralNorm`` (power-iteration state
in ``eqx.nn.State``) and ``eqx.nn.WeightNorm``, or the functional
`jaxreg.spectral_normalize` / `jaxreg.weight_normalize` in your own module.

Examples:
  >>> import equinox as eqx, jax, jax.numpy as jnp
  >>> import jaxreg.equinox as jre
  >>> class Block(eqx.Module):
  ...     linear: eqx.nn.Linear
  ...     drop: jre.Dropout
  ...     path: jre.DropPath
  ...     def __init__(self, key):
  ...         self.linear = eqx.nn.Linear(8, 8, key=key)
  ...         self.drop = jre.Dropout(0.1)
  ...         self.path = jre.DropPath(0.2)
  ...     def __call__(self, x, *, key=None):
  ...         k1, k2 = (None, None) if key is None else jax.random.split(key)
  ...         return x + self.path(self.drop(self.linear(x), key=k1), key=k2)
  >>> model, x = Block(jax.random.key(0)), jnp.ones((4, 8))
  >>> keys = jax.random.split(jax.random.key(1), 4)
  >>> y = jax.vmap(model)(x, key=keys)  # training: one key per example
  >>> y.shape
  (4, 8)
  >>> evaluation = eqx.nn.inference_mode(model)
  >>> bool(jnp.all(jax.vmap(evaluation)(x) == x + jax.vmap(model.linear)(x)))
  True
"""

try:
    import equinox as _equinox  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("jaxreg.equinox needs Equinox: pip install 'jaxreg[equinox]'") from error

from jaxreg.equinox._base import StochasticModule as StochasticModule
from jaxreg.equinox._stochastic import AlphaDropout as AlphaDropout
from jaxreg.equinox._stochastic import DropBlock as DropBlock
from jaxreg.equinox._stochastic import Dropout as Dropout
from jaxreg.equinox._stochastic import DropPath as DropPath
from jaxreg.equinox._stochastic import GaussianDropout as GaussianDropout
from jaxreg.equinox._stochastic import GaussianNoise as GaussianNoise
from jaxreg.equinox._stochastic import SpatialDropout as SpatialDropout

__all__ = [
    "AlphaDropout",
    "DropBlock",
    "DropPath",
    "Dropout",
    "GaussianDropout",
    "GaussianNoise",
    "SpatialDropout",
    "StochasticModule",
]
