r"""Norms and array views shared by penalties, transforms and reparametrizations.

The one accumulation dtype (:func:`acc_dtype`), the one gradient-safe
Euclidean norm (:func:`safe_norm`), the group norms of the group lasso
(:func:`group_norms`), "every axis except these" (:func:`axes_except`), the
``(-1, out)`` matrix view of a kernel (:func:`as_matrix`), or of each kernel of
a stack (:func:`as_matrices`, :func:`map_matrices`), and the replicated view of a
matrix that must be whole on every device (:func:`replicated_acc`). Low-precision
leaves get float32 arithmetic, no norm has a NaN gradient at zero, and no norm
overflows or underflows before the result itself does (:func:`norm_parts`; in
one pass where that is exact, for the landing steps: :func:`norm_parts_fast`).

The norms are jitted (their axes static): called eagerly, a norm is one
compiled program rather than one per operation (a dozen: the max, the power of
two from the exponent bits, the scaled squares, the sum, the square root);
under an outer ``jax.jit`` XLA inlines them, so the traced program is the same.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp

from jaxreg._validation import check_group_axes


def acc_dtype(*dtypes: Any) -> jnp.dtype:
    """The dtype jaxreg computes in for inputs of ``dtypes``: float32, or wider if an input is.

    bf16/f16 (and integer) inputs are computed in float32; float64 inputs (under
    ``jax_enable_x64``) in float64. Returned values are cast back by the caller
    where the result has the input's dtype (projections, normalized weights).
    """
    # Standard promotion on purpose: under ``jax_numpy_dtype_promotion="strict"`` promote_types
    # refuses (bfloat16, float32), but this is jaxreg's own choice of accumulator, not a user's
    # implicit mix of dtypes.
    with jax.numpy_dtype_promotion("standard"):
        return functools.reduce(jnp.promote_types, dtypes, jnp.dtype(jnp.float32))


def reciprocal_power_of_two(p: jax.Array) -> jax.Array:
    """``1 / p``, exactly, for ``p`` a power of two whose reciprocal is a normal number (the ``p``
    of :func:`norm_parts`), computed on its exponent bits.

    Cheap enough for XLA to fuse into every consumer, where a division would get a kernel of its
    own (on CPU, one more compiled loop per norm).
    """
    info = jnp.finfo(p.dtype)
    bits = jnp.dtype(f"int{info.bits}")
    bias = info.maxexp - 1
    b = jax.lax.bitcast_convert_type(p, bits)
    return jax.lax.bitcast_convert_type(jnp.asarray((2 * bias) << info.nmant, bits) - b, p.dtype)


@jax.jit
def power_of_two(m: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(2**e, 2**-e)`` with ``m = f * 2**e``, ``f`` in [0.5, 1): the scale that brings ``m`` near 1.

    ``e`` is clipped to ``[minexp + 1, -(minexp + 1)]`` of the dtype (``[-125, 125]`` in float32), so
    that both factors are normal numbers (no subnormal multiplier, which hardware that flushes
    subnormals would turn into 0) and ``m / 2**e < 8``. ``m`` of 0, inf or NaN gives ``(1, 1)``.
    Multiplying by either factor is exact (barring underflow of entries far below ``m``).

    ``e`` is read from the exponent bits of ``m`` (``jnp.frexp`` gives the same ``e``, and twice
    as many operations to compile).
    """
    info = jnp.finfo(m.dtype)
    bits = jnp.dtype(f"int{info.bits}")
    b = jax.lax.bitcast_convert_type(m, bits)
    bias = info.maxexp - 1  # of the stored exponent E: m = 1.f * 2**(E - bias) for 0 < E < 2 bias + 1
    stored = (b >> info.nmant) & (2 * bias + 1)
    zero = (b & jnp.iinfo(bits).max) == 0  # +-0, read from the bits: a subnormal m is not 0
    lo = info.minexp + 1
    e = jnp.where(zero | (stored == 2 * bias + 1), 0, jnp.clip(stored - (bias - 1), lo, -lo))
    p = jax.lax.bitcast_convert_type((e.astype(bits) + bias) << info.nmant, m.dtype)
    return p, reciprocal_power_of_two(p)


