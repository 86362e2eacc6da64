"""One optimizer step on a pytree of about 25M parameters (quick: about 33k, a smoke test).

``optax.sgd`` and ``optax.adamw`` alone versus the same chained with each jaxreg
transform, placed where its docstring says (``add_l1`` and
``add_decayed_weights`` before the optimizer, proximal steps and constraints
last); the penalty in the loss (``jax.grad`` of ``l1_penalty`` / ``l2_penalty``
added to the gradient) versus the transform; and jaxreg's transforms versus
their optax counterparts where optax has one. A step is
``params, state = apply_updates(params, tx.update(grads, state, params))``
under ``jax.jit``, with the gradients given, so the table shows the cost of the
update alone. Params and state are donated to the step (``donate_argnums``)
and threaded from call to call, as in a training loop. GB/s counts the step's
inputs and outputs (params, grads, state, new params, new state).
``prox_nuclear_norm`` takes one SVD of each kernel per step (the biases masked
out): at 2048 x 2048 that is seconds per SVD on a CPU, so it is timed on a
smaller tree (4 x 512 x 512, quick: the quick tree; the row's ``size`` says so),
after ``optax.sgd`` only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import optax

import jaxreg
from benchmarks._harness import NONE, Baseline, Bench, Case, Config, io_nbytes, normal

LR = 1e-2
STRENGTH = 1e-4
_BOX = functools.partial(optax.projections.projection_box, lower=-1.0, upper=1.0)
FULL_LAYERS = (6, 2048)  # 6 x (2048 x 2048 kernel + 2048 bias) = 25,178,112 parameters
QUICK_LAYERS = (2, 128)  # 2 x (128 x 128 + 128) = 33,024 parameters

BASES: dict[str, Callable[[], optax.GradientTransformation]] = {
    "sgd": lambda: optax.sgd(LR),
    "adamw": lambda: optax.adamw(LR),
}

# name -> (where in the chain, factory); "before" the optimizer or "after" it.
REGULARIZERS: dict[str, tuple[str, Callable[[], optax.GradientTransformation]]] = {
    "add_l1": ("before", lambda: jaxreg.add_l1(STRENGTH)),
    "add_decayed_weights": ("before", lambda: jaxreg.add_decayed_weights(STRENGTH)),
    "prox_l1": ("after", lambda: jaxreg.prox_l1(STRENGTH, LR)),
    "prox_group_lasso": ("after", lambda: jaxreg.prox_group_lasso(STRENGTH, LR, axis=0)),
    # Constraints.
    "max_norm": ("after", lambda: jaxreg.max_norm(3.0, axis=0)),
    "unit_norm": ("after", lambda: jaxreg.unit_norm(axis=0)),
    "min_max_norm": ("after", lambda: jaxreg.min_max_norm(0.5, 2.0, rate=1.0, axis=0)),
    "non_negative": ("after", lambda: jaxreg.non_negative()),
    "prox_ridge": ("after", lambda: jaxreg.prox_ridge(STRENGTH, LR)),
    "prox_sparse_group_lasso": ("after", lambda: jaxreg.prox_sparse_group_lasso(STRENGTH, STRENGTH, LR)),
    "fista": ("after", lambda: optax.chain(jaxreg.prox_l1(STRENGTH, LR), jaxreg.fista())),
    # Any prox or projection: the generic builders (soft-thresholding, as prox_l1; a box).
    "proximal": ("after", lambda: jaxreg.proximal(jaxreg.soft_threshold, STRENGTH, LR)),
    "projected": ("after", lambda: jaxreg.projected(_BOX)),
    # Pruning: the k-th largest magnitude by bisection on scalar counts (per kernel, or over all
    # kernels together), and 2:4 blocks ranked by pairwise comparisons.
    "keep_top_k": ("after", lambda: jaxreg.keep_top_k(fraction=0.1, mask=jaxreg.masks.weights_only)),
    "keep_top_k_global": (
        "after",
        lambda: jaxreg.keep_top_k(fraction=0.1, scope="global", mask=jaxreg.masks.weights_only),
    ),
    "keep_n_of_m": ("after", lambda: jaxreg.keep_n_of_m(2, 4, mask=jaxreg.masks.weights_only)),
    # One SVD per matrix, the biases left alone: the step is the SVDs' time, so only after
    # optax.sgd and on a smaller tree (SMALLER_TREE).
    "prox_nuclear_norm": (
        "after",
        lambda: jaxreg.prox_nuclear_norm(STRENGTH, LR, mask=jaxreg.masks.weights_only),
    ),
}
# Cases whose key is not the name of the jaxreg function they time.
API_NAME = {"keep_top_k_global": "keep_top_k"}
# Cases timed after some of BASES only.
ONLY_AFTER = {"prox_nuclear_norm": ("sgd",)}
# Cases whose steps take seconds: the default number of samples (not twice as many).
SLOW = {"prox_nuclear_norm"}
# Cases timed on a smaller tree than the others: (full, quick) layers.
SMALLER_TREE = {"prox_nuclear_norm": ((4, 512), (2, 128))}

# jaxreg transform -> (label, optax counterpart in the same place of the chain).
OPTAX_COUNTERPARTS: dict[str, tuple[str, Callable[[], optax.GradientTransformation]]] = {
    "add_decayed_weights": ("optax.add_decayed_weights", lambda: optax.add_decayed_weights(STRENGTH)),
    "non_negative": ("optax.keep_params_nonnegative", lambda: optax.keep_params_nonnegative()),
}

# jaxreg transform -> penalty whose jax.grad, times STRENGTH, is the same gradient term.
PENALTY_IN_LOSS = {"add_l1": "l1_penalty", "add_decayed_weights": "l2_penalty"}


def _tree(layers: int, width: int, seed: int, scale: float) -> dict[str, Any]:
    return {
        f"layer{i}": {
            "kernel": normal(seed + 2 * i, (width, width), scale),
            "bias": normal(seed + 2 * i + 1, (width,), scale),
        }
        for i in range(layers)
    }


@functools.cache
def _inputs(layers: int, width: int):
    return _tree(layers, width, 100, 0.05), _tree(layers, width, 200, 1e-3)


def _chain(base: str, reg: str | None, *, optax_version: bool = False) -> optax.GradientTransformation:
    opt = BASES[base]()
    if reg is None:
        return opt
    where, make = REGULARIZERS[reg]
    tx = OPTAX_COUNTERPARTS[reg][1]() if optax_version else make()
    return optax.chain(tx, opt) if where == "before" else optax.chain(opt, tx)


@functools.cache
def _cached_step(base: str, reg: str | None, optax_version: bool = False):
    """The jitted step and its transform, shared by the cases that time it as a baseline."""
    tx = _chain(base, reg, optax_version=optax_version)
    return _step_of(tx), tx


def _step_of(tx: optax.GradientTransformation):
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1))


def _penalty_step(base: str, penalty: str):
    """The penalty in the loss: grads + STRENGTH * jax.grad(penalty)(params), then the optimizer."""
    opt = BASES[base]()
    penalty_fn = getattr(jaxreg, penalty)

    def step(params, state, grads):
        extra = jax.grad(lambda p: STRENGTH * penalty_fn(p))(params)
        grads = jax.tree.map(jnp.add, grads, extra)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1)), opt


class _Loop:
    """Calls a step that donates params and state, threading them as a training loop does.

    Donation lets XLA write the new params and state into the old buffers; without
    it, every step allocates about 100 MB of fresh outputs on CPU, whose page faults
    (tens of ms, depending on the allocator's state) would swamp the transforms.
    """

    def __init__(self, step, tx_init, params, grads):
        self.step, self.grads = step, grads
        self.params = jax.tree.map(jnp.copy, params)  # own buffers: each call donates them
        self.state = tx_init(self.params)

    def __call__(self):
        self.params, self.state = self.step(self.params, self.state, self.grads)
        return self.params, self.state


def _timed(step, tx_init, params, grads):
    loop = _Loop(step, tx_init, params, grads)
    return loop, io_nbytes(step, loop.params, loop.state, grads)


def _build(base: str, reg: str, layers: tuple[int, int], repeats_factor: int) -> Bench | str:
    if not hasattr(jaxreg, API_NAME.get(reg, reg)):
        return f"jaxreg.{API_NAME.get(reg, reg)} does not exist yet"
    params, grads = _inputs(*layers)
    tx = _chain(base, reg)
    ours, nbytes = _timed(_step_of(tx), tx.init, params, grads)
    step, base_tx = _cached_step(base, None)
    fn, base_bytes = _timed(step, base_tx.init, params, grads)
    baselines = [Baseline(f"optax.{base} alone", fn, NONE, base_bytes)]
    if reg in OPTAX_COUNTERPARTS:
        label = OPTAX_COUNTERPARTS[reg][0]
        step, opt_tx = _cached_step(base, reg, True)
        fn, b = _timed(step, opt_tx.init, params, grads)
        baselines.append(Baseline(f"{base} + {label}", fn, "optax", b))
    if reg in PENALTY_IN_LOSS and hasattr(jaxreg, PENALTY_IN_LOSS[reg]):
        penalty = PENALTY_IN_LOSS[reg]
        step, opt = _penalty_step(base, penalty)
        fn, b = _timed(step, opt.init, params, grads)
        baselines.append(Baseline(f"{base} + jax.grad({penalty}) in the loss", fn, "penalty-in-loss", b))
    n = sum(leaf.size for leaf in jax.tree.leaves(params))
    return Bench(
        name=f"{base} + {reg} step",
        size=n,
        group="optim",
        jaxreg=ours,
        baselines=baselines,
        nbytes=nbytes,
        extra={"optimizer": base, "regularizer": reg, "strength": STRENGTH, "learning_rate": LR},
        repeats_factor=repeats_factor,
    )


def cases(cfg: Config) -> Iterator[Case]:
    for base in BASES:
        for reg in REGULARIZERS:
            if base not in ONLY_AFTER.get(reg, BASES):
                continue
            layers = QUICK_LAYERS if cfg.quick else FULL_LAYERS
            if reg in SMALLER_TREE:
                layers = SMALLER_TREE[reg][cfg.quick]
            n = layers[0] * (layers[1] ** 2 + layers[1])
            yield Case(
                f"{base} + {reg} step",
                n,
                "optim",
                functools.partial(_build, base, reg, layers, 1 if cfg.quick or reg in SLOW else 2),
            )
