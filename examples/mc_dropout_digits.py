"""Monte Carlo dropout on scikit-learn's digits: is the model less sure where it is wrong?

An NNX MLP (64 -> 128 -> 128 -> 10, ReLU, ``jaxreg.nnx.Dropout(0.3)`` after each
hidden layer) is trained with Adam on 75% of the 8x8 digits. At test time
``jaxreg.nnx.mc_dropout`` runs ``--samples`` stochastic passes (dropout on,
a fresh key each) and averages the softmax probabilities; the predictive
entropy of that mean, ``H = -sum_c p_c log p_c``, measures the uncertainty
(Gal and Ghahramani 2016). The script prints the accuracy of the MC mean,
the standard deviation of the class probabilities over the passes (averaged
over the test digits and classes: 0 if the passes did not differ), the mean
entropy on correctly and wrongly classified test digits, and the AUROC of the
entropy as a detector of mistakes (0.5: no signal, 1: perfect).

Run: ``python examples/mc_dropout_digits.py`` (``--epochs``, ``--samples``, ``--seed``;
needs scikit-learn: ``pip install 'jaxreg[examples]'``).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import jaxreg.nnx as jrx

RATE, HIDDEN = 0.3, 128


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.linear1 = nnx.Linear(64, HIDDEN, rngs=rngs)
        self.drop1 = jrx.Dropout(RATE, rngs=rngs)
        self.linear2 = nnx.Linear(HIDDEN, HIDDEN, rngs=rngs)
        self.drop2 = jrx.Dropout(RATE, rngs=rngs)
        self.head = nnx.Linear(HIDDEN, 10, rngs=rngs)

    def __call__(self, x):
        x = self.drop1(nnx.relu(self.linear1(x)))
        x = self.drop2(nnx.relu(self.linear2(x)))
        return self.head(x)


class Softmax(nnx.Module):
    """The model's class probabilities: what the Monte Carlo passes average."""

    def __init__(self, model: nnx.Module):
        self.model = model

    def __call__(self, x):
        return jax.nn.softmax(self.model(x))


def auroc(scores_pos: np.ndarray, scores_neg: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting 1/2 (the Mann-Whitney U statistic)."""
    if scores_pos.size == 0 or scores_neg.size == 0:
        return float("nan")
    greater = (scores_pos[:, None] > scores_neg[None, :]).mean()
    ties = (scores_pos[:, None] == scores_neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    start = time.perf_counter()

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, digits.target, test_size=0.25, random_state=args.seed)

    model = MLP(nnx.Rngs(params=args.seed, dropout=args.seed + 1))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    rng = np.random.default_rng(args.seed)
    model.train()
    for _ in range(args.epochs):
        perm = rng.permutation(len(x_tr))
        for i in range(0, len(x_tr), 64):
            step(model, optimizer, x_tr[perm[i : i + 64]], y_tr[perm[i : i + 64]])

    model.eval()  # the plain evaluation: dropout off
    plain = np.asarray(model(jnp.asarray(x_te)).argmax(axis=1))

    # Monte Carlo: the mean of the softmax probabilities over the stochastic passes
    # (mc_dropout turns dropout on in a view of the model; the model stays in eval mode).
    batch = 25 if args.samples % 25 == 0 else None
    pred = jrx.mc_dropout(
        jax.random.key(args.seed + 2),
        Softmax(model),
        jnp.asarray(x_te),
        num_samples=args.samples,
        batch_size=batch,
    )
    probs = np.asarray(pred.mean, np.float64)
    entropy = -(probs * np.log(np.clip(probs, 1e-12, None))).sum(axis=1)
    wrong = probs.argmax(axis=1) != y_te

    print(f"digits: {len(x_tr)} train, {len(x_te)} test; MLP 64-{HIDDEN}-{HIDDEN}-10, dropout {RATE}")
    print(f"epochs: {args.epochs}")
    print(f"passes: {args.samples}")
    print(f"plain accuracy: {(plain == y_te).mean():.4f}")
    print(f"test accuracy: {1 - wrong.mean():.4f}")
    print(f"misclassified: {int(wrong.sum())}")
    print(f"probability std over passes: {np.sqrt(np.asarray(pred.variance, np.float64)).mean():.4f}")
    print(f"entropy correct: {entropy[~wrong].mean():.4f}")
    print(f"entropy misclassified: {entropy[wrong].mean() if wrong.any() else float('nan'):.4f}")
    print(f"entropy auroc: {auroc(entropy[wrong], entropy[~wrong]):.4f}")
    print(f"time: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