@functools.partial(jax.jit, static_argnames=("axis", "keepdims"))
def norm_parts(
    x: jax.Array, axis: int | tuple[int, ...] | None = None, *, keepdims: bool = True
) -> tuple[jax.Array, jax.Array]:
    r"""$\|x\|_2$ over ``axis`` as ``(r, p)`` with $\|x\|_2 = p\,r$, free of overflow and underflow.

    $p = 2^e$ is the power of two just above $\max|x|$ (clipped to the normal
    range, see :func:`power_of_two`, and held constant for differentiation) and
    $r = \|x / p\|_2$: $r = 0$ for $x = 0$, else $r \le 8\sqrt{N}$ ($N$
    entries per norm) and $r \ge 1/2$ unless every entry is subnormal. The
    squares are summed in the scaled variable, as LAPACK's ``nrm2`` does: they
    neither overflow (entries of 1e20 in float32) nor underflow (entries of
    1e-25). Scaling by a power of two is exact, so for values whose squares are
    representable $p\,r$ has the same bits as ``jnp.sqrt(jnp.sum(x**2))``.
    Callers that divide by the norm divide $x / p$ by $r$, which stays finite
    even where $p\,r$ overflows.

    Cost: one more reduction (the max of $|x|$) before the sum of squares. The
    gradient of $r$ is $x / (p^2 r)$ where $x \ne 0$ and 0 at $x = 0$.

    Returns:
      ``(r, p)``, both in ``acc_dtype(x.dtype)``, with the reduced axes kept (size 1) if
      ``keepdims``.
    """
    x = jnp.asarray(x)
    x = x.astype(acc_dtype(x.dtype))
    # initial=0: zero-size inputs have norm 0 (|x| >= 0, so it changes nothing otherwise).
    m = jax.lax.stop_gradient(jnp.max(jnp.abs(x), axis=axis, keepdims=True, initial=0))
    p, inv_p = power_of_two(m)
    sq = jnp.sum(jnp.square(x * inv_p), axis=axis, keepdims=keepdims)
    # sqrt with a zero gradient at 0 (jnp.sqrt alone gives NaN there); NaN and inf pass through.
    zero = sq == 0
    r = jnp.where(zero, 0, jnp.sqrt(jnp.where(zero, 1, sq)))
    if not keepdims:
        p = p.reshape(r.shape)
    return r, p


# Arrays of fewer entries stay in cache: norm_parts_fast takes the two passes (fewer operations to
# compile), and the landing steps start ordering their leaves only at a larger one.
ONE_PASS_MIN_SIZE = 2**20


def on_one_device(x: jax.Array) -> bool:
    """Whether ``x`` is computed whole on one device: no mesh, a mesh of one device, or inside
    ``shard_map`` (every mesh axis manual), so that a test on the whole array needs no collective."""
    mesh = getattr(getattr(jax.typeof(x), "sharding", None), "mesh", None)
    if mesh is None or mesh.empty or mesh.size == 1:
        return True
    return all(t == jax.sharding.AxisType.Manual for t in mesh.axis_types)


def one_pass_candidate(x: jax.Array) -> bool:
    """Whether ``x`` has at least ``ONE_PASS_MIN_SIZE`` entries and is on one device (:func:`on_one_device`)."""
    return x.size >= ONE_PASS_MIN_SIZE and on_one_device(x)


