"""The linen modules of the dropout family: fields, docstring and the op each calls (keys and mode in ``_base``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import jax

import jaxreg
from jaxreg._typing import Sampler
from jaxreg.linen._base import StochasticModule


class Dropout(StochasticModule):
    """Dropout with an inverted or classic mode and an optional mask sampler.

    Computes `jaxreg.dropout` (``mode="inverted"``: ``x * m / (1 - rate)`` in
    training and ``x`` at inference; ``mode="classic"``: ``x * m`` and
    ``x * (1 - rate)``; ``m ~ Bernoulli(1 - rate)``, shared along
    ``broadcast_dims``). With the defaults and ``sampler="jax"`` it matches
    `flax.linen.Dropout` given the same key.

    Attributes:
      rate: the probability of dropping a unit (*not* the keep rate).
      broadcast_dims: axes along which the mask is shared, as in flax.
      deterministic: if true, no mask is drawn (see ``mode``); may instead be
        given at call time.
      rng_collection: the rng collection the key is drawn from.
      mode: ``"inverted"`` (PyTorch, Flax, Keras) or ``"classic"`` (Srivastava et al.).
      sampler: the mask sampler of `jaxreg.dropout` (``None``: library default).

    References:
      Srivastava et al., 2014, `Dropout: A Simple Way to Prevent Neural Networks
      from Overfitting <https://jmlr.org/papers/v15/srivastava14a.html>`_.
    """

    rate: float
    broadcast_dims: Sequence[int] = ()
    deterministic: bool | None = None
    rng_collection: str = "dropout"
    mode: Literal["inverted", "classic"] = "inverted"
    sampler: Sampler = None

    def _apply(self, key: jax.Array | None, inputs: jax.Array, deterministic: bool) -> jax.Array:
        return jaxreg.dropout(
            key,
            inputs,
            self.rate,
            deterministic=deterministic,
            broadcast_dims=tuple(self.broadcast_dims),
            mode=self.mode,
            sampler=self.sampler,
        )


class SpatialDropout(StochasticModule):
    """Drops whole feature maps (channels) per example: `jaxreg.spatial_dropout`.

    ``x * m / (1 - rate)`` with one ``m ~ Bernoulli(1 - rate)`` per (example,
    channel), shared over the spatial axes; Keras ``SpatialDropout1D/2D/3D``,
    PyTorch ``Dropout1d/2d/3d`` (which default to channels first:
    ``channel_axis=1``).

    Attributes:
      rate: the probability of dropping a channel.
      channel_axis: the channel axis (default last, NHWC).
      batch_axis: the example axis (``None`` for an unbatched input).
      deterministic: if true, returns the input unchanged.
      rng_collection: the rng collection the key is drawn from.
      sampler: the sampler of the op (``None``: library default, ``"fast"`` or ``"jax"``).

    References:
      Tompson et al., 2015, `Efficient Object Localization Using Convolutional
      Networks <https://arxiv.org/abs/1411.4280>`_.
    """

    rate: float
    channel_axis: int = -1
    batch_axis: int | None = 0
    deterministic: bool | None = None
    rng_collection: str = "dropout"
    sampler: Sampler = None

    def _apply(self, key: jax.Array | None, inputs: jax.Array, deterministic: bool) -> jax.Array:
        return jaxreg.spatial_dropout(
            key,
            inputs,
            self.rate,
            channel_axis=self.channel_axis,
            batch_axis=self.batch_axis,
            deterministic=deterministic,
            sampler=self.sampler,
        )


class GaussianDropout(StochasticModule):
    """Multiplicative Gaussian noise: `jaxreg.gaussian_dropout`.

    ``x * e`` with ``e ~ N(1, rate / (1 - rate))`` in training, ``x`` at
    inference (Keras ``GaussianDropout``).

    Attributes:
      rate: the equivalent drop probability of Bernoulli dropout.
      deterministic: if true, returns the input unchanged.
      rng_collection: the rng collection the key is drawn from.
      sampler: the sampler of the op (``None``: library default, ``"fast"`` or ``"jax"``).

    References:
      Srivastava et al., 2014, `Dropout: A Simple Way to Prevent Neural Networks
      from Overfitting <https://jmlr.org/papers/v15/srivastava14a.html>`_, section 10.
    """

    rate: float
    deterministic: bool | None = None
    rng_collection: str = "dropout"
    sampler: Sampler = None

    def _apply(self, key: jax.Array | None, inputs: jax.Array, deterministic: bool) -> jax.Array:
        return jaxreg.gaussian_dropout(
            key, inputs, self.rate, deterministic=deterministic, sampler=self.sampler
        )


class GaussianNoise(StochasticModule):
    """Additive Gaussian noise: `jaxreg.gaussian_noise`.

    ``x + e`` with ``e ~ N(0, stddev^2)`` in training, ``x`` at inference
    (Keras ``GaussianNoise``).

    Attributes:
      stddev: the standard deviation of the noise.
      deterministic: if true, returns the input unchanged.
      rng_collection: the rng collection the key is drawn from.
      sampler: the sampler of the op (``None``: library default, ``"fast"`` or ``"jax"``).

    References:
      Bishop, 1995, `Training with Noise is Equivalent to Tikhonov Regularization
      <https://doi.org/10.1162/neco.1995.7.1.108>`_.
    """

    stddev: float
    strength_field: ClassVar[str] = "stddev"
    deterministic: bool | None = None
    rng_collection: str = "dropout"
    sampler: Sampler = None

    def _apply(self, key: jax.Array | None, inputs: jax.Array, deterministic: bool) -> jax.Array:
        return jaxreg.gaussian_noise(
            key, inputs, self.stddev, deterministic=deterministic, sampler=self.sampler
        )


class AlphaDropout(StochasticModule):
    """Dropout that keeps SELU's zero mean and unit variance: `jaxreg.alpha_dropout`.

    ``a * (x * m + alpha' * (1 - m)) + b`` with ``m ~ Bernoulli(1 - rate)``,
    ``alpha' = -1.7580993408473766`` and ``a``, ``b`` as in PyTorch and Keras;
    ``x`` at inference.

    Attributes:
      rate: the probability of dropping a unit.
      deterministic: if true, returns the input unchanged.
      rng_collection: the rng collection the key is drawn from.
      sampler: the sampler of the op (``None``: library default, ``"fast"`` or ``"jax"``).

    References:
      Klambauer et al., 2017, `Self-Normalizing Neural Networks
      <https://arxiv.org/abs/1706.02515>`_.
    """

    rate: float
    deterministic: bool | None = None
    rng_collection: str = "dropout"
    sampler: Sampler = None

    def _apply(self, key: jax.Array | None, inputs: jax.Array, deterministic: bool) -> jax.Array:
        return jaxreg.alpha_dropout(key, inputs, self.rate, deterministic=deterministic, sampler=self.sampler)


class DropPath(StochasticModule):
    """Stochastic depth, one keep decision per example: `jaxreg.drop_path`.

    ``x * m / (1 - rate)`` (``x * m`` if not ``scale_by_keep``) with one
    ``m ~ Bernoulli(1 - rate)`` per index of ``batch_axis``; apply it to a
    residual branch (``x + DropPath(r)(f(x))``), as timm's ``DropPath``.

    Attributes:
      rate: the probability of dropping the branch for an example.
      batch_axis: the example axis.
      scale_by_keep: whether kept examples are scaled by ``1 / (1 - rate)``.
      deterministic: if true, returns the input unchanged.
      rng_collection: the rng collection the key is drawn from.
      sampler: the sampler of the op (``None``: library default, ``"fast"`` or ``"jax"``).

    References:
      Huang et al., 2016, `Deep Networks with Stochastic Depth
      <https://arxiv.org/abs/1603.09382>`_.
    """

    rate: float
    batch_axis: int = 0
    scale_by_keep: bool = True
    deterministic: bool | None = None
    rng_collection: str = "dropout"
    sampler: Sampler = None

    def _apply(self, key: jax.Array | None, inputs: jax.Array, deterministic: bool) -> jax.Array:
        return jaxreg.drop_path(
            key,
            inputs,
            self.rate,
            deterministic=deterministic,
            batch_axis=self.batch_axis,
            scale_by_keep=self.scale_by_keep,
            sampler=self.sampler,
        )


class DropBlock(StochasticModule):
    """Drops contiguous ``block_size x block_size`` regions of NHWC maps: `jaxreg.dropblock`.

    Block centres are sampled with the paper's ``gamma`` so that about ``rate``
    of the units are dropped; kept values are rescaled by
    ``numel / kept``; ``x`` at inference.

    Attributes:
      rate: the fraction of units to drop.
      block_size: the side of the square blocks.
      deterministic: if true, returns the input unchanged.
      rng_collection: the rng collection the key is drawn from.
      sampler: the sampler of the op (``None``: library default, ``"fast"`` or ``"jax"``).

    References:
      Ghiasi et al., 2018, `DropBlock: A regularization method for convolutional
      networks <https://arxiv.org/abs/1810.12890>`_.
    """

    rate: float
    block_size: int
    deterministic: bool | None = None
    rng_collection: str = "dropout"
    sampler: Sampler = None

    def _apply(self, key: jax.Array | None, inputs: jax.Array, deterministic: bool) -> jax.Array:
        return jaxreg.dropblock(
            key, inputs, self.rate, self.block_size, deterministic=deterministic, sampler=self.sampler
        )
