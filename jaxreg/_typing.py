"""Type aliases shared by the whole package (one spelling of each argument type)."""

from __future__ import annotations

from typing import Any, Literal

Mask = Any  # None | bool pytree (or a prefix of one) | Callable[[params], bool pytree]
Sampler = Literal["fast", "jax"] | None  # the mask/noise sampler; None: the library default ("fast")
Axis = int | tuple[int, ...] | None  # the axes a norm runs over (None: all)
GroupAxes = int | tuple[int, ...]  # the axes that index the groups of the group lasso (the norm: the others)
FeatureAxes = int | tuple[int, ...] | None  # the axes weight normalization keeps (one scale per index)
