"""Compile time of a regularized training step, and the number of compilations over 100 steps.

The regularized step trains an MLP with ``jaxreg.dropout`` on the hidden
layers, an L2 penalty in the loss (weights only), ``add_l1`` with a scheduled
strength before ``optax.adamw`` with a scheduled learning rate, and
``max_norm`` last when it exists, on the weights only (a norm constraint on a
bias vector is not what it is for, and costs compile time); the baseline is
the same MLP with ``optax.adamw`` alone. Each dropout layer's key is legacy
``uint32`` key data: the base key's first two words, the step xored into the first
and the layer index into the second (a distinct key for every step and layer),
which the fast sampler hashes into its seed words like any key's words (no
threefry ``fold_in`` and ``split`` in the step: they cost more compile time
than the dropout they feed; and each key word costs two mixer rounds, compiled
into every kernel that draws the mask, so the key has two words, not four).
Compile time is the first call of a fresh ``jax.jit`` (a new closure each
time, so nothing is cached): tracing, lowering, XLA compilation and one step,
the first three also reported apart from jax's monitoring events; the
regularized and the baseline step alternate. Over 100 steps with new batches,
new keys and advancing schedules, traces are counted by a Python side effect
in the traced function (it runs once per trace) and XLA compilations by jax's
``backend_compile`` events: both must be 1.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxreg
from benchmarks._harness import NONE, Case, Config, normal

SIZES = (256, 512, 512, 10)  # MLP: inputs, hidden, hidden, outputs
QUICK_SIZES = (32, 64, 10)
BATCH = 128
STEPS = 100
RATE = 0.1


def _init(sizes):
    return {
        f"dense{i}": {"kernel": normal(i, (m, n), m**-0.5), "bias": jax.device_put(np.zeros(n, np.float32))}
        for i, (m, n) in enumerate(itertools.pairwise(sizes))
    }


def _make_step(regularized: bool, counter: list[int]):
    if regularized:
        parts = [
            jaxreg.add_l1(optax.linear_schedule(0.0, 1e-4, STEPS // 2)),
            optax.adamw(optax.cosine_decay_schedule(1e-3, STEPS)),
        ]
        if hasattr(jaxreg, "max_norm"):
            parts.append(jaxreg.max_norm(3.0, axis=0, mask=jaxreg.masks.weights_only))
        tx = optax.chain(*parts)
    else:
        tx = optax.adamw(1e-3)
    use_dropout = regularized and hasattr(jaxreg, "dropout")

    def loss_fn(params, batch, words, step_word):
        x, y = batch
        layers = list(params.values())
        for i, layer in enumerate(layers):
            x = x @ layer["kernel"] + layer["bias"]
            if i < len(layers) - 1:
                x = jax.nn.relu(x)
                if use_dropout:
                    # Legacy key data (the fast sampler's key): two of the base key's words, the step
                    # xored into the first and the layer index into the second.
                    x = jaxreg.dropout(words ^ jnp.stack([step_word, jnp.uint32(i)]), x, RATE)
        loss = optax.softmax_cross_entropy_with_integer_labels(x, y).mean()
        if regularized:
            loss = loss + 1e-4 * jaxreg.l2_penalty(params, mask=jaxreg.masks.weights_only)
        return loss

    def step(params, state, batch, base_key, i):
        counter[0] += 1  # a Python side effect: runs once per trace, not per call
        words = jax.random.key_data(base_key)[:2]  # two words whatever the key's implementation
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, words, i.astype(jnp.uint32))
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    return step, tx


def _batch(i: int, sizes):
    rng = np.random.default_rng(i)
    x = rng.standard_normal((BATCH, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], BATCH).astype(np.int32)
    return jax.device_put(x), jax.device_put(y)


class _CompileEvents:
    """Collects jax's compilation events (trace, lowering, XLA compile) while active."""

    EVENTS: ClassVar[dict[str, str]] = {
        "/jax/core/compile/jaxpr_trace_duration": "trace",
        "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
        "/jax/core/compile/backend_compile_duration": "xla_compile",
    }

    def __init__(self):
        self.seconds: dict[str, float] = dict.fromkeys(self.EVENTS.values(), 0.0)
        self.counts: dict[str, int] = dict.fromkeys(self.EVENTS.values(), 0)

    def _listener(self, event, duration, **kwargs):
        del kwargs
        if event in self.EVENTS:
            self.seconds[self.EVENTS[event]] += duration
            self.counts[self.EVENTS[event]] += 1

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listener)


