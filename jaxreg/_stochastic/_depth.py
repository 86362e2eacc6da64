r"""Efficient stochastic depth: run a residual branch on a random subset of the batch only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxreg._norms import acc_dtype
from jaxreg._stochastic import _sampling
from jaxreg._stochastic._prologue import require_key
from jaxreg._typing import Sampler
from jaxreg._validation import check_axis, check_rate, is_concrete, is_one, is_zero


def subset_size(rate: float, batch: int) -> int:
    """``k = round((1 - rate) * batch)`` (half to even), at least 1 for ``rate < 1``; 0 for ``rate == 1``."""
    if float(rate) == 1.0:
        return 0
    return min(max(round((1.0 - float(rate)) * batch), 1), batch)


def drop_path_subset(
    key: Any,
    x: jax.Array,
    branch: Callable[[jax.Array], jax.Array],
    rate: float,
    *,
    deterministic: bool = False,
    batch_axis: int = 0,
    sampler: Sampler = None,
) -> jax.Array:
    r"""Stochastic depth that computes the residual branch on the kept examples only.

    Returns the branch's contribution, to add to the residual stream
    (``x + drop_path_subset(key, x, f, rate)``): a uniformly random subset $S$ of
    $k = \mathrm{round}((1 - \text{rate})\,B)$ examples of the batch ($B$ along
    ``batch_axis``; $k \ge 1$ for ``rate < 1``) goes through ``branch``, and

    $$y_b = \frac{B}{k}\, f(x_b)\ \text{ for } b \in S,\qquad y_b = 0 \text{ otherwise.}$$

    Every example is kept with probability $k / B$, so $E[y] = f(x)$, the expected
    output of ``drop_path(key, f(x), rate)``, while the branch costs $k / B$ of its
    full-batch FLOPs (DINOv2's ``drop_add_residual_stochastic_depth``). The two
    differ in the draw: exactly $k$ examples are kept here (drop path keeps a
    binomial number), and the drop fraction is $1 - k / B$, ``rate`` rounded to a
    multiple of $1 / B$. Gradients flow only to the kept examples and, scaled by
    $B / k$, to the branch's parameters.

    ``branch`` must treat examples independently (no batch statistics: no
    BatchNorm in it) and keep the batch on ``batch_axis``. ``rate`` must be a
    concrete number: $k$ is a shape, static under ``jit``. The subset is the
    $k$ smallest of $B$ random words from the family's sampler (``sampler="jax"``:
    ``jax.random.bits``), sorted by index.

    Args:
      key: a ``jax.random`` key; may be ``None`` when deterministic or ``rate == 0``.
      x: the input of the branch, with an example axis.
      branch: the residual branch $f$, a function of one array.
      rate: the drop probability, a Python or NumPy number in [0, 1] (not traced).
      deterministic: evaluation mode: returns ``branch(x)``.
      batch_axis: the example axis of ``x`` and of the branch's output.
      sampler: ``None`` (default ``"fast"``), ``"fast"`` or ``"jax"``.

    Returns:
      An array of the shape and dtype of ``branch(x)``: zeros for ``rate == 1``
      (the branch is only traced, for its output shape).

    Examples:
      >>> import jax, jax.numpy as jnp, jaxreg
      >>> x = jnp.ones((10, 4))
      >>> y = jaxreg.drop_path_subset(jax.random.key(0), x, lambda h: 2 * h, 0.2)
      >>> int((y != 0).any(axis=1).sum()), float(y.max())  # 8 examples, scaled by 10 / 8
      (8, 2.5)

    References:
      Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016,
      https://arxiv.org/abs/1603.09382; Oquab et al., "DINOv2: Learning Robust
      Visual Features without Supervision", 2023, https://arxiv.org/abs/2304.07193
      (``dinov2/layers/block.py``).
    """
    check_rate("rate", rate)
    if not is_concrete(rate):
        raise TypeError(
            "drop_path_subset needs a concrete rate (a Python or NumPy number): the subset size "
            f"round((1 - rate) * batch) is a shape; got {rate!r}. For a traced rate use jaxreg.drop_path"
        )
    _sampling.resolve_sampler(sampler)
    x = jnp.asarray(x)
    b = check_axis("batch_axis", batch_axis, x.ndim, "x")
    if deterministic or is_zero(rate):
        return branch(x)
    require_key(key, "drop_path_subset")
    if is_one(rate):
        out = jax.eval_shape(branch, x)
        return jnp.zeros(out.shape, out.dtype)
    batch = x.shape[b]
    k = subset_size(rate, batch)
    idx = jnp.sort(jnp.argsort(_sampling.bits(key, (batch,), sampler))[:k])
    fx = branch(jnp.take(x, idx, axis=b))
    if fx.ndim <= b or fx.shape[b] != k:
        raise ValueError(
            f"branch must keep the batch on axis {batch_axis}: on a subset of {k} examples it returned shape {fx.shape}"
        )
    scaled = (fx.astype(acc_dtype(fx.dtype)) * (batch / k)).astype(fx.dtype)
    full = (*fx.shape[:b], batch, *fx.shape[b + 1 :])
    return jnp.zeros(full, fx.dtype).at[(slice(None),) * b + (idx,)].set(scaled)
