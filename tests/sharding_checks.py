"""jaxreg on a mesh of 8 simulated CPU devices; run in a subprocess by ``tests/test_sharding.py``.

XLA reads ``--xla_force_host_platform_device_count`` once, when jax first starts a backend, so
these checks cannot run inside the pytest process (which has already started jax on one CPU
device). By hand::

    python tests/sharding_checks.py [CASE_PREFIX ...]

(run directly, the script sets ``XLA_FLAGS`` itself before importing jax). It prints one JSON
object on stdout, ``{case_id: {"ok": bool, "detail": str}}``.

Every case runs a jaxreg function under ``jax.jit`` on inputs placed with a ``NamedSharding`` on
a mesh of shape 1x8, 2x4 or 8x1 with axes ``("data", "model")`` (plus one 2x4 mesh with
``AxisType.Explicit`` axes, jax's sharding-in-types mode) and checks, against the same function
on one device (the oracle):

- values: bit for bit for elementwise transforms and for every dropout-family output (same key,
  same mask), to 1e-5 relative where a sharded reduction changes the order of a sum;
- sharding: each output leaf's sharding ``is_equivalent_to`` its input's;
- collectives, read from the compiled SPMD module (``lower(...).compile().as_text()``): never an
  all-gather, reduce-scatter, all-to-all or collective-permute; an all-reduce only where the math
  needs one (a penalty summed to a scalar, a group or constraint norm whose reduced dimensions are
  sharded), and then of at most one element per group and per leaf, so that a gather disguised as
  an all-reduce of a zero-padded buffer (as XLA's CPU backend sometimes lowers all-gather) fails;
- no buffer in the compiled module as large as the unsharded input (work replicated on every
  device, e.g. random bits generated for the whole array and then sliced).

Two transforms need data that other devices hold, and their cases check exactly which:
``prox_nuclear_norm`` takes the SVD of the whole matrix, so a sharded kernel is all-gathered (the
largest all-gather is the whole leaf, and nothing else is exchanged); ``keep_n_of_m`` ranks the
entries of blocks of ``m`` rows, so it exchanges nothing while every shard holds whole blocks and
otherwise all-gathers only the rows of the blocks that straddle devices (all of axis 0 with
explicit mesh axes).

The ``detector/*`` cases check that these detectors do fire on a gather and on a large all-reduce.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import functools
import json
import re
import time
import traceback
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxreg

N_DEVICES = 8
AXES = ("data", "model")

# mesh id -> (mesh shape, axis type, the mesh axes that inputs are sharded along on it: "data",
# "model" or "both"). Sharding along a mesh axis of size 1 is replication in effect and is left
# out (1x8 shards along "model" only, 8x1 along "data" only). Every function runs on these.
MESHES = {
    "1x8": ((1, 8), AxisType.Auto, ("model",)),
    "2x4": ((2, 4), AxisType.Auto, ("both",)),
    "8x1": ((8, 1), AxisType.Auto, ("data",)),
    "2x4explicit": ((2, 4), AxisType.Explicit, ("both",)),
}
# Meshes used only by the functions that name them in ``WeightFn.extra``.
EXTRA_MESHES = {"8x1explicit": ((8, 1), AxisType.Explicit, ("data",))}
# Sharded along one axis of the 2x4 mesh and replicated along the other: for the functions
# whose communication depends on which dimensions are split (norms, sums, broadcast masks).
PARTIAL = {"2x4": ("data", "model")}
PARTIAL_WEIGHT_FNS = (
    "prox_group_lasso_axis0",
    "prox_group_lasso_axis1",
    "group_lasso_penalty_axis0",
    "l1_penalty",
    "keep_n_of_m",
)
PARTIAL_DROP_OPS = ("dropout", "dropout_broadcast", "dropblock")
# How case ids name those layouts: params' rows along "data" and columns along "model";
# activations' batch along "data" and features (channels) along "model".
WEIGHT_LAYOUT_NAMES = {"data": "rows", "model": "cols", "both": "both"}
DROPOUT_LAYOUT_NAMES = {"data": "batch", "model": "features", "both": "both"}

FORBIDDEN = ("all-gather", "reduce-scatter", "all-to-all", "collective-permute", "ragged-all-to-all")
_COLLECTIVE = re.compile(
    r"=\s*(?P<type>\([^=]*?\)|\S+)\s+(?P<op>all-gather|all-reduce|reduce-scatter|all-to-all|"
    r"ragged-all-to-all|collective-permute)(?:-start)?\("
)
_SHAPE = re.compile(r"[a-z]+[0-9]*\[([0-9,]*)\]")


def make_mesh(mesh_id: str) -> Mesh:
    shape, axis_type, _ = {**MESHES, **EXTRA_MESHES}[mesh_id]
    devices = np.array(jax.devices()[:N_DEVICES]).reshape(shape)
    return Mesh(devices, AXES, axis_types=(axis_type, axis_type))


def collectives(hlo: str) -> list[tuple[str, int]]:
    """(op, number of elements it moves) for every collective instruction of a compiled module."""
    out = []
    for m in _COLLECTIVE.finditer(hlo):
        elems = 0
        for dims in _SHAPE.findall(m.group("type")):
            elems += int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
        out.append((m.group("op"), elems))
    return out


def check_collectives(hlo: str, allreduce_bound: int, gather: int = 0) -> list[str]:
    """Problems with the collectives of ``hlo``; ``allreduce_bound`` 0 means none allowed.

    ``gather`` > 0: the function must all-gather, and its largest all-gather moves exactly
    ``gather`` elements.
    """
    problems = []
    found = collectives(hlo)
    if gather:
        largest = max((elems for op, elems in found if op == "all-gather"), default=0)
        if largest != gather:
            problems.append(f"largest all-gather of {largest} elements, expected {gather}")
    for op, elems in found:
        if op == "all-gather" and elems <= gather:
            continue
        if op in FORBIDDEN:
            problems.append(f"{op} of {elems} elements")
        elif op == "all-reduce" and elems > allreduce_bound:
            allowed = "no all-reduce is needed" if allreduce_bound == 0 else f"at most {allreduce_bound}"
            problems.append(f"all-reduce of {elems} elements ({allowed})")
    return problems


def full_size_buffers(hlo: str, global_size: int, factor: int = 1) -> list[str]:
    """Problems: arrays in the compiled module as large as the unsharded input (replicated work).

    ``factor``: the function's own intermediates are up to this many times its input (the
    pairwise comparisons of ``keep_n_of_m``'s blocks), so the threshold is ``factor`` times
    the unsharded size.
    """
    sizes = [int(np.prod([int(d) for d in dims.split(",") if d] or [1])) for dims in _SHAPE.findall(hlo)]
    big = [n for n in sizes if n >= factor * global_size]
    return [f"{len(big)} buffers of >= {factor} x {global_size} elements, the unsharded size"] if big else []


def run_sharded(fn: Callable, args: tuple) -> tuple[Any, str]:
    """Compiles ``jax.jit(fn)`` for ``args`` (already placed) and returns (outputs, HLO text)."""
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled(*args), compiled.as_text()


def on_one_device(tree: Any) -> Any:
    return jax.device_put(jax.tree.map(np.asarray, tree), jax.devices()[0])


def compare(got: Any, want: Any, exact: bool) -> list[str]:
    problems = []
    got_l, want_l = jax.tree.leaves(got), jax.tree.leaves(want)
    if len(got_l) != len(want_l):
        return [f"{len(got_l)} output leaves, {len(want_l)} on one device"]
    for i, (g, w) in enumerate(zip(got_l, want_l, strict=True)):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape or g.dtype != w.dtype:
            problems.append(f"leaf {i}: {g.dtype}{g.shape} vs {w.dtype}{w.shape} on one device")
        elif exact and not np.array_equal(g, w, equal_nan=True):
            problems.append(f"leaf {i}: {int(np.sum(g != w))} of {g.size} values differ from one device")
        elif not exact and not np.allclose(g, w, rtol=1e-5, atol=1e-6):
            problems.append(f"leaf {i}: max |diff| {np.max(np.abs(g - w)):.3g} from one device")
    return problems


def compare_shardings(got: Any, want: Any) -> list[str]:
    problems = []
    for i, (g, w) in enumerate(zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)):
        if not g.sharding.is_equivalent_to(w.sharding, g.ndim):
            problems.append(f"leaf {i}: output sharding {g.sharding.spec} != input {w.sharding.spec}")
    return problems


# --------------------------------------------------------------------------------------------------
# Weight transforms, penalties and constraints
# --------------------------------------------------------------------------------------------------

# Params: a Dense kernel (16, 32) and its bias (32,). Layout -> (kernel spec, bias spec).
WEIGHT_LAYOUTS = {
    "rows": (P("data", None), P(None)),
    "cols": (P(None, "model"), P("model")),
    "both": (P("data", "model"), P("model")),
}


class WeightFn(NamedTuple):
    build: Callable[[], Any]  # -> an optax.GradientTransformation, or a penalty params -> scalar
    is_penalty: bool
    # leaf ndim -> the dimensions a norm reduces over (None: elementwise, no reduction)
    reduced: Callable[[int], tuple[int, ...]] | None
    sums: int = 1  # scalar sums per leaf of a penalty (elastic net: its L1 and its L2 term)
    counts: bool = False  # a selection by counts (keep_top_k): scalar counts, one per sharded leaf
    # (kernel shape, shards per dim, explicit mesh) -> the elements of its largest all-gather
    # (0: none), for the functions that need entries other devices hold
    gather: Callable[[tuple[int, ...], tuple[int, ...], bool], int] | None = None
    buffer_factor: int = 1  # see full_size_buffers
    exact: bool = True  # values bit for bit (False: to 1e-5, e.g. an SVD partitioned differently)
    extra: tuple[str, ...] = ()  # "mesh/layout" cases on EXTRA_MESHES


def _whole_leaf(shape: tuple[int, ...], shards: tuple[int, ...], explicit: bool) -> int:
    """prox_nuclear_norm: a leaf sharded along its matrix axes is gathered whole."""
    return int(np.prod(shape)) if max(shards) > 1 else 0


def _straddling_blocks(m: int) -> Callable[[tuple[int, ...], tuple[int, ...], bool], int]:
    """keep_n_of_m(axis=0) on a 2-D kernel: nothing while each shard holds whole blocks of m rows;
    else the rows of one block (automatic axes: XLA gathers among the devices sharing a block)
    or all rows (explicit axes: the leaf is made whole along axis 0), times a shard's columns."""

    def gather(shape, shards, explicit):
        rows, cols = shape[0] // shards[0], shape[1] // shards[1]
        if rows % m == 0:
            return 0
        return (shape[0] if explicit else m) * cols

    return gather


