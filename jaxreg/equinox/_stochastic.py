"""Equinox modules of the dropout family: each is its fields, its docstring and the op it calls."""

from __future__ import annotations

from typing import ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp

import jaxreg
from jaxreg.equinox._base import StochasticModule


class Dropout(StochasticModule):
    """Dropout with jaxreg's options: `jaxreg.dropout`.

    ``x * m / (1 - rate)`` (``mode="inverted"``) or ``x * m`` and ``x * (1 -
    rate)`` at inference (``mode="classic"``), ``m ~ Bernoulli(1 - rate)`` shared
    along ``broadcast_dims``. With ``sampler="jax"`` and the default mode the
    output is bit for bit ``eqx.nn.Dropout(rate)``'s for the same key on CPU (see the package notes
    on ``jit``; on a GPU the mask is the same and values may differ by one ulp).

    Attributes:
      rate: the probability of dropping a unit (``p`` in ``eqx.nn.Dropout``).
      broadcast_dims: axes along which the mask is shared (static).
      mode: ``"inverted"`` or ``"classic"`` (static).

    References:
      Srivastava et al., 2014, `Dropout: A Simple Way to Prevent Neural Networks
      from Overfitting <https://jmlr.org/papers/v15/srivastava14a.html>`_.
    """

    rate: float | jax.Array
    broadcast_dims: tuple[int, ...] = eqx.field(default=(), static=True)
    mode: Literal["inverted", "classic"] = eqx.field(default="inverted", static=True)

    def _apply(self, key: jax.Array | None, x: jax.Array, inference: bool) -> jax.Array:
        return jaxreg.dropout(
            key,
            x,
            self.rate,
            deterministic=inference,
            broadcast_dims=tuple(self.broadcast_dims),
            mode=self.mode,
            sampler=self.sampler,
        )


class SpatialDropout(StochasticModule):
    """Drops whole channels: `jaxreg.spatial_dropout`.

    One keep decision per channel (and example), shared over the spatial axes.
    The defaults follow Equinox's layout: one example, channels first
    (``(channels, *spatial)``, as ``eqx.nn.Conv2d``): ``channel_axis=0``,
    ``batch_axis=None``.

    Attributes:
      rate: the probability of dropping a channel.
      channel_axis: the channel axis (static).
      batch_axis: the example axis, ``None`` for one example (static).

    References:
      Tompson et al., 2015, `Efficient Object Localization Using Convolutional
      Networks <https://arxiv.org/abs/1411.4280>`_.
    """

    rate: float | jax.Array
    channel_axis: int = eqx.field(default=0, static=True)
    batch_axis: int | None = eqx.field(default=None, static=True)

    def _apply(self, key: jax.Array | None, x: jax.Array, inference: bool) -> jax.Array:
        return jaxreg.spatial_dropout(
            key,
            x,
            self.rate,
            channel_axis=self.channel_axis,
            batch_axis=self.batch_axis,
            deterministic=inference,
            sampler=self.sampler,
        )


class GaussianDropout(StochasticModule):
    """Multiplicative Gaussian noise ``x * e``, ``e ~ N(1, rate / (1 - rate))``: `jaxreg.gaussian_dropout`.

    Attributes:
      rate: the equivalent drop probability of Bernoulli dropout.

    References:
      Srivastava et al., 2014, `Dropout: A Simple Way to Prevent Neural Networks
      from Overfitting <https://jmlr.org/papers/v15/srivastava14a.html>`_, section 10.
    """

    rate: float | jax.Array

    def _apply(self, key: jax.Array | None, x: jax.Array, inference: bool) -> jax.Array:
        return jaxreg.gaussian_dropout(key, x, self.rate, deterministic=inference, sampler=self.sampler)


class GaussianNoise(StochasticModule):
    """Additive Gaussian noise ``x + e``, ``e ~ N(0, stddev^2)``: `jaxreg.gaussian_noise`.

    Attributes:
      stddev: the standard deviation of the noise.

    References:
      Bishop, 1995, `Training with Noise is Equivalent to Tikhonov Regularization
      <https://doi.org/10.1162/neco.1995.7.1.108>`_.
    """

    stddev: float | jax.Array
    strength_field: ClassVar[str] = "stddev"

    def _apply(self, key: jax.Array | None, x: jax.Array, inference: bool) -> jax.Array:
        return jaxreg.gaussian_noise(key, x, self.stddev, deterministic=inference, sampler=self.sampler)


class AlphaDropout(StochasticModule):
    """Dropout that keeps SELU's zero mean and unit variance: `jaxreg.alpha_dropout`.

    Attributes:
      rate: the probability of dropping a unit.

    References:
      Klambauer et al., 2017, `Self-Normalizing Neural Networks
      <https://arxiv.org/abs/1706.02515>`_.
    """

    rate: float | jax.Array

    def _apply(self, key: jax.Array | None, x: jax.Array, inference: bool) -> jax.Array:
        return jaxreg.alpha_dropout(key, x, self.rate, deterministic=inference, sampler=self.sampler)


class DropPath(StochasticModule):
    """Stochastic depth: drops a residual branch per example, `jaxreg.drop_path`.

    Equinox layers see one example (batch with ``jax.vmap`` and one key per
    example), so the default ``batch_axis=None`` makes one keep decision for the
    whole input: ``x * m / (1 - rate)``. Give ``batch_axis`` for a batched input.

    Attributes:
      rate: the probability of dropping the branch.
      batch_axis: the example axis, ``None`` for one example (static).
      scale_by_keep: whether kept inputs are scaled by ``1 / (1 - rate)`` (static).

    References:
      Huang et al., 2016, `Deep Networks with Stochastic Depth
      <https://arxiv.org/abs/1603.09382>`_.
    """

    rate: float | jax.Array
    batch_axis: int | None = eqx.field(default=None, static=True)
    scale_by_keep: bool = eqx.field(default=True, static=True)

    def _apply(self, key: jax.Array | None, x: jax.Array, inference: bool) -> jax.Array:
        xb = jnp.asarray(x)[None] if self.batch_axis is None else x
        y = jaxreg.drop_path(
            key,
            xb,
            self.rate,
            deterministic=inference,
            batch_axis=0 if self.batch_axis is None else self.batch_axis,
            scale_by_keep=self.scale_by_keep,
            sampler=self.sampler,
        )
        return y[0] if self.batch_axis is None else y


class DropBlock(StochasticModule):
    """Drops ``block_size x block_size`` squares of each channel: `jaxreg.dropblock`.

    Takes one example in Equinox's layout, ``(channels, height, width)``, and
    rescales the kept values by ``size / kept`` over that example.

    Attributes:
      rate: the fraction of units to drop.
      block_size: the side of the square blocks (static).

    References:
      Ghiasi et al., 2018, `DropBlock: A regularization method for convolutional
      networks <https://arxiv.org/abs/1810.12890>`_.
    """

    rate: float | jax.Array
    block_size: int = eqx.field(static=True)

    def _apply(self, key: jax.Array | None, x: jax.Array, inference: bool) -> jax.Array:
        nhwc = jnp.moveaxis(jnp.asarray(x), 0, -1)[None]
        y = jaxreg.dropblock(
            key, nhwc, self.rate, self.block_size, deterministic=inference, sampler=self.sampler
        )
        return jnp.moveaxis(y[0], -1, 0)
