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
  an all-reduce of a zero-padded buffer (as XLA's CPU backend sometimes lowers all-gather) fails.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import json
import re
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

# (mesh id, mesh shape, axis type, layouts worth testing on it). A layout names which axes of the
# inputs are sharded: "rows"/"batch" along the mesh's "data" axis, "cols"/"features" along
# "model", "both" along both. Layouts along a mesh axis of size 1 are replicated in effect and
# are left out (1x8 has no "rows", 8x1 no "cols").
MESHES = {
    "1x8": ((1, 8), AxisType.Auto, ("cols",)),
    "2x4": ((2, 4), AxisType.Auto, ("rows", "cols", "both")),
    "8x1": ((8, 1), AxisType.Auto, ("rows",)),
    "2x4explicit": ((2, 4), AxisType.Explicit, ("both",)),
}

FORBIDDEN = ("all-gather", "reduce-scatter", "all-to-all", "collective-permute", "ragged-all-to-all")
_COLLECTIVE = re.compile(
    r"=\s*(?P<type>\([^=]*?\)|\S+)\s+(?P<op>all-gather|all-reduce|reduce-scatter|all-to-all|"
    r"ragged-all-to-all|collective-permute)(?:-start)?\("
)
_SHAPE = re.compile(r"[a-z]+[0-9]*\[([0-9,]*)\]")


def make_mesh(mesh_id: str) -> Mesh:
    shape, axis_type, _ = MESHES[mesh_id]
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


def check_collectives(hlo: str, allreduce_bound: int) -> list[str]:
    """Problems with the collectives of ``hlo``; ``allreduce_bound`` 0 means none allowed."""
    problems = []
    for op, elems in collectives(hlo):
        if op in FORBIDDEN:
            problems.append(f"{op} of {elems} elements")
        elif op == "all-reduce" and elems > allreduce_bound:
            allowed = "no all-reduce is needed" if allreduce_bound == 0 else f"at most {allreduce_bound}"
            problems.append(f"all-reduce of {elems} elements ({allowed})")
    return problems


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
        fns["max_norm_axis1"] = WeightFn(lambda: jaxreg.max_norm(2.0, axis=1), False, _norm_dims(1))
    if hasattr(jaxreg, "unit_norm"):
        fns["unit_norm"] = WeightFn(lambda: jaxreg.unit_norm(axis=0), False, _norm_dims(0))
    if hasattr(jaxreg, "min_max_norm"):
        fns["min_max_norm"] = WeightFn(
            lambda: jaxreg.min_max_norm(1.0, 3.0, rate=0.5, axis=0), False, _norm_dims(0)
        )
    if hasattr(jaxreg, "non_negative"):
        fns["non_negative"] = WeightFn(lambda: jaxreg.non_negative(), False, None)
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
    return bound


def check_weight_case(fn_name: str, mesh_id: str, layout: str) -> list[str]:
    fn = weight_fns()[fn_name]
    mesh = make_mesh(mesh_id)
    params, updates = _weights()
    kernel_spec, bias_spec = WEIGHT_LAYOUTS[layout]
    specs = {"kernel": kernel_spec, "bias": bias_spec}
    shard = {k: NamedSharding(mesh, s) for k, s in specs.items()}
    p_sh = {k: jax.device_put(v, shard[k]) for k, v in params.items()}
    u_sh = {k: jax.device_put(v, shard[k]) for k, v in updates.items()}
    p_one, u_one = on_one_device(params), on_one_device(updates)
    bound = _allreduce_bound(fn, params, specs, mesh)
    obj = fn.build()
    problems = []
    if fn.is_penalty:
        got, hlo = run_sharded(obj, (p_sh,))
        want = jax.jit(obj)(p_one)
        problems += compare(got, want, exact=False)
        if not got.sharding.is_fully_replicated:
            problems.append(f"penalty is not replicated: {got.sharding}")
    else:
        state = obj.init(p_sh)
        got, hlo = run_sharded(obj.update, (u_sh, state, p_sh))
        want = jax.jit(obj.update)(u_one, obj.init(p_one), p_one)
        problems += compare(got[0], want[0], exact=fn.reduced is None)
        problems += compare_shardings(got[0], u_sh)
    problems += check_collectives(hlo, bound)
    return problems


def weight_cases() -> dict[str, Callable[[], list[str]]]:
    cases = {}
    for fn_name in weight_fns():
        for mesh_id, (_, _, layouts) in MESHES.items():
            for layout in layouts:
                cases[f"weights/{fn_name}/{mesh_id}/{layout}"] = lambda f=fn_name, m=mesh_id, lay=layout: (
                    check_weight_case(f, m, lay)
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
    return []


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def all_cases() -> dict[str, Callable[[], list[str]]]:
    detector = {f"detector/{k}": (lambda k=k: check_detector(k)) for k in ("replicate", "large_all_reduce")}
    return {**detector, **weight_cases()}


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
        try:
            problems = check()
            results[case_id] = {"ok": not problems, "detail": "; ".join(problems)}
        except Exception:
            results[case_id] = {"ok": False, "detail": traceback.format_exc(limit=6)}
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