def _group_dims(axis: int) -> Callable[[int], tuple[int, ...]]:
    """Groups of group_lasso_penalty / prox_group_lasso: the norm runs over every dim but ``axis``."""
    return lambda ndim: tuple(range(ndim)) if ndim < 2 else tuple(d for d in range(ndim) if d != axis % ndim)


def _norm_dims(axis: int) -> Callable[[int], tuple[int, ...]]:
    """Keras constraints: the norm runs over ``axis``."""
    return lambda ndim: (axis % ndim,)


def weight_fns() -> dict[str, WeightFn]:
    fns = {
        "add_l1": WeightFn(lambda: jaxreg.add_l1(0.1), False, None),
        "add_decayed_weights": WeightFn(lambda: jaxreg.add_decayed_weights(0.1), False, None),
        "prox_l1": WeightFn(lambda: jaxreg.prox_l1(0.5, 1.0), False, None),
        "prox_elastic_net": WeightFn(lambda: jaxreg.prox_elastic_net(0.5, 0.2, 1.0), False, None),
        "prox_group_lasso_axis0": WeightFn(
            lambda: jaxreg.prox_group_lasso(4.0, 1.0, axis=0), False, _group_dims(0)
        ),
        "prox_group_lasso_axis1": WeightFn(
            lambda: jaxreg.prox_group_lasso(3.0, 1.0, axis=1), False, _group_dims(1)
        ),
        "l1_penalty": WeightFn(lambda: jaxreg.l1_penalty, True, None),
        "l2_penalty": WeightFn(lambda: jaxreg.l2_penalty, True, None),
        "elastic_net_penalty": WeightFn(
            lambda: lambda p: jaxreg.elastic_net_penalty(p, 0.5, 0.2), True, None, 2
        ),
        "group_lasso_penalty_axis0": WeightFn(lambda: jaxreg.group_lasso_penalty, True, _group_dims(0)),
        "group_lasso_penalty_axis1": WeightFn(
            lambda: lambda p: jaxreg.group_lasso_penalty(p, axis=1), True, _group_dims(1)
        ),
    }
    # Constraints (issue 8), included as soon as they exist.
    if hasattr(jaxreg, "max_norm"):
        fns["max_norm_axis0"] = WeightFn(lambda: jaxreg.max_norm(2.0, axis=0), False, _norm_dims(0))
        fns["max_norm_axis1"] = WeightFn(
            lambda: jaxreg.max_norm(2.0, axis=1, mask=jaxreg.masks.weights_only), False, _norm_dims(1)
        )
    if hasattr(jaxreg, "unit_norm"):
        fns["unit_norm"] = WeightFn(lambda: jaxreg.unit_norm(axis=0), False, _norm_dims(0))
    if hasattr(jaxreg, "min_max_norm"):
        fns["min_max_norm"] = WeightFn(
            lambda: jaxreg.min_max_norm(1.0, 3.0, rate=0.5, axis=0), False, _norm_dims(0)
        )
    if hasattr(jaxreg, "non_negative"):
        fns["non_negative"] = WeightFn(lambda: jaxreg.non_negative(), False, None)
    # Exact sparsity: the k-th largest magnitude by bisection on scalar counts, never a gather.
    fns["keep_top_k_leaf"] = WeightFn(lambda: jaxreg.keep_top_k(fraction=0.3), False, None, counts=True)
    fns["keep_top_k_global"] = WeightFn(
        lambda: jaxreg.keep_top_k(k=100, scope="global"), False, None, counts=True
    )
    # The weight-decay variants: elementwise (no communication), with masks and per-leaf factors
    # (factors split the leaves into groups, each decayed by its own masked transform).
    fns["decoupled_weight_decay"] = WeightFn(
        lambda: jaxreg.decoupled_weight_decay(
            0.1, schedule=0.5, mask=jaxreg.masks.weights_only, factors={"kernel": 0.5, "bias": 1.0}
        ),
        False,
        None,
    )
    fns["corrected_weight_decay"] = WeightFn(
        lambda: jaxreg.corrected_weight_decay(
            0.1, 0.5, max_learning_rate=1.0, factors=jaxreg.masks.factors([("bias", 0.5)])
        ),
        False,
        None,
    )
    fns["cautious_weight_decay"] = WeightFn(
        lambda: jaxreg.cautious_weight_decay(
            0.1, mask={"kernel": True, "bias": True}, factors={"kernel": 2.0, "bias": 0.5}
        ),
        False,
        None,
    )
    # 2:4 along the kernel's rows (axis 0): blocks of 4 rows, each ranked where it lies.
    fns["keep_n_of_m"] = WeightFn(
        lambda: jaxreg.keep_n_of_m(2, 4, axis=0, mask=jaxreg.masks.weights_only),
        False,
        None,
        gather=_straddling_blocks(4),
        buffer_factor=4,
        extra=("8x1explicit/rows",),
    )
    # An SVD of the whole matrix on every device.
    fns["prox_nuclear_norm"] = WeightFn(
        lambda: jaxreg.prox_nuclear_norm(0.5, 1.0, mask=jaxreg.masks.weights_only),
        False,
        None,
        gather=_whole_leaf,
        exact=False,
    )
    return fns


