r"""Exact sparsity: magnitude pruning to k entries, N:M structured sparsity, the gradual schedule.

:func:`keep_top_k` and :func:`keep_n_of_m` are projections placed **last** in a
chain, as the constraints are: with $z = w + u$ the plain step, a kept entry
lands on $z$ exactly (its update is ``u`` itself) and a pruned one on exactly
``0.0`` (its update is ``-w``), the landing :func:`jaxreg.projected` gives a
projection that keeps or zeroes entries. They are not built on ``projected``,
which maps one leaf at a time to its projection and keeps only a step count:
``keep_top_k(scope="global")`` ranks the entries of all selected leaves
together, and ``freeze=True`` keeps the pruned pattern in the state
(:class:`PruningState`); one mechanism (``_select``) serves both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreg._masking import key_path_str, masked
from jaxreg._norms import acc_dtype, explicit_shards, sharded_like, unsharded
from jaxreg._transforms._base import CountState, count_init, require_params, value_at
from jaxreg._typing import Mask
from jaxreg._validation import check_axis, check_bool, check_count, check_positive, check_rate, concrete_float


def _largest_passing(upper: int, passes: Callable[[jax.Array], jax.Array], dtype: Any) -> jax.Array:
    """The largest ``t`` in ``[0, upper]`` with ``passes(t)``, for a ``passes`` true at 0 and monotone.

    Built bit by bit from the top, one call of ``passes`` (a count) per bit.
    """

    def next_bit(i, t):
        candidate = t | jnp.left_shift(jnp.asarray(1, dtype), upper.bit_length() - 1 - i)
        return jnp.where((candidate <= upper) & passes(candidate), candidate, t)

    return jax.lax.fori_loop(0, upper.bit_length(), next_bit, jnp.zeros([], dtype))


def _flat_index(shape: tuple[int, ...], offset: int, dtype: Any) -> jax.Array:
    """``offset`` plus the row-major index of every entry of an array of ``shape`` (elementwise: no reshape)."""
    index = jnp.full(shape, offset, dtype)
    stride = 1
    for d in reversed(range(len(shape))):
        index = index + jax.lax.broadcasted_iota(dtype, shape, d) * stride
        stride *= shape[d]
    return index


def _keep_largest(
    zs: Sequence[jax.Array], k: Any, alive: Sequence[jax.Array] | None = None
) -> list[jax.Array]:
    """True at the ``min(k, n)`` largest magnitudes of the arrays ``zs`` taken together.

    Among equal magnitudes the lower index (in the order of ``zs``, then row-major) comes first.
    No sort, no reshape and no concatenation: the k-th largest magnitude is found bit by bit on
    its (monotone) integer bit pattern, one count of the entries above a candidate per bit, and
    the ties at it by the same search on the entries' indices, so sharded arrays exchange only
    scalar counts. ``k`` may be traced. Entries where ``alive`` is False are never kept.
    """
    dtype = acc_dtype(*(z.dtype for z in zs))
    int_dtype = jnp.int64 if jnp.dtype(dtype).itemsize == 8 else jnp.int32
    bits = [jax.lax.bitcast_convert_type(jnp.abs(z).astype(dtype), int_dtype) for z in zs]
    if alive is not None:  # pruned for good: below every magnitude (-1 is no float's bit pattern here)
        bits = [jnp.where(a, b, -1) for a, b in zip(alive, bits, strict=True)]
    total = sum(z.size for z in zs)
    k = jnp.clip(jnp.asarray(k, int_dtype), 0, total)

    def count(predicate) -> jax.Array:
        return sum(
            (jnp.sum(predicate(i, b), dtype=int_dtype) for i, b in enumerate(bits)), jnp.zeros([], int_dtype)
        )

    # The k-th largest bit pattern: the largest t with at least k entries >= t.
    kth = _largest_passing(jnp.iinfo(int_dtype).max, lambda t: count(lambda i, b: b >= t) >= k, int_dtype)
    room = k - count(lambda i, b: b > kth)  # how many of the entries equal to it are kept
    offsets = [sum(z.size for z in zs[:i]) for i in range(len(zs))]
    index = [_flat_index(b.shape, o, int_dtype) for b, o in zip(bits, offsets, strict=True)]
    ties = [b == kth for b in bits]
    # Keep the ties of index < cut: the largest cut with at most `room` ties below it.
    cut = _largest_passing(total, lambda c: count(lambda i, b: ties[i] & (index[i] < c)) <= room, int_dtype)
    return [((b > kth) | (t & (j < cut))) & (k > 0) for b, t, j in zip(bits, ties, index, strict=True)]


def _block_ranks(blocks: jax.Array) -> jax.Array:
    """The rank of each entry of every block (last axis) by decreasing value (0 = largest); ties: lower index first.

    Pairwise comparisons for short blocks (m * m elementwise ops, no sort); a stable argsort
    for long ones.
    """
    m = blocks.shape[-1]
    if m > 16:
        order = jnp.argsort(-blocks, axis=-1, stable=True)
        return jnp.argsort(order, axis=-1, stable=True)
    a_i, a_j = blocks[..., :, None], blocks[..., None, :]
    before = jnp.arange(m)[None, :] < jnp.arange(m)[:, None]  # [i, j]: j < i
    return jnp.sum((a_j > a_i) | ((a_j == a_i) & before), axis=-1, dtype=jnp.int32)


class PruningState(NamedTuple):
    """State of :func:`keep_top_k` and :func:`keep_n_of_m` with ``freeze=True``."""

    count: jax.Array  # pyright: ignore[reportIncompatibleMethodOverride]  # shape (), int32; +1 per update
    alive: Any  # a bool array per selected leaf: False once the entry has been pruned


def _select(
    name: str, keep_fn: Callable[..., list[jax.Array]], hyperparams: tuple[Any, ...], freeze: bool
) -> optax.GradientTransformation:
    """The transform ``u -> where(keep, u, -w)``, ``keep = keep_fn([w + u per leaf], paths, alive, *hyperparams)``.

    With ``freeze`` the state remembers which entries were ever pruned (``alive``), and
    ``keep_fn`` must never keep those again; otherwise ``alive`` is ``None``.
    """

    def init_fn(params: Any) -> Any:
        if not freeze:
            return count_init(params)
        alive = jax.tree.map(lambda w: jnp.ones(jnp.shape(w), bool), params)
        return PruningState(count=jnp.zeros([], jnp.int32), alive=alive)

    def update_fn(updates, state, params=None):
        require_params(params, name)
        values = [value_at(h, state.count) for h in hyperparams]
        u_leaves, treedef = jax.tree_util.tree_flatten(updates)
        paths_w = jax.tree_util.tree_flatten_with_path(params)[0]
        w_leaves = [w for _, w in paths_w]
        zs = [w + u for u, w in zip(u_leaves, w_leaves, strict=True)]
        alive = jax.tree.leaves(state.alive) if freeze else None
        keeps = keep_fn(zs, [p for p, _ in paths_w], alive, *values)
        new = [
            jnp.where(keep, u, -w).astype(u.dtype)
            for keep, u, w in zip(keeps, u_leaves, w_leaves, strict=True)
        ]
        count = jnp.asarray(optax.safe_increment(state.count))
        new_state = (
            PruningState(count, jax.tree_util.tree_unflatten(treedef, keeps)) if freeze else CountState(count)
        )
        return jax.tree_util.tree_unflatten(treedef, new), new_state

    return optax.GradientTransformation(init_fn, update_fn)


def _k_from(k: Any, fraction: Any, size: int) -> Any:
    """``k``, or ``round(fraction * size)`` (half to even) for a concrete or traced ``fraction``."""
    if k is not None:
        return min(k, size)
    f = concrete_float("fraction", fraction)
    if f is not None:
        return round(f * size)
    return jnp.round(jnp.asarray(fraction, jnp.float32) * size).astype(jnp.int32)


def keep_top_k(
    *,
    k: int | None = None,
    fraction: optax.ScalarOrSchedule | None = None,
    scope: str = "leaf",
    mask: Mask = None,
    freeze: bool = False,
) -> optax.GradientTransformation:
    r"""Magnitude pruning to exactly ``k`` entries, placed **last** in the chain.

    With $z = w + u$ it lands on the Euclidean projection of $z$ onto the
    tensors with at most $k$ nonzeros: the $k$ entries of largest $|z|$ keep
    $z$, all others become exactly ``0.0``. Exactly $k$ entries are kept (fewer
    nonzeros only if a kept $z$ is itself 0); among equal magnitudes the entry
    with the lower index (row-major; in tree order, then row-major, for
    ``scope="global"``) is kept, so the result is deterministic.

    ``scope="leaf"`` keeps $k$ entries in every selected leaf; ``scope="global"``
    keeps $k$ entries over all selected leaves together (their magnitudes are
    compared in float32, or float64 if a leaf is float64). With ``fraction``,
    $k = \mathrm{round}(f \cdot n)$ (half to even) with $n$ the size of the leaf
    (or of all selected leaves): ``fraction`` is the fraction **kept**, one minus
    the sparsity. For gradual pruning pass the complement of
    :func:`sparsity_schedule`::

        sparsity = jaxreg.sparsity_schedule(0.9, begin_step=100, end_step=1000)
        tx = optax.chain(
            optax.adam(1e-3),
            jaxreg.keep_top_k(fraction=lambda count: 1 - sparsity(count), mask=jaxreg.masks.weights_only),
        )

    The state's ``count`` counts this transform's updates, the step at which
    ``fraction`` is evaluated. Pruned entries are zero after every step, but
    by default they may come back: an entry pruned at one step is kept at the
    next if its $|w + u|$ is among the $k$ largest. With ``freeze=True`` an
    entry once pruned stays at exactly zero for good (it receives no update):
    the state (:class:`PruningState`) keeps a bool per entry, and $k$ is then
    taken among the entries still alive (with a growing sparsity, as from
    :func:`sparsity_schedule`, exactly $k$ are kept). Nothing is sorted: the $k$-th largest
    magnitude is found by bisection on its bit pattern, 31 counts of the entries
    above a candidate (63 for float64), and the ties at it by bisection on
    their indices (about $\log_2 n$ more counts). Nothing is reshaped or
    concatenated either: on sharded params each count is a scalar all-reduce
    (checked on a simulated mesh of 8 devices: no all-gather).

    Args:
      k: the number of entries kept, a Python int $\ge 0$ (a leaf of at most
        ``k`` entries is kept whole). Exactly one of ``k`` and ``fraction``.
      fraction: $f \in [0, 1]$, the fraction of entries kept (float, JAX scalar or
        optax schedule).
      scope: ``"leaf"`` (k per leaf) or ``"global"`` (k over all selected leaves).
      mask: which leaves (``optax.masked`` semantics); usually
        ``jaxreg.masks.weights_only``.
      freeze: a Python bool; ``True`` keeps pruned entries at zero for good.

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``; its
      state is :class:`CountState`, or :class:`PruningState` with ``freeze=True``
      (inside ``optax.MaskedState`` with ``mask=``).

    Examples:
      >>> import jax.numpy as jnp, optax, jaxreg
      >>> tx = optax.chain(optax.sgd(1.0), jaxreg.keep_top_k(k=2))
      >>> params = {"w": jnp.array([0.5, -3.0, 1.0, 1.0])}
      >>> updates, _ = tx.update({"w": jnp.zeros(4)}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)["w"].tolist()  # the tie at 1.0: the first is kept
      [0.0, -3.0, 1.0, 0.0]

    References:
      Zhu and Gupta, "To prune, or not to prune: exploring the efficacy of
      pruning for model compression", 2017 (https://arxiv.org/abs/1710.01878);
      Han et al., "Learning both Weights and Connections for Efficient Neural
      Networks", NeurIPS 2015 (https://arxiv.org/abs/1506.02626).
    """
    if (k is None) == (fraction is None):
        raise ValueError(
            f"keep_top_k takes exactly one of k and fraction, got k={k!r}, fraction={fraction!r}"
        )
    if k is not None:
        k = check_count("k", k)
    else:
        check_rate("fraction", fraction, allow_schedule=True)
    if scope not in ("leaf", "global"):
        raise ValueError(f"scope must be 'leaf' or 'global', got {scope!r}")

    def keep_fn(zs: Sequence[jax.Array], paths: Sequence[Any], alive: Any, f: Any = None) -> list[jax.Array]:
        del paths
        if scope == "leaf":
            per_leaf = [None] * len(zs) if alive is None else [[a] for a in alive]
            return [
                _keep_largest([z], _k_from(k, f, z.size), a)[0] for z, a in zip(zs, per_leaf, strict=True)
            ]
        if not zs:
            return []
        return _keep_largest(zs, _k_from(k, f, sum(z.size for z in zs)), alive)

    hyperparams = () if fraction is None else (fraction,)
    return masked(_select("keep_top_k", keep_fn, hyperparams, check_bool("freeze", freeze)), mask)


def keep_n_of_m(
    n: int, m: int, *, axis: int = 0, mask: Mask = None, freeze: bool = False
) -> optax.GradientTransformation:
    r"""N:M structured sparsity, placed **last** in the chain: ``n`` of every ``m`` consecutive entries.

    With $z = w + u$, along ``axis`` every block of ``m`` consecutive entries
    keeps its ``n`` entries of largest $|z|$ (the lower index among equal
    magnitudes) and the others land on exactly ``0.0``: exactly ``n`` nonzeros
    per block at most, ``n * size / m`` kept per leaf. ``axis`` is the axis the
    blocks run along: the input axis of a kernel (``0`` for a Dense kernel
    ``(in, out)``, ``2`` for an HWIO conv kernel), the reduction axis of the
    matmul, which is what 2:4 sparse tensor cores accelerate. The size of every
    selected leaf along ``axis`` must be a multiple of ``m`` (a ``ValueError``
    names the leaf); exclude the others (biases) with ``mask=``.

    Sharded params: every block is ranked where it lies, so a leaf whose shards
    hold whole blocks needs no communication: one not split along ``axis``
    (split along its other axes only), or one whose size per shard along
    ``axis`` is a multiple of ``m``. Otherwise blocks straddle devices and are
    exchanged: with automatic mesh axes XLA all-gathers the entries of each
    block among the devices that share it (checked on 8 devices holding 2 rows
    each of a ``(16, 32)`` kernel, ``m=4``: all-gathers of 4 rows, never the
    whole leaf); with explicit mesh axes (``AxisType.Explicit``) the leaf is
    made whole along ``axis`` (an all-gather along that axis). The update keeps
    the parameter's sharding.

    Args:
      n: the entries kept per block, a Python int, $0 \le n \le m$.
      m: the block length, a Python int $\ge 1$.
      axis: the axis the blocks run along, a Python int.
      mask: which leaves (``optax.masked`` semantics); usually
        ``jaxreg.masks.weights_only``.
      freeze: a Python bool; ``True`` fixes the pattern of the first step: the
        entries it prunes stay at exactly zero for good (the state is a
        :class:`PruningState`).

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp, optax, jaxreg
      >>> tx = optax.chain(optax.sgd(1.0), jaxreg.keep_n_of_m(2, 4))
      >>> params = {"kernel": jnp.array([[0.1], [-2.0], [0.5], [1.0]])}
      >>> updates, _ = tx.update({"kernel": jnp.zeros((4, 1))}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)["kernel"].ravel().tolist()
      [0.0, -2.0, 0.0, 1.0]

    References:
      Mishra et al., "Accelerating Sparse Deep Neural Networks", 2021
      (https://arxiv.org/abs/2104.08378); Zhou et al., "Learning N:M Fine-grained
      Structured Sparse Neural Networks From Scratch", ICLR 2021
      (https://arxiv.org/abs/2102.04010).
    """
    m = check_count("m", m, minimum=1)
    n = check_count("n", n)
    if n > m:
        raise ValueError(f"n must be <= m, got n={n} > m={m}")
    check_axis("axis", axis)

    def keep_leaf(z: jax.Array, path: Any, alive: Any) -> jax.Array:
        where = f"params leaf '{key_path_str(path)}' of shape {z.shape}"
        try:
            ax = check_axis("axis", axis, z.ndim)
        except ValueError as e:
            raise ValueError(f"keep_n_of_m: {where}: {e}") from None
        if z.shape[ax] % m:
            raise ValueError(
                f"keep_n_of_m: {where}: its size {z.shape[ax]} along axis={axis} is not a multiple of m={m}; "
                "exclude it with mask="
            )
        a = jnp.abs(z).astype(acc_dtype(z.dtype))
        if alive is not None:  # pruned for good: ranked below every magnitude, never kept
            a = jnp.where(alive, a, -1)
        if (a.shape[ax] // explicit_shards(a, ax)) % m:  # blocks straddle explicitly sharded devices
            a = unsharded(a, (ax,))
        a = jnp.moveaxis(a, ax, -1)
        blocks = a.reshape(*a.shape[:-1], a.shape[-1] // m, m)
        keep = sharded_like(jnp.moveaxis((_block_ranks(blocks) < n).reshape(a.shape), -1, ax), z)
        return keep if alive is None else keep & alive

    def keep_fn(zs: Sequence[jax.Array], paths: Sequence[Any], alive: Any) -> list[jax.Array]:
        per_leaf = [None] * len(zs) if alive is None else alive
        return [keep_leaf(z, p, a) for z, p, a in zip(zs, paths, per_leaf, strict=True)]

    return masked(_select("keep_n_of_m", keep_fn, (), check_bool("freeze", freeze)), mask)


def sparsity_schedule(
    final_sparsity: float,
    begin_step: int,
    end_step: int,
    *,
    initial_sparsity: float = 0.0,
    power: float = 3,
) -> optax.Schedule:
    r"""Zhu and Gupta's gradual pruning schedule, as an optax schedule of the sparsity.

    $s_t = s_f + (s_i - s_f)\,(1 - \tau)^p$ with $\tau = \mathrm{clip}((t -
    t_0) / (t_1 - t_0), 0, 1)$: $s_i$ until ``begin_step`` $t_0$, then a fast rise
    that slows down, reaching $s_f$ at ``end_step`` $t_1$ and staying there. The
    paper's $p$ is 3; it prunes every $\Delta t$ steps, this schedule moves at
    every step. The value is the **sparsity** (the fraction of zeros): give
    :func:`keep_top_k` its complement, ``fraction=lambda count: 1 - schedule(count)``.

    Args:
      final_sparsity: $s_f \in [0, 1]$.
      begin_step: $t_0 \ge 0$, a Python int.
      end_step: $t_1 > t_0$, a Python int.
      initial_sparsity: $s_i \in [0, 1]$.
      power: $p > 0$.

    Returns:
      An optax schedule ``count -> sparsity`` (a float32 JAX scalar).

    Examples:
      >>> import jaxreg
      >>> schedule = jaxreg.sparsity_schedule(0.9, begin_step=0, end_step=10)
      >>> [round(float(schedule(t)), 4) for t in (0, 5, 10, 20)]
      [0.0, 0.7875, 0.9, 0.9]

    References:
      Zhu and Gupta, "To prune, or not to prune: exploring the efficacy of
      pruning for model compression", 2017, eq. 1 (https://arxiv.org/abs/1710.01878).
    """
    s_f = float(check_rate("final_sparsity", final_sparsity))
    s_i = float(check_rate("initial_sparsity", initial_sparsity))
    t0 = check_count("begin_step", begin_step)
    t1 = check_count("end_step", end_step)
    if t1 <= t0:
        raise ValueError(f"end_step must be > begin_step, got begin_step={t0}, end_step={t1}")
    p = float(check_positive("power", power))
    if not math.isfinite(p):
        raise ValueError(f"power must be finite, got {power!r}")

    def schedule(count: Any) -> jax.Array:
        t = jnp.asarray(count, jnp.float32)
        tau = jnp.clip((t - t0) / np.float32(t1 - t0), 0, 1)
        return jnp.asarray(s_f + (s_i - s_f) * (1 - tau) ** p, jnp.float32)

    return schedule
