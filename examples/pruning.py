"""Magnitude pruning of an MLP on scikit-learn's digits: 90% sparsity gradually, and 2:4 sparsity.

A plain-JAX MLP (64 -> 128 -> 64 -> 10) is trained dense with Adam, then fine-tuned twice from
the dense weights:

* gradual pruning to 90% sparsity per kernel: ``jaxreg.keep_top_k`` placed **last** in the
  chain, keeping the fraction ``1 - s_t`` of each kernel's entries, where ``s_t`` is
  ``jaxreg.sparsity_schedule(0.9, ...)``, Zhu and Gupta's cubic schedule;
* 2:4 structured sparsity: ``jaxreg.keep_n_of_m(2, 4, axis=0)``, the two largest magnitudes of
  every four consecutive inputs of each unit (the pattern sparse tensor cores accelerate).

Biases are never pruned (``mask=jaxreg.masks.weights_only``). Prints the test accuracy of the
three models and the sparsity of each kernel. Runs in a few seconds on a CPU.

Run:  python examples/pruning.py [--steps 600]
"""

import argparse
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import jaxreg

SIZES = (64, 128, 64, 10)
BATCH, LR = 64, 1e-3


def load():
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    perm = np.random.default_rng(0).permutation(len(x))
    x, y = x[perm], digits.target[perm]
    return (x[:1200], y[:1200]), (x[1200:], y[1200:])


def init(key):
    params = {}
    for i, (n_in, n_out) in enumerate(itertools.pairwise(SIZES)):
        key, sub = jax.random.split(key)
        params[f"layer{i}"] = {
            "kernel": jax.random.normal(sub, (n_in, n_out)) * np.sqrt(2.0 / n_in),
            "bias": jnp.zeros(n_out),
        }
    return params


def apply(params, x):
    for i in range(len(SIZES) - 1):
        layer = params[f"layer{i}"]
        x = x @ layer["kernel"] + layer["bias"]
        if i < len(SIZES) - 2:
            x = jax.nn.relu(x)
    return x


def train(params, tx, data, steps):
    (x_train, y_train), _ = data
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss_fn(params):
            return optax.softmax_cross_entropy_with_integer_labels(apply(params, x), y).mean()

        grads = jax.grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    rng = np.random.default_rng(1)
    for _ in range(steps):
        idx = rng.choice(len(x_train), BATCH, replace=False)
        params, opt_state = step(params, opt_state, x_train[idx], y_train[idx])
    return params


def accuracy(params, data):
    _, (x_test, y_test) = data
    return float(np.mean(np.argmax(apply(params, x_test), axis=-1) == y_test))


def sparsities(params):
    return {name: float(np.mean(np.asarray(layer["kernel"]) == 0)) for name, layer in params.items()}


def main(steps: int) -> None:
    data = load()
    weights = jaxreg.masks.weights_only
    dense = train(init(jax.random.key(0)), optax.adam(LR), data, steps)

    sparsity = jaxreg.sparsity_schedule(0.9, begin_step=0, end_step=steps // 2)
    gradual = optax.chain(optax.adam(LR), jaxreg.keep_top_k(fraction=lambda t: 1 - sparsity(t), mask=weights))
    pruned = train(dense, gradual, data, steps)

    two_four = optax.chain(optax.adam(LR), jaxreg.keep_n_of_m(2, 4, axis=0, mask=weights))
    structured = train(dense, two_four, data, steps)

    for name, params in [("dense", dense), ("90% gradual", pruned), ("2:4", structured)]:
        per_layer = "  ".join(f"{k} {v:.1%}" for k, v in sparsities(params).items())
        print(f"{name:12s} test accuracy {accuracy(params, data):.3f}  sparsity {per_layer}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps per phase")
    main(parser.parse_args().steps)