def _weights() -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    # Row scales from 0.1 to 1.5, so that thresholds and norm constraints are active on some
    # groups and not on others.
    scale = np.linspace(0.1, 1.5, 16, dtype=np.float32)[:, None]
    params = {
        "kernel": (rng.standard_normal((16, 32)) * scale).astype(np.float32),
        "bias": rng.standard_normal(32).astype(np.float32),
    }
    updates = jax.tree.map(lambda w: (0.1 * rng.standard_normal(w.shape)).astype(np.float32), params)
    return params, updates


def _mesh_size(mesh: Mesh, entry: Any) -> int:
    names = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
    return int(np.prod([mesh.shape[n] for n in names]))


def _allreduce_bound(fn: WeightFn, params: dict, specs: dict, mesh: Mesh) -> int:
    """How many elements the math needs to all-reduce (0: no all-reduce at all)."""

    def sharded_dims(name):
        spec = tuple(specs[name]) + (None,) * (params[name].ndim - len(specs[name]))
        return {d for d, e in enumerate(spec) if _mesh_size(mesh, e) > 1}

    bound = 0
    for name, w in params.items():
        sharded = sharded_dims(name)
        if fn.reduced is not None and sharded & set(fn.reduced(w.ndim)):
            # one partial sum of squares per group (= per entry of the reduced norm array)
            kept = [s for d, s in enumerate(w.shape) if d not in fn.reduced(w.ndim)]
            bound += int(np.prod(kept or [1]))
        if fn.is_penalty and sharded:
            bound += fn.sums  # the leaf's partial sums of the scalar total
        if fn.counts and sharded:
            bound += 1  # the leaf's count of the entries above a candidate
    return bound


