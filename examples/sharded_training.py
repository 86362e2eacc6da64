"""Data- and model-parallel training of an MLP with jaxreg dropout, AdamW and prox_l1 on a mesh.

One command, here on 8 simulated CPU devices (the script sets ``XLA_FLAGS`` itself when it is
not set, before importing jax)::

    python examples/sharded_training.py

The mesh has axes ``("data", "model")``: the batch is split along "data", and each Dense layer
along "model" (Megatron style: the first kernel by output features, the second by input
features, so the hidden activations, their dropout mask and the first layer's weights never leave
their device). jaxreg's dropout draws the mask from each element's global index, so it is the
same on any mesh, and ``prox_l1`` thresholds each parameter shard where it lives: neither adds a
collective. The only communication is the model's own: the gradient all-reduce over "data" and
the second matmul's all-reduce over "model".

The same script runs on GPUs or TPUs unchanged (``jax.devices()`` are then the accelerators and
the forced CPU device count is ignored), and on several hosts with ``--distributed``, which calls
``jax.distributed.initialize()`` first: run the same command on every host; on Cloud TPU,
SLURM, Open MPI and Kubernetes the processes find each other automatically, elsewhere add
``--coordinator HOST:PORT --num-processes N --process-id I``. Every global array is built with
``jax.make_array_from_callback``, so each process only materializes its own devices' shards,
and only process 0 prints.
"""

from __future__ import annotations

import argparse
import os
import time

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    # Simulated CPU devices for a laptop or CI; no effect on GPU and TPU devices.
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxreg

IN, HIDDEN, CLASSES, INFORMATIVE = 32, 256, 8, 8

# Where each parameter lives: first layer split by output unit, second by input unit.
PARAM_SPECS = {
    "w1": P(None, "model"),
    "b1": P("model"),
    "w2": P("model", None),
    "b2": P(None),
}