def norm_parts_fast(
    x: jax.Array,
    axis: int | tuple[int, ...] | None = None,
    *,
    zero_ok: Callable[[float], Any] | None = None,
) -> tuple[jax.Array, jax.Array]:
    r""":func:`norm_parts` (kept dims), in one pass over ``x`` where that gives the same norms.

    For the steps that land on a rescaling of ``params + updates`` (the
    constraints, the group-lasso prox), which read ``x`` once more to rescale it.
    On a CPU, for an ``x`` of at least $2^{20}$ entries computed on one device (no
    mesh, or inside ``shard_map``), the squares are first summed unscaled, $p = 1$ and $r =
    \sqrt{s}$, and that is the result when every sum $s$ of the array lies in
    $[N\,\mathrm{tiny}/\epsilon^2, \max]$ ($N$ entries per norm, $\mathrm{tiny}$
    the smallest normal number and $\epsilon$ the machine epsilon: $N\,2^{-80}$
    in float32): no square overflowed, and the squares that fell below the
    normal range (by at most $2^{-150}$ each) changed $s$ by less than a relative
    $2^{-70}$. Scaling by a power of two being exact, $\sqrt{s}$ is then the
    norm that :func:`norm_parts` computes (bit for bit unless such subnormal
    squares change a rounding). A sum of exactly 0 (every entry below
    $\sqrt{2^{-150}}$ in float32) is taken as the norm 0 where ``zero_ok(b)``
    holds: the caller's result is the same for every norm in $[0, b)$, and $b$
    bounds the norm of such an ``x``. Otherwise (a norm beyond that range, a
    NaN, a smaller ``x``, a mesh of several devices, another platform) the result
    is :func:`norm_parts`: the max of $|x|$, then the scaled squares, two passes
    (a smaller ``x`` stays in cache for the second one, and the choice would cost
    more operations to compile than it saves).

    The choice is one ``jax.lax.cond`` per array: a scalar test, with no
    collective (the array is on one device) and no host synchronization (on
    CPU the host runs the program; on GPU a ``cond`` would copy its predicate to
    the host, so other platforms always take the two passes).

    Args:
      x: a real array, computed in :func:`acc_dtype`.
      axis: the axes of each norm; ``None`` for one norm over all of ``x``.
      zero_ok: ``b -> bool`` (a Python or traced bool), or ``None`` (a zero sum
        takes the two passes).

    Returns:
      ``(r, p)`` with the reduced axes kept, as :func:`norm_parts` returns them.
    """
    x = jnp.asarray(x)
    x = x.astype(acc_dtype(x.dtype))

    def two_passes(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return norm_parts(x, axis)

    if not one_pass_candidate(x):
        return two_passes(x)
    axes = range(x.ndim) if axis is None else (axis,) if isinstance(axis, int) else axis
    n = math.prod(x.shape[a] for a in axes)
    info = jnp.finfo(x.dtype)
    lowest = max(n, 1) * float(info.tiny) / float(info.eps) ** 2
    zero_bound = math.sqrt(n * float(info.smallest_subnormal))

    def one_pass(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        s = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
        ok = (s >= lowest) & (s <= info.max)
        if zero_ok is not None:
            ok = ok | ((s == 0) & zero_ok(zero_bound))
        zero = s == 0
        r = jnp.where(zero, 0, jnp.sqrt(jnp.where(zero, 1, s)))
        return jax.lax.cond(jnp.all(ok), lambda x: (r, jnp.ones_like(r)), two_passes, x)

    return jax.lax.platform_dependent(x, cpu=one_pass, default=two_passes)


@functools.partial(jax.jit, static_argnames=("axis", "keepdims"))
def safe_norm(
    x: jax.Array, axis: int | tuple[int, ...] | None = None, *, eps: float = 0.0, keepdims: bool = True
) -> jax.Array:
    r"""$\max(\|x\|_2, \epsilon)$ over ``axis``, in :func:`acc_dtype`, with a finite gradient everywhere.

    The gradient is $x / \|x\|_2$ where $\|x\|_2 > \epsilon$ and 0 elsewhere (in
    particular at $x = 0$, where ``jnp.sqrt`` alone gives a NaN gradient). With
    ``eps=0`` it is the exact norm; with ``eps > 0`` it is the floored norm that
    normalizations divide by, written as ``optax.safe_norm`` does (which only
    reduces over one or two axes). The squares are summed after scaling by a
    power of two (:func:`norm_parts`), so no entry overflows or underflows: the
    result is inf only where the norm itself exceeds the dtype's largest value.
    A NaN entry gives a NaN norm.

    Args:
      x: a real array.
      axis: the axes to reduce over; ``None`` for all.
      eps: the lower bound $\epsilon \ge 0$.
      keepdims: keep the reduced axes (size 1) so the result broadcasts against ``x``.

    Returns:
      The norms, in ``acc_dtype(x.dtype)``.
    """
    r, p = norm_parts(x, axis, keepdims=keepdims)
    n = p * r
    return jnp.where(n <= eps, jnp.asarray(eps, n.dtype), n)


@functools.partial(jax.jit, static_argnames=("axis",))
def normalize(x: jax.Array, axis: int | tuple[int, ...] | None = None, *, eps: float) -> jax.Array:
    r"""$x / \max(\|x\|_2, \epsilon)$ over ``axis``, in :func:`acc_dtype`, for any finite $x$.

    Computed as $(x \cdot p^{-1}) / \max(r, \epsilon / p)$ with $\|x\|_2 = p\,r$
    (:func:`norm_parts`): the same value, finite even where $\|x\|_2$ overflows,
    and a zero vector stays zero (also for an ``eps`` that rounds to 0 in the dtype).
    The scaling is a multiplication by the exact power of two $p^{-1}$, not a division
    by $p$: XLA may fold $(x / p) / d$ into $x / (p\,d)$, and $p\,d$ is the norm, which
    may overflow (on a GPU, float32 rows of entries near 3e38 would come out as 0); the
    multiplication keeps the two steps apart.
    """
    r, p = norm_parts(x, axis)
    x = jnp.asarray(x).astype(r.dtype)
    divisor = jnp.maximum(r, eps / p)
    return (x * reciprocal_power_of_two(p)) / jnp.where(divisor == 0, 1, divisor)


def axes_except(ndim: int, kept: tuple[int, ...]) -> tuple[int, ...]:
    """The axes of an ``ndim``-D array that are not in ``kept`` (normalized, non-negative axes)."""
    return tuple(d for d in range(ndim) if d not in kept)


def as_matrix(w: jax.Array) -> jax.Array:
    """``w`` as the ``(-1, w.shape[-1])`` matrix (inputs x outputs of a kernel), in :func:`acc_dtype`."""
    # The row count spelled out: reshape(-1, 0) cannot infer it for a zero-size w.
    return w.astype(acc_dtype(w.dtype)).reshape(math.prod(w.shape[:-1]), w.shape[-1])


def as_matrices(w: jax.Array, batch_dims: int) -> jax.Array:
    """``w`` as a stack of :func:`as_matrix` views, shape ``(B, rows, w.shape[-1])``, in :func:`acc_dtype`.

    The leading ``batch_dims`` axes index independent matrices (``B`` is their size
    product, 1 for ``batch_dims=0``): a scanned stack of kernels ``(layers, in, out)``
    with ``batch_dims=1`` is ``layers`` matrices ``(in, out)``, where :func:`as_matrix`
    would make one ``(layers * in, out)`` matrix. ``batch_dims`` is checked by the
    caller (:func:`jaxreg._validation.check_batch_dims`); ``reshape(w.shape)``
    undoes the view.
    """
    batch, rows = w.shape[:batch_dims], w.shape[batch_dims:-1]
    return w.astype(acc_dtype(w.dtype)).reshape(math.prod(batch), math.prod(rows), w.shape[-1])


def map_matrices(fn: Callable[..., Any], w: jax.Array, batch_dims: int, *args: jax.Array) -> Any:
    """``fn(matrix, *items)`` on each matrix of ``w``'s stack, the outputs stacked as ``w.shape[:batch_dims]``.

    ``batch_dims=0``: ``fn(as_matrix(w), *args)``. Otherwise ``fn`` is ``jax.vmap``-ed
    over :func:`as_matrices` and over ``args``, whose leading ``batch_dims`` axes are
    those of ``w`` (the per-matrix state, e.g. a power-iteration vector per matrix);
    every output leaf gets the leading axes ``w.shape[:batch_dims]`` back. The
    matrices are in :func:`acc_dtype`.
    """
    if batch_dims == 0:
        return fn(as_matrix(w), *args)
    batch = w.shape[:batch_dims]
    flat = [a.reshape(math.prod(batch), *a.shape[batch_dims:]) for a in args]
    out = jax.vmap(fn)(as_matrices(w, batch_dims), *flat)
    return jax.tree.map(lambda x: x.reshape(*batch, *x.shape[1:]), out)


def explicit_shards(x: jax.Array, axis: int) -> int:
    """How many pieces explicit mesh axes (``jax.sharding.AxisType.Explicit``) cut ``x`` into along ``axis``.

    1 when ``axis`` is not sharded, and on meshes with automatic axes, where XLA
    partitions (and inserts any exchange) by itself.
    """
    sharding = jax.typeof(x).sharding
    spec = tuple(getattr(sharding, "spec", ()))
    entry = spec[axis] if axis < len(spec) else None
    if entry is None:
        return 1
    names = (entry,) if isinstance(entry, str) else tuple(entry)
    return math.prod(sharding.mesh.shape[name] for name in names)


def unsharded(x: jax.Array, axes: Iterable[int]) -> jax.Array:
    """``x`` resharded to be whole along ``axes`` if explicit mesh axes split it there, else ``x``.

    The other axes keep their sharding. With automatic mesh axes nothing is done: XLA
    inserts the exchange an operation needs by itself; with explicit axes
    (``jax.sharding.AxisType.Explicit``) JAX leaves it to the caller and raises
    ``ShardingTypeError`` for operations that need a whole axis (an SVD of a sharded
    matrix, a reshape into blocks that straddle devices). This is an all-gather along
    ``axes``.
    """
    sharding = jax.typeof(x).sharding
    old: tuple[Any, ...] = tuple(getattr(sharding, "spec", ()))
    whole = set(axes)
    spec = [None if d in whole else entry for d, entry in enumerate(old)]
    if spec == list(old):
        return x
    return jax.sharding.reshard(
        x, jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(*spec))
    )


def sharded_like(x: jax.Array, ref: jax.Array) -> jax.Array:
    """``x`` resharded as ``ref`` if ``ref`` is sharded along explicit mesh axes, else ``x``.

    With explicit axes (``jax.sharding.AxisType.Explicit``) the branches of a
    ``jnp.where`` must have the same sharding; resharding an array that is whole
    along an axis to one split there only slices it (no communication).
    """
    sharding = jax.typeof(ref).sharding
    if any(entry is not None for entry in getattr(sharding, "spec", ())):
        return jax.sharding.reshard(x, sharding)
    return x


def replicated_acc(w: jax.Array, batch_dims: int = 0) -> jax.Array:
    """``w`` in :func:`acc_dtype`, whole on every device but for its first ``batch_dims`` axes.

    Pairing every row (or column) of a matrix with every other one, or taking its exact
    SVD, needs the whole matrix on one device: a sharded matrix has to be exchanged
    whatever the code does. With automatic mesh axes XLA inserts that all-gather by
    itself; with explicit axes a matmul over a sharded contracting axis, or an SVD of a
    matrix sharded along its rows or columns, raises ``ShardingTypeError``, so the matrix
    is resharded here (:func:`unsharded`). The first ``batch_dims`` axes (a stack of
    matrices) keep their sharding.
    """
    w = jnp.asarray(w)
    w = unsharded(w, range(batch_dims, w.ndim))
    return w.astype(acc_dtype(w.dtype))


def group_axes(ndim: int, axis: int | tuple[int, ...], where: str = "") -> tuple[int, ...] | None:
    """The axes of the group norms of an ``ndim``-D array: all but ``axis``, or ``None`` (one group) for ``ndim < 2``."""
    if ndim < 2:
        return None
    return axes_except(ndim, check_group_axes("axis", axis, ndim, where))


def group_norms(w: jax.Array, axis: int | tuple[int, ...], where: str = "") -> jax.Array:
    """Euclidean norm of each group of ``w``, keeping dims so it broadcasts against ``w``.

    ``axis`` (an int or a tuple of ints, negative ones counting from the end) names the axes
    that *index* the groups: a group is the set of entries that share their indices along
    all of ``axis``, and the norm runs over the other axes (:func:`axes_except`). ``axis=0``
    on an ``(in, out)`` kernel: one group per row; ``axis=(2, 3)`` on an HWIO kernel: one
    group per ``(in, out)`` pair, its ``kh x kw`` kernel. Arrays with ``ndim < 2`` are one
    group, whatever ``axis``. An axis out of range or repeated raises a ``ValueError`` that
    names ``axis`` (and ``where``). The gradient at a zero group is 0, not NaN. Computed in
    float32, or float64 for a float64 ``w``.
    """
    return safe_norm(w, group_axes(w.ndim, axis, where))