@functools.cache
def weight_reference(fn_name: str) -> Any:
    """The oracle: the same function on one device (computed once per function)."""
    fn = weight_fns()[fn_name]
    obj = fn.build()
    params, updates = on_one_device(_weights())
    if fn.is_penalty:
        return jax.jit(obj)(params)
    return jax.jit(obj.update)(updates, obj.init(params), params)[0]


def check_weight_case(fn_name: str, mesh_id: str, layout: str) -> list[str]:
    fn = weight_fns()[fn_name]
    mesh = make_mesh(mesh_id)
    params, updates = _weights()
    kernel_spec, bias_spec = WEIGHT_LAYOUTS[layout]
    specs = {"kernel": kernel_spec, "bias": bias_spec}
    shard = {k: NamedSharding(mesh, s) for k, s in specs.items()}
    p_sh = {k: jax.device_put(v, shard[k]) for k, v in params.items()}
    u_sh = {k: jax.device_put(v, shard[k]) for k, v in updates.items()}
    bound = _allreduce_bound(fn, params, specs, mesh)
    gather = 0
    if fn.gather is not None:
        spec = tuple(kernel_spec) + (None,) * (2 - len(kernel_spec))
        shards = tuple(_mesh_size(mesh, e) for e in spec)
        explicit = AxisType.Explicit in mesh.axis_types
        gather = fn.gather(params["kernel"].shape, shards, explicit)
    obj = fn.build()
    problems = []
    if fn.is_penalty:
        got, hlo = run_sharded(obj, (p_sh,))
        problems += compare(got, weight_reference(fn_name), exact=False)
        if not got.sharding.is_fully_replicated:
            problems.append(f"penalty is not replicated: {got.sharding}")
    else:
        state = obj.init(p_sh)
        got, hlo = run_sharded(obj.update, (u_sh, state, p_sh))
        problems += compare(got[0], weight_reference(fn_name), exact=fn.reduced is None and fn.exact)
        problems += compare_shardings(got[0], u_sh)
    problems += check_collectives(hlo, bound, gather)
    if gather != params["kernel"].size:  # a leaf gathered whole is replicated by design
        problems += full_size_buffers(hlo, params["kernel"].size, fn.buffer_factor)
    return problems


