"""A textbook PyTorch dropout example (a feed-forward net) in Flax NNX, with classic and inverted dropout.

The PyTorch model is ``fc1 -> ReLU -> Dropout(0.5) -> fc2`` trained with
Adam (lr 1e-3) and cross-entropy, evaluated without dropout. Here the same
network is an ``nnx.Module`` whose dropout layer is ``jaxreg.nnx.Dropout``
(an ``nnx.Rngs`` stream, ``model.train()`` / ``model.eval()``), trained twice:

* ``mode="inverted"`` (PyTorch, Flax): kept units are scaled by 1/(1-p) in
  training, the layer is the identity at test time;
* ``mode="classic"`` (the formulation of Srivastava et al. 2014): no scaling in
  training, activations multiplied by (1-p) at test time.

The script checks the point of both conventions: the expected training-mode
activation of the dropout layer equals its test-mode activation (Monte Carlo
over 2000 masks), and both trained nets reach similar test accuracy. It also
checks that the layer drops: in one training-mode pass, the fraction of the
active (nonzero after ReLU) units that it sets to zero is the rate, within 5
standard errors.

Run: ``python examples/feedforward_dropout.py`` (about 10 s on a laptop CPU; ``--epochs 5`` for a
quick run, as the test suite does).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxreg
import jaxreg.nnx as jrx

INPUT, HIDDEN, CLASSES, RATE = 100, 50, 10, 0.5


class FeedforwardNet(nnx.Module):
    """fc1 -> ReLU -> Dropout -> fc2, the PyTorch example's network."""

    def __init__(self, input_size, hidden_size, output_size, dropout_rate, *, mode, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(input_size, hidden_size, rngs=rngs)
        self.dropout = jrx.Dropout(dropout_rate, mode=mode, rngs=rngs)
        self.fc2 = nnx.Linear(hidden_size, output_size, rngs=rngs)

    def hidden(self, x):
        """The dropout layer's output (the activation whose expectation we compare)."""
        return self.dropout(jax.nn.relu(self.fc1(x)))

    def __call__(self, x):
        return self.fc2(self.hidden(x))


def make_data(seed=0, n_train=2000, n_test=1000):
    """A 10-class problem: labels from a noisy random linear teacher on Gaussian inputs."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((INPUT, CLASSES)) / np.sqrt(INPUT)
    x = rng.standard_normal((n_train + n_test, INPUT)).astype(np.float32)
    logits = x @ w + 0.3 * rng.standard_normal((n_train + n_test, CLASSES))
    y = logits.argmax(axis=1)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def train(mode, data, epochs=60, batch=100, seed=0):
    (x_tr, y_tr), (x_te, y_te) = data
    model = FeedforwardNet(
        INPUT, HIDDEN, CLASSES, RATE, mode=mode, rngs=nnx.Rngs(params=seed, dropout=seed + 1)
    )
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    @nnx.jit
    def accuracy(model, x, y):
        return (model(x).argmax(axis=1) == y).mean()

    perm_rng = np.random.default_rng(seed)
    for _ in range(epochs):
        model.train()  # dropout on
        perm = perm_rng.permutation(len(x_tr))
        for i in range(0, len(x_tr), batch):
            idx = perm[i : i + batch]
            step(model, optimizer, x_tr[idx], y_tr[idx])
    model.eval()  # dropout off: identity (inverted) or x (1 - p) (classic)
    return model, float(accuracy(model, x_tr, y_tr)), float(accuracy(model, x_te, y_te))


def expected_vs_test_activation(model, x, samples=2000):
    """Monte Carlo mean of the train-mode dropout output vs the test-mode output, and the
    fraction of the active units that one train-mode pass of the module drops (and their count)."""
    h = jax.nn.relu(model.fc1(x))
    model.train()
    h_train = np.asarray(model.hidden(x))  # one pass of the module in training mode
    active = np.asarray(h) > 0
    dropped = float((h_train[active] == 0).mean())
    mode = model.dropout.mode
    keys = jax.random.split(jax.random.key(123), samples)
    train_mean = jax.vmap(lambda k: jaxreg.dropout(k, h, RATE, mode=mode))(keys).mean(axis=0)
    test = jaxreg.dropout(None, h, RATE, mode=mode, deterministic=True)
    model.eval()
    assert np.allclose(np.asarray(model.hidden(x)), np.asarray(test))  # the module agrees
    # Standard error of the mean of `samples` masks: h sqrt(q (1-q) / samples) (x 1/q if inverted).
    scale = 1.0 / (1 - RATE) if mode == "inverted" else 1.0
    se = np.asarray(h) * scale * np.sqrt(RATE * (1 - RATE) / samples)
    z = np.abs(np.asarray(train_mean - test)) / np.maximum(se, 1e-12)
    return (
        float(np.asarray(test).mean()),
        float(np.asarray(train_mean).mean()),
        float(z.max()),
        dropped,
        int(active.sum()),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description="FeedforwardNet with classic and inverted dropout.")
    parser.add_argument("--epochs", type=int, default=60, help="training epochs of each net (default 60)")
    epochs = parser.parse_args(argv).epochs
    start = time.perf_counter()
    data = make_data()
    x_probe = jnp.asarray(data[1][0][:64])
    print(f"FeedforwardNet({INPUT}, {HIDDEN}, {CLASSES}, dropout_rate={RATE}), Adam 1e-3, {epochs} epochs")
    print(
        f"{'mode':9s} {'train acc':>9s} {'test acc':>8s} {'E[train act]':>12s} {'test act':>9s} {'max |z|':>8s}"
        f" {'dropped':>8s}"
    )
    results = {}
    for mode in ("inverted", "classic"):
        model, acc_tr, acc_te = train(mode, data, epochs=epochs)
        test_act, train_act, zmax, dropped, active = expected_vs_test_activation(model, x_probe)
        results[mode] = acc_te
        print(
            f"{mode:9s} {acc_tr:9.3f} {acc_te:8.3f} {train_act:12.4f} {test_act:9.4f} {zmax:8.2f} {dropped:8.3f}"
        )
        # Every unit's Monte Carlo mean lies within 5 standard errors of the test activation.
        assert zmax < 5, (mode, zmax)
        # The layer drops a fraction RATE of the active units (Binomial: within 5 standard errors).
        assert abs(dropped - RATE) < 5 * np.sqrt(RATE * (1 - RATE) / active), (mode, dropped, active)
    assert abs(results["inverted"] - results["classic"]) < 0.05
    print(
        "Both conventions give the same expected activation at test time "
        f"(|z| < 5 per unit); test accuracies differ by {abs(results['inverted'] - results['classic']):.3f}. "
        f"({time.perf_counter() - start:.1f} s)"
    )


if __name__ == "__main__":
    main()