def make_mesh(model_parallel: int) -> Mesh:
    n = jax.device_count()
    if n % model_parallel:
        raise ValueError(f"--model-parallel {model_parallel} does not divide the {n} devices")
    devices = np.array(jax.devices()).reshape(n // model_parallel, model_parallel)
    return Mesh(devices, ("data", "model"))


def global_array(value: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from a host value that every process computes identically (multi-host safe)."""
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def init_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "w1": (rng.standard_normal((IN, HIDDEN)) * np.sqrt(2.0 / IN)).astype(np.float32),
        "b1": np.zeros(HIDDEN, np.float32),
        "w2": (rng.standard_normal((HIDDEN, CLASSES)) * np.sqrt(1.0 / HIDDEN)).astype(np.float32),
        "b2": np.zeros(CLASSES, np.float32),
    }


def make_data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A teacher labels the inputs from their first INFORMATIVE features only (the rest is noise)."""
    x = rng.standard_normal((n, IN)).astype(np.float32)
    teacher = rng.standard_normal((INFORMATIVE, CLASSES))
    y = np.argmax(x[:, :INFORMATIVE] @ teacher, axis=1).astype(np.int32)
    return x, y


def forward(params, x, key, rate):
    h = jax.nn.relu(x @ params["w1"] + params["b1"])  # (batch, hidden): sharded ("data", "model")
    h = jaxreg.dropout(key, h, rate)  # the mask is drawn where h lives, from global indices
    return h @ params["w2"] + params["b2"]  # contracts "model": the model's own all-reduce


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=256, help="global batch size")
    parser.add_argument("--model-parallel", type=int, default=2, help="size of the 'model' mesh axis")
    parser.add_argument("--rate", type=float, default=0.1, help="dropout rate")
    parser.add_argument("--seed", type=int, default=0, help="dropout key seed, the same on every host")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--l1", type=float, default=0.3, help="prox_l1 strength on the kernels")
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="multi-host: call jax.distributed.initialize() (auto-detected on Cloud TPU, SLURM, Open MPI, Kubernetes)",
    )
    parser.add_argument("--coordinator", help="with --distributed elsewhere: host:port of process 0")
    parser.add_argument("--num-processes", type=int, help="with --distributed elsewhere")
    parser.add_argument("--process-id", type=int, help="with --distributed elsewhere")
    args = parser.parse_args()
    if args.distributed:
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    log = print if jax.process_index() == 0 else (lambda *a, **k: None)

    mesh = make_mesh(args.model_parallel)
    log(
        f"{mesh}  ({jax.process_count()} process(es), {jax.device_count()} {jax.devices()[0].platform} devices)"
    )

    param_sh = {k: NamedSharding(mesh, s) for k, s in PARAM_SPECS.items()}
    batch_sh = {"x": NamedSharding(mesh, P("data", None)), "y": NamedSharding(mesh, P("data"))}
    replicated = NamedSharding(mesh, P())

    rng = np.random.default_rng(0)  # the same on every process
    params = {k: global_array(v, param_sh[k]) for k, v in init_params(rng).items()}
    x_all, y_all = make_data(rng, args.batch * 8)

    # AdamW (decoupled weight decay, kernels only), then the proximal L1 step on the kernels.
    # prox_l1 goes last, after the learning-rate scaling; with Adam it is the usual heuristic.
    tx = optax.chain(
        optax.adamw(args.lr, weight_decay=1e-4, mask=jaxreg.masks.weights_only),
        jaxreg.prox_l1(args.l1, args.lr, mask=jaxreg.masks.weights_only),
    )
    # Eagerly, zeros_like gives Adam's moments their params' shardings; the scalar step counts
    # (jaxreg's states are nothing else) are replicated. (Under a plain jax.jit(tx.init) the
    # params are unused inputs, pruned, and the whole state would land on one device.)
    opt_state = tx.init(params)
    opt_sh = jax.tree.map(
        lambda a: a.sharding if isinstance(a.sharding, NamedSharding) else replicated, opt_state
    )
    opt_state = jax.device_put(opt_state, opt_sh)

    def loss_fn(params, batch, key):
        logits = forward(params, batch["x"], key, args.rate)
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    def train_step(params, opt_state, batch, step):
        # The same key on every device and process: the mask differs per element already (it
        # hashes global indices), so never fold in a device or process index.
        key = jax.random.fold_in(jax.random.key(args.seed), step)
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    step_fn = jax.jit(
        train_step,
        in_shardings=(param_sh, opt_sh, batch_sh, replicated),
        out_shardings=(param_sh, opt_sh, replicated),
        donate_argnums=(0, 1),
    )

    for name, p in params.items():
        log(
            f"  {name:3s} {p.dtype}{list(p.shape)!s:12s} {p.sharding.spec}  local shard {p.addressable_shards[0].data.shape}"
        )

    start = time.perf_counter()
    for step in range(args.steps):
        lo = (step * args.batch) % len(x_all)
        batch = {
            "x": global_array(x_all[lo : lo + args.batch], batch_sh["x"]),
            "y": global_array(y_all[lo : lo + args.batch], batch_sh["y"]),
        }
        step_no = global_array(np.asarray(step, np.int32), replicated)
        if step == 0:
            hlo = step_fn.lower(params, opt_state, batch, step_no).compile().as_text()
            ops = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
            counts = {op: hlo.count(f" {op}(") + hlo.count(f" {op}-start(") for op in ops}
            log("collectives in the compiled step (the model's own):", {k: v for k, v in counts.items() if v})
        params, opt_state, loss = step_fn(params, opt_state, batch, step_no)
        log(f"step {step:3d}  loss {float(loss.addressable_data(0)):.4f}")
    jax.block_until_ready(params)

    kept = all(p.sharding.is_equivalent_to(param_sh[k], p.ndim) for k, p in params.items())
    log(f"{args.steps} steps in {time.perf_counter() - start:.2f} s; parameters kept their shardings: {kept}")
    if jax.process_count() == 1:  # (multi-host: w1 is not addressable from one process)
        w1 = np.asarray(params["w1"])
        log(
            f"prox_l1 zeros in w1: {np.mean(w1[:INFORMATIVE] == 0):.0%} of the weights of the {INFORMATIVE} "
            f"informative inputs, {np.mean(w1[INFORMATIVE:] == 0):.0%} of the {IN - INFORMATIVE} noise inputs"
        )


if __name__ == "__main__":
    main()