def weight_cases() -> dict[str, Callable[[], list[str]]]:
    cases = {}
    for fn_name in weight_fns():
        for mesh_id, (_, _, axes) in MESHES.items():
            if fn_name in PARTIAL_WEIGHT_FNS:
                axes = PARTIAL.get(mesh_id, ()) + axes
            for layout in (WEIGHT_LAYOUT_NAMES[a] for a in axes):
                cases[f"weights/{fn_name}/{mesh_id}/{layout}"] = lambda f=fn_name, m=mesh_id, lay=layout: (
                    check_weight_case(f, m, lay)
                )
        for mesh_layout in weight_fns()[fn_name].extra:
            mesh_id, layout = mesh_layout.split("/")
            cases[f"weights/{fn_name}/{mesh_layout}"] = lambda f=fn_name, m=mesh_id, lay=layout: (
                check_weight_case(f, m, lay)
            )
    return cases


# --------------------------------------------------------------------------------------------------
# Matrix functions (issue 8): reparametrizations and penalties of one kernel
# --------------------------------------------------------------------------------------------------


class MatrixFn(NamedTuple):
    apply: Callable[[Any, Any], Any]  # (kernel, col-sharded vector of size 32 or None) -> outputs
    allreduce_bound: Callable[[set], int]  # sharded kernel dims -> elements an all-reduce may move
    same_sharding: bool  # first output keeps the kernel's sharding (False: a replicated scalar)
    communication_checked: bool = True  # False: pairwise products of rows/columns or an SVD


def matrix_fns() -> dict[str, MatrixFn]:
    fns = {}
    if hasattr(jaxreg, "weight_normalize"):
        # norms over the input axis (0), one per output unit: all-reduced if axis 0 is split
        fns["weight_normalize"] = MatrixFn(
            lambda w, g: jaxreg.weight_normalize(w, g), lambda dims: 32 if 0 in dims else 0, True
        )
    if hasattr(jaxreg, "spectral_normalize"):
        # power iteration: matrix-vector products, all-reduces of vectors (<= 32) and scalars
        def spectral(w, _):
            state = jaxreg.SpectralNormState(u=jnp.ones(32, jnp.float32) / jnp.sqrt(32.0))
            return jaxreg.spectral_normalize(w, state, n_steps=2)

        fns["spectral_normalize"] = MatrixFn(spectral, lambda dims: 32 if dims else 0, True)
    # Products between all pairs of rows or columns (a Gram matrix) and an exact SVD: a sharded
    # matrix must be exchanged, so only values and the replicated result are checked.
    for name in ("orthogonal_penalty", "soft_orthogonal_penalty", "spectral_penalty"):
        if hasattr(jaxreg, name):
            fns[name] = MatrixFn(_penalty_of_matrix(name), lambda dims: 0, False, False)
    return fns


def _penalty_of_matrix(name: str) -> Callable[[Any, Any], Any]:
    return lambda w, _: getattr(jaxreg, name)(w)


# Known limitations, expected to fail (pytest marks them xfail(strict=True), so a fix shows up).
# (The matrix penalties on explicitly sharded weights used to be here: they now reshard the
# matrix to replicated themselves: replicated_acc in jaxreg/_norms.py.)
KNOWN_FAILURES: dict[str, str] = {}


@functools.cache
def matrix_reference(fn_name: str) -> Any:
    params, _ = on_one_device(_weights())
    return jax.jit(matrix_fns()[fn_name].apply)(params["kernel"], jnp.linspace(0.5, 2.0, 32))


def check_matrix_case(fn_name: str, mesh_id: str, layout: str) -> list[str]:
    fn = matrix_fns()[fn_name]
    mesh = make_mesh(mesh_id)
    kernel = _weights()[0]["kernel"]
    kernel_spec, vector_spec = WEIGHT_LAYOUTS[layout]
    w = jax.device_put(kernel, NamedSharding(mesh, kernel_spec))
    g = jax.device_put(np.linspace(0.5, 2.0, 32, dtype=np.float32), NamedSharding(mesh, vector_spec))
    got, hlo = run_sharded(fn.apply, (w, g))
    problems = compare(got, matrix_reference(fn_name), exact=False)
    first = jax.tree.leaves(got)[0]
    if fn.same_sharding:
        problems += compare_shardings(first, w)
    elif not first.sharding.is_fully_replicated:
        problems.append(f"penalty is not replicated: {first.sharding}")
    if fn.communication_checked:
        sharded = {d for d, e in enumerate(kernel_spec) if _mesh_size(mesh, e) > 1}
        problems += check_collectives(hlo, fn.allreduce_bound(sharded))
        problems += full_size_buffers(hlo, kernel.size)
    return problems