def _train(regularized: bool, params, batches, key) -> dict[str, Any]:
    """Runs STEPS steps of a fresh ``jax.jit``; times the first call (trace, lower, compile, run)."""
    counter = [0]
    step, tx = _make_step(regularized, counter)
    jitted = jax.jit(step)  # a new closure: nothing cached
    state = jax.block_until_ready(tx.init(params))
    losses = []
    with _CompileEvents() as events:
        t0 = time.perf_counter()
        params, state, loss = jax.block_until_ready(jitted(params, state, batches[0], key, np.int32(0)))
        first_ms = (time.perf_counter() - t0) * 1e3
        losses.append(loss)
        for i, batch in enumerate(batches[1:], start=1):
            params, state, loss = jitted(params, state, batch, key, np.int32(i))
            losses.append(loss)
        jax.block_until_ready(losses)
    return {
        "first_call_ms": first_ms,
        **{f"{k}_ms": v * 1e3 for k, v in events.seconds.items()},
        "traces": counter[0],
        "xla_compilations": events.counts["xla_compile"],
        "losses_finite": bool(np.all(np.isfinite(np.asarray(losses)))),
    }


def _build(repeats: int, sizes) -> list[dict[str, Any]]:
    params = _init(sizes)
    batches = [_batch(i, sizes) for i in range(STEPS)]
    key = jax.random.key(0)
    runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for r in range(repeats):
        for regularized in (True, False) if r % 2 == 0 else (False, True):
            runs[regularized].append(_train(regularized, params, batches, key))

    def stat(regularized, field, fn=np.median):
        return float(fn([run[field] for run in runs[regularized]]))

    def iqr(regularized):
        q25, q75 = np.percentile([run["first_call_ms"] for run in runs[regularized]], [25, 75])
        return float(q75 - q25)

    traces = max(run["traces"] for run in runs[True])
    compilations = max(run["xla_compilations"] for run in runs[True])
    parts = ["add_l1(schedule)", "adamw(schedule)", "l2_penalty in loss"]
    if hasattr(jaxreg, "dropout"):
        parts.insert(0, "dropout")
    if hasattr(jaxreg, "max_norm"):
        parts.append("max_norm (weights only)")
    jaxreg_ms, baseline_ms = stat(True, "first_call_ms"), stat(False, "first_call_ms")
    row = {
        "name": "compile regularized train step",
        "size": int(sum(leaf.size for leaf in jax.tree.leaves(params))),
        "jaxreg_ms": jaxreg_ms,
        "baseline": "unregularized step (optax.adamw alone)",
        "baseline_ms": baseline_ms,
        "ratio": baseline_ms / jaxreg_ms,
        "gbps": None,
        "group": "compile",
        "baseline_kind": NONE,
        "jaxreg_iqr_ms": iqr(True),
        "baseline_iqr_ms": iqr(False),
        "jaxreg_min_ms": stat(True, "first_call_ms", np.min),
        "baseline_min_ms": stat(False, "first_call_ms", np.min),
        "repeats": repeats,
        "regularizers": parts,
        "steps": STEPS,
        "compilations": compilations,
        "traces": traces,
        "baseline_compilations": max(run["xla_compilations"] for run in runs[False]),
        "losses_finite": all(run["losses_finite"] for run in runs[True]),
        "target": f"1 compilation over {STEPS} steps",
        "target_met": traces == 1 and compilations == 1,
    }
    for field in ("trace_ms", "lower_ms", "xla_compile_ms"):
        row[f"jaxreg_{field}"] = stat(True, field)
        row[f"baseline_{field}"] = stat(False, field)
    return [row]


def cases(cfg: Config) -> Iterator[Case]:
    sizes = QUICK_SIZES if cfg.quick else SIZES
    n = sum(m * k + k for m, k in itertools.pairwise(sizes))
    yield Case(
        "compile regularized train step",
        n,
        "compile",
        functools.partial(_build, 1 if cfg.quick else min(cfg.repeats, 5), sizes),
    )
