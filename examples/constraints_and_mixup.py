"""Max-norm + dropout (Srivastava et al.'s recipe), mixup and label smoothing on scikit-learn's digits.

An MLP (plain ``flax.linen``: ``nn.Dense`` and ``nn.Dropout``) is trained twice with SGD +
momentum, once plainly and once with the regularizers of this example:

* ``jaxreg.max_norm(1.5, axis=0, mask=jaxreg.masks.weights_only)`` placed **last** in the
  optax chain: after every step each unit's incoming weight vector (a column of the
  ``(in, out)`` kernel) is projected back into the ball of radius 1.5; biases are left alone.
  Srivastava et al. pair it with dropout and a large learning rate (and a radius of 3 to 4
  for their larger networks); here the plain run's largest column norm passes 2, so the
  radius 1.5 is active from the first hundred steps on;
* ``jaxreg.mixup(key, x, y, alpha, num_classes=10)``: each batch is replaced by convex
  combinations of pairs of examples and of their one-hot labels;
* ``optax.smooth_labels(y, 0.1)`` (label smoothing is optax's, jaxreg does not rewrite it),
  applied to the one-hot labels before mixing (both are affine in the labels).

The loss is ``optax.softmax_cross_entropy`` on the soft labels. Runs in a few seconds on a CPU.

Run:  python examples/constraints_and_mixup.py [--steps N]
"""

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import jaxreg

STEPS, BATCH, LR, CLASSES, RADIUS = 400, 64, 0.05, 10, 1.5


class MLP(nn.Module):
    dropout: float

    @nn.compact
    def __call__(self, x, train: bool):
        for width in (256, 256):
            x = nn.relu(nn.Dense(width)(x))
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(CLASSES)(x)


def load():
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    perm = np.random.default_rng(0).permutation(len(x))
    x, y = x[perm], digits.target[perm]
    return (x[:1200], y[:1200]), (x[1200:], y[1200:])


def train(regularized: bool, data, key, steps: int = STEPS):
    (x_train, y_train), (x_test, y_test) = data
    model = MLP(dropout=0.5 if regularized else 0.0)
    key, init_key = jax.random.split(key)
    params = model.init(init_key, jnp.zeros((1, 64)), train=False)["params"]
    tx = optax.sgd(LR, momentum=0.9)
    if regularized:
        # The constraint goes last: it projects params + updates onto the feasible set.
        tx = optax.chain(tx, jaxreg.max_norm(RADIUS, axis=0, mask=jaxreg.masks.weights_only))
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, key, x, y):
        mix_key, drop_key = jax.random.split(key)
        labels = jax.nn.one_hot(y, CLASSES)
        if regularized:
            labels = optax.smooth_labels(labels, 0.1)
            x, labels = jaxreg.mixup(mix_key, x, labels, alpha=0.2)

        def loss_fn(params):
            logits = model.apply({"params": params}, x, train=True, rngs={"dropout": drop_key})
            return optax.softmax_cross_entropy(logits, labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(1)
    for _ in range(steps):
        idx = rng.choice(len(x_train), BATCH, replace=False)
        key, sub = jax.random.split(key)
        params, opt_state, loss = step(params, opt_state, sub, x_train[idx], y_train[idx])
    logits = model.apply({"params": params}, x_test, train=False)
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == y_test))
    max_col_norm = max(
        float(jnp.max(jnp.linalg.norm(p["kernel"], axis=0))) for p in params.values() if "kernel" in p
    )
    return accuracy, max_col_norm, float(loss)


def main(steps: int = STEPS):
    data = load()
    for regularized in (False, True):
        accuracy, max_col_norm, loss = train(regularized, data, jax.random.key(0), steps)
        name = f"dropout + max_norm({RADIUS}) + mixup + smoothing" if regularized else "plain SGD"
        print(
            f"{name:44s} test accuracy {accuracy:.3f}  largest column norm {max_col_norm:.3f}  last loss {loss:.3f}"
        )
        if regularized:
            assert max_col_norm <= RADIUS + 1e-5, "max_norm keeps every unit's incoming weights in the ball"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS, help=f"SGD steps of each run (default {STEPS})")
    main(parser.parse_args().steps)