# A scanned stack of 8 kernels (16, 32) and the matrix penalties with batch_dims=1. Along "data",
# the layers: each device penalizes its own and all-reduces one partial sum, with no gather (the
# buffers are not checked: the Gram matrices of a device's layers can be as large as the stack).
# Along "data" and "model": each matrix is exchanged, as for one kernel; values only.
STACK_LAYOUTS = {"layers": P("data", None, None), "both": P("data", None, "model")}
STACK_CASES = (("8x1", "layers"), ("2x4explicit", "layers"), ("2x4explicit", "both"))
STACK_PENALTIES = ("orthogonal_penalty", "soft_orthogonal_penalty", "spectral_penalty")


def _stack() -> np.ndarray:
    return np.random.default_rng(2).standard_normal((8, 16, 32)).astype(np.float32)


def _stacked_penalty(name: str) -> Callable[[Any], Any]:
    return lambda w: getattr(jaxreg, name)(w, batch_dims=1)


@functools.cache
def stack_reference(fn_name: str) -> Any:
    return jax.jit(_stacked_penalty(fn_name))(on_one_device(_stack()))


def check_stack_case(fn_name: str, mesh_id: str, layout: str) -> list[str]:
    w = jax.device_put(_stack(), NamedSharding(make_mesh(mesh_id), STACK_LAYOUTS[layout]))
    got, hlo = run_sharded(_stacked_penalty(fn_name), (w,))
    problems = compare(got, stack_reference(fn_name), exact=False)
    if not got.sharding.is_fully_replicated:
        problems.append(f"penalty is not replicated: {got.sharding}")
    if layout == "layers":
        problems += check_collectives(hlo, 1)
    return problems


def matrix_cases() -> dict[str, Callable[[], list[str]]]:
    cases = {}
    for fn_name in matrix_fns():
        for mesh_id, (_, _, axes) in MESHES.items():
            for layout in (WEIGHT_LAYOUT_NAMES[a] for a in PARTIAL.get(mesh_id, ()) + axes):
                cases[f"matrix/{fn_name}/{mesh_id}/{layout}"] = lambda f=fn_name, m=mesh_id, lay=layout: (
                    check_matrix_case(f, m, lay)
                )
    for fn_name in STACK_PENALTIES:
        for mesh_id, layout in STACK_CASES:
            cases[f"matrix/{fn_name}_stack/{mesh_id}/{layout}"] = lambda f=fn_name, m=mesh_id, lay=layout: (
                check_stack_case(f, m, lay)
            )
    return cases


# --------------------------------------------------------------------------------------------------
# Dropout family
# --------------------------------------------------------------------------------------------------

# NHWC activations (8, 8, 8, 16). Layout -> spec: batch along "data", features (channels) along
# "model", or both.
DROPOUT_LAYOUTS = {
    "batch": P("data", None, None, None),
    "features": P(None, None, None, "model"),
    "both": P("data", None, None, "model"),
}
# The same layouts on dropconnect's params (a kernel (16, 32) and a bias (32,)).
PARAM_LAYOUT_OF = {"batch": "rows", "features": "cols", "both": "both"}
# broadcast_dims along the sharded axes of each layout: the mask is shared along a sharded axis.
BROADCAST_DIMS = {"batch": (0,), "features": (3,), "both": (0, 3)}
# Where extra variants run: one mesh per sharded axis and the 2-D one.
SUBSET = ("1x8/features", "2x4/both", "8x1/batch")


class DropOp(NamedTuple):
    apply: Callable[..., Any]  # (key, x, layout, sampler) -> y
    scalar_sums: int = 0  # scalar all-reduces the math needs (DropBlock's kept count)
    per_layout: bool = False  # whether apply depends on the layout (broadcast_dims)


def drop_ops() -> dict[str, DropOp]:
    candidates = {
        "dropout": ("dropout", DropOp(lambda k, x, lay, s: jaxreg.dropout(k, x, 0.3, sampler=s))),
        "dropout_broadcast": (
            "dropout",
            DropOp(
                lambda k, x, lay, s: jaxreg.dropout(k, x, 0.3, broadcast_dims=BROADCAST_DIMS[lay], sampler=s),
                per_layout=True,
            ),
        ),
        "dropout_classic": (
            "dropout",
            DropOp(lambda k, x, lay, s: jaxreg.dropout(k, x, 0.3, mode="classic", sampler=s)),
        ),
        "spatial_dropout": (
            "spatial_dropout",
            DropOp(lambda k, x, lay, s: jaxreg.spatial_dropout(k, x, 0.3, sampler=s)),
        ),
        "gaussian_dropout": (
            "gaussian_dropout",
            DropOp(lambda k, x, lay, s: jaxreg.gaussian_dropout(k, x, 0.3, sampler=s)),
        ),
        "gaussian_noise": (
            "gaussian_noise",
            DropOp(lambda k, x, lay, s: jaxreg.gaussian_noise(k, x, 0.5, sampler=s)),
        ),
        "alpha_dropout": (
            "alpha_dropout",
            DropOp(lambda k, x, lay, s: jaxreg.alpha_dropout(k, x, 0.3, sampler=s)),
        ),
        "drop_path": ("drop_path", DropOp(lambda k, x, lay, s: jaxreg.drop_path(k, x, 0.3, sampler=s))),
        # DropBlock rescales by the kept count of the whole tensor (paper, timm): a scalar sum.
        "dropblock": ("dropblock", DropOp(lambda k, x, lay, s: jaxreg.dropblock(k, x, 0.2, 3, sampler=s), 1)),
    }
    return {name: op for name, (attr, op) in candidates.items() if hasattr(jaxreg, attr)}


