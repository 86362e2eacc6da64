r"""Batch pairing and mixing coefficients shared by mixup, CutMix and their switch.

Each example $i$ is mixed with a partner $\pi(i)$ from the same batch (axis 0):

* ``"permutation"``: $\pi$ a uniformly random permutation
  (``jax.random.permutation``), as the mixup paper's code. On a batch-sharded
  array it is a gather with data-dependent indices: XLA materializes the whole
  batch on every device (an all-gather of the full batch, for an automatically
  sharded mesh), and with explicit sharding (``AxisType.Explicit``) the gather
  raises ``ShardingTypeError``.
* ``"flip"``: $\pi(i) = B - 1 - i$ (timm's ``Mixup``, ``x.flip(0)``): one
  collective permute of whole shards (device $d$ exchanges with device
  $n - 1 - d$); works with explicit sharding too.
* ``"roll"``: $\pi(i) = i - 1 \bmod B$ (torchvision v2 ``MixUp``/``CutMix``,
  ``x.roll(1, 0)``): each device sends one example to its neighbour, the
  cheapest on an automatically sharded mesh; with explicit sharding
  ``jnp.roll`` raises ``ShardingTypeError``.

``"flip"`` and ``"roll"`` pair examples by position, so the batch must already
be shuffled (a shuffling data loader); the permutation does not need it.
The collectives above are those of the compiled pairing on 8 simulated
devices (tested).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

Pairing = Literal["permutation", "flip", "roll"]
PAIRINGS = ("permutation", "flip", "roll")


def check_pairing(pairing: str) -> None:
    """Raises ``ValueError`` unless ``pairing`` is one of `PAIRINGS`."""
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")


def partners(key: jax.Array, pairing: Pairing, *arrays: jax.Array) -> tuple[jax.Array, ...]:
    """Each array's batch (axis 0) reordered so that row ``i`` holds example ``i``'s partner.

    ``key`` is used by ``"permutation"`` only; every array gets the same pairing.
    """
    check_pairing(pairing)
    if pairing == "flip":
        return tuple(jnp.flip(a, 0) for a in arrays)
    if pairing == "roll":
        return tuple(jnp.roll(a, 1, 0) for a in arrays)
    perm = jax.random.permutation(key, arrays[0].shape[0])
    return tuple(a[perm] for a in arrays)


def per_example(v: jax.Array, ndim: int) -> jax.Array:
    """``v`` (a scalar, or one value per example) shaped to broadcast along axis 0 of a ``ndim``-D array."""
    return jnp.reshape(v, jnp.shape(v) + (1,) * (ndim - jnp.ndim(v)))


def mix(lam: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    r"""$\lambda a + (1 - \lambda) b$ in ``a``'s dtype; ``lam`` a scalar or one value per example."""
    lam = per_example(lam, a.ndim)
    return lam.astype(a.dtype) * a + (1 - lam).astype(a.dtype) * b


def beta(key: jax.Array, alpha: float | jax.Array, batch: int, per_example_lam: bool) -> jax.Array:
    r"""$\lambda \sim \mathrm{Beta}(\alpha, \alpha)$: one per batch (shape ``()``) or one per example."""
    return jax.random.beta(key, alpha, alpha, shape=(batch,) if per_example_lam else ())