def _activations() -> np.ndarray:
    # |x| >= 0.1: an output zero is a dropped element, never an input zero.
    x = np.random.default_rng(1).standard_normal((8, 8, 8, 16)).astype(np.float32)
    return np.where(np.abs(x) < 0.1, 0.1, x)


def _key(kind: str) -> Any:
    if kind == "rbg":
        return jax.random.key(42, impl="rbg")
    if kind == "legacy":
        return jax.random.PRNGKey(42)
    return jax.random.key(42)


def _grad_of(f: Callable) -> Callable:
    """x -> d/dx sum(f(key, x) * x): the gradient sees the mask (and the noise) of the forward."""
    return lambda k, x: jax.vjp(lambda x: f(k, x) * x, x)[1](jnp.ones_like(x))[0]


def _drop_fn(op_name: str, layout: str | None, variant: str) -> Callable:
    op = drop_ops()[op_name]
    sampler = "jax" if variant == "jax" else None
    return lambda k, x: op.apply(k, x, layout, sampler)


@functools.cache
def dropout_reference(op_name: str, layout: str | None, variant: str) -> Any:
    """The oracle: the op under jit on one device with the same key (for "checkpoint", the
    gradient without checkpoint); once per op and variant (and layout, for broadcast_dims)."""
    fn = _drop_fn(op_name, layout, variant)
    if variant == "checkpoint":
        fn = _grad_of(fn)
    return jax.jit(fn)(_key(variant), on_one_device(_activations()))


def check_dropout_case(op_name: str, mesh_id: str, layout: str, variant: str) -> list[str]:
    op = drop_ops()[op_name]
    x_host = _activations()
    x_sh = jax.device_put(x_host, NamedSharding(make_mesh(mesh_id), DROPOUT_LAYOUTS[layout]))
    fn, key = _drop_fn(op_name, layout, variant), _key(variant)
    want = dropout_reference(
        op_name, layout if op.per_layout else None, "fast" if variant == "eager" else variant
    )
    allreduces = op.scalar_sums
    if variant == "checkpoint":
        # Reverse mode through jax.checkpoint: the recomputed mask must be the forward one on
        # every device. (DropBlock's count is summed twice: forward and recomputation.)
        got, hlo = run_sharded(_grad_of(jax.checkpoint(fn)), (key, x_sh))
        allreduces *= 2
    elif variant == "eager":
        got, hlo = fn(key, x_sh), None
    else:
        got, hlo = run_sharded(fn, (key, x_sh))
    problems = compare(got, want, exact=True) + compare_shardings(got, x_sh)
    if hlo is not None:
        problems += check_collectives(hlo, allreduces)
        problems += full_size_buffers(hlo, x_host.size)
    return problems


def check_dropconnect_case(mesh_id: str, layout: str, variant: str) -> list[str]:
    mesh = make_mesh(mesh_id)
    params, _ = _weights()
    specs = dict(zip(("kernel", "bias"), WEIGHT_LAYOUTS[PARAM_LAYOUT_OF[layout]], strict=True))
    p_sh = {k: jax.device_put(v, NamedSharding(mesh, specs[k])) for k, v in params.items()}
    sampler = "jax" if variant == "jax" else None

    def fn(k, p):
        return jaxreg.dropconnect(k, p, 0.3, sampler=sampler)

    key = _key(variant)
    got, hlo = run_sharded(fn, (key, p_sh))
    want = jax.jit(fn)(key, on_one_device(params))
    return (
        compare(got, want, exact=True)
        + compare_shardings(got, p_sh)
        + check_collectives(hlo, 0)
        + full_size_buffers(hlo, params["kernel"].size)
    )


def check_shard_map_local_view() -> list[str]:
    """Inside shard_map a function sees local blocks: the fast sampler then indexes the block,
    so one key gives every block the same mask (the README says to fold in the axis index)."""
    mesh = make_mesh("2x4")
    spec = DROPOUT_LAYOUTS["both"]
    x = jax.device_put(np.ones((8, 8, 8, 16), np.float32), NamedSharding(mesh, spec))
    key = _key("fast")

    def same_key(x):
        return jaxreg.dropout(key, x, 0.5)

    def folded(x):
        index = jax.lax.axis_index("data") * 4 + jax.lax.axis_index("model")
        return jaxreg.dropout(jax.random.fold_in(key, index), x, 0.5)

    problems = []
    for name, fn, want_equal in (("same key", same_key, True), ("folded key", folded, False)):
        y = np.asarray(jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=spec, out_specs=spec))(x))
        blocks = [y[i * 4 : (i + 1) * 4, ..., j * 4 : (j + 1) * 4] for i in range(2) for j in range(4)]
        equal = all(np.array_equal(b, blocks[0]) for b in blocks[1:])
        if equal != want_equal:
            problems.append(f"{name}: blocks {'equal' if equal else 'differ'}, expected the opposite")
    return problems


def dropout_cases() -> dict[str, Callable[[], list[str]]]:
    cases = {}
    mesh_layouts = [f"{m}/{DROPOUT_LAYOUT_NAMES[a]}" for m, (_, _, axes) in MESHES.items() for a in axes]
    every_op = list(drop_ops())
    variants = [
        # (variant, ops, where): the default sampler with a threefry key under jit, everywhere;
        ("fast", every_op, mesh_layouts),
        (
            "fast",
            PARTIAL_DROP_OPS,
            [f"{m}/{DROPOUT_LAYOUT_NAMES[a]}" for m, axes in PARTIAL.items() for a in axes],
        ),
        # sampler="jax" (jax.random with partitionable threefry, the default since jax 0.5):
        # its bernoulli and its normal draws (threefry compiles slowly on 8 devices: 2 cases);
        ("jax", ["dropout", "gaussian_noise"], ("2x4/both",)),
        # the gradient through jax.checkpoint (the recomputation draws the mask again);
        ("checkpoint", every_op, ("2x4/both",)),
        ("checkpoint", ["dropout", "dropout_broadcast"], ("1x8/features", "8x1/batch")),
        # other key implementations: rbg (jax#21046: rbg keys under remat) and legacy uint32;
        ("rbg", ["dropout", "gaussian_noise"], SUBSET),
        ("legacy", ["dropout"], ("2x4/both",)),
        # eagerly, without jit.
        ("eager", ["dropout", "dropout_broadcast"], ("2x4/both",)),
    ]
    for variant, ops, where in variants:
        for op_name in ops:
            if op_name not in drop_ops():
                continue
            for mesh_layout in where:
                mesh_id, layout = mesh_layout.split("/")
                cases[f"dropout/{op_name}/{mesh_layout}/{variant}"] = (
                    lambda o=op_name, m=mesh_id, lay=layout, v=variant: check_dropout_case(o, m, lay, v)
                )
    cases["dropout/shard_map_local_view/2x4/both"] = check_shard_map_local_view
    if hasattr(jaxreg, "dropconnect"):
        for variant, where in (("fast", mesh_layouts),):
            for mesh_layout in where:
                mesh_id, layout = mesh_layout.split("/")
                cases[f"dropout/dropconnect/{mesh_layout}/{variant}"] = (
                    lambda m=mesh_id, lay=layout, v=variant: check_dropconnect_case(m, lay, v)
                )
    return cases


# --------------------------------------------------------------------------------------------------
# The detector itself must fail on a gather: cases that pass only if check_collectives complains
# --------------------------------------------------------------------------------------------------


def check_detector(kind: str) -> list[str]:
    mesh = make_mesh("2x4")
    x = jax.device_put(jnp.ones((16, 32), jnp.float32), NamedSharding(mesh, P("data", "model")))
    if kind == "replicate":  # gathers the whole array onto every device
        fn = lambda x: jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P())) * 2  # noqa: E731
        bound, expected = 0, "all-gather"
    else:  # column sums across the "data" axis: 32 partial sums where 1 is allowed
        fn = lambda x: jnp.sum(x, axis=0)  # noqa: E731
        bound, expected = 1, "all-reduce"
    _, hlo = run_sharded(fn, (x,))
    problems = check_collectives(hlo, bound)
    if not any(p.startswith(expected) for p in problems):
        return [f"the detector missed the {expected} of {kind}: {collectives(hlo)}"]
    if kind == "replicate" and not full_size_buffers(hlo, x.size):
        return ["full_size_buffers missed the replicated (16, 32) array"]
    return []


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def all_cases() -> dict[str, Callable[[], list[str]]]:
    detector = {f"detector/{k}": (lambda k=k: check_detector(k)) for k in ("replicate", "large_all_reduce")}
    return {**detector, **weight_cases(), **matrix_cases(), **dropout_cases()}


def case_ids() -> list[str]:
    """The case ids, without running anything (used by pytest to parametrize)."""
    return list(all_cases())


def main(prefixes: list[str]) -> int:
    if jax.device_count() < N_DEVICES:
        print(f"need {N_DEVICES} devices, have {jax.device_count()}: set XLA_FLAGS", file=sys.stderr)
        return 2
    results = {}
    for case_id, check in all_cases().items():
        if prefixes and not any(case_id.startswith(p) for p in prefixes):
            continue
        start = time.perf_counter()
        try:
            problems = check()
            results[case_id] = {"ok": not problems, "detail": "; ".join(problems)}
        except Exception:
            results[case_id] = {"ok": False, "detail": traceback.format_exc(limit=6)}
        results[case_id]["seconds"] = round(time.perf_counter() - start, 3)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
