"""The training behind ``jaxreg demo``: one MLP on noisy digits, once per regularizer.

Every configuration starts from the same Flax NNX initialization, sees the same
minibatches in the same order and (where it uses noise) the same dropout keys;
only the optimizer chain and the noise on the hidden units differ. One epoch
(a ``lax.scan`` over the minibatches, then the test accuracy) is one jitted
call, compiled once per configuration.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxreg

# Defaults of the demo, one value per configuration for every seed (see docs/guides/demo.md).
TRAIN_SIZE = 300  # training digits; the other 1497 are the test set
LABEL_NOISE = 0.25  # share of training labels replaced by a uniformly random class
EPOCHS = 150
BATCH_SIZE = 30
HIDDEN = 128  # units in each of the two hidden layers
LEARNING_RATE = 0.05  # peak of the cosine decay; SGD with momentum in every configuration but adamw
MOMENTUM = 0.9
ADAM_LEARNING_RATE = 1e-3
L2 = 0.02  # add_decayed_weights: gradient + L2 * w (kernels only)
ADAMW_DECAY = 3.0  # optax.adamw weight_decay (decoupled: w -= lr * ADAMW_DECAY * w)
L1 = 0.004  # add_l1: gradient + L1 * sign(w), amplified ~1 / (1 - MOMENTUM) by the momentum
# prox_l1 comes after the momentum, so its threshold lr * strength is not amplified: the same
# effective strength as add_l1(L1) needs L1 / (1 - MOMENTUM).
L1_PROX = L1 / (1 - MOMENTUM)
GROUP_LASSO = 0.1  # prox_group_lasso strength, groups = input units of each kernel
DROPOUT = 0.6  # rate on both hidden layers
GAUSSIAN_DROPOUT = 0.6  # multiplicative N(1, rate / (1 - rate)) noise on both hidden layers


class Config(NamedTuple):
    """One row of the demo: how to build its optimizer and the noise on the hidden units."""

    description: str
    optimizer: Callable[[int], optax.GradientTransformation]  # total steps -> optimizer
    noise: Callable[[jax.Array, jax.Array], jax.Array] | None = None


def _lr(steps: int, peak: float | None = None) -> optax.Schedule:
    """Cosine decay from ``peak`` to 0 over the run, so the last epochs are not SGD noise."""
    return optax.cosine_decay_schedule(LEARNING_RATE if peak is None else peak, steps)


def _sgd(steps: int) -> optax.GradientTransformation:
    return optax.sgd(_lr(steps), momentum=MOMENTUM)


def _decay(strength: float) -> optax.GradientTransformation:
    return jaxreg.add_decayed_weights(strength, mask=jaxreg.masks.weights_only)


def _dropout(key: jax.Array, x: jax.Array) -> jax.Array:
    return jaxreg.dropout(key, x, DROPOUT)


def _gaussian_dropout(key: jax.Array, x: jax.Array) -> jax.Array:
    return jaxreg.gaussian_dropout(key, x, GAUSSIAN_DROPOUT)


CONFIGS: dict[str, Config] = {
    "none": Config("SGD with momentum, no regularization", _sgd),
    "l2": Config(
        f"add_decayed_weights({L2}) before SGD (coupled L2)", lambda n: optax.chain(_decay(L2), _sgd(n))
    ),
    "adamw": Config(
        f"optax.adamw(lr={ADAM_LEARNING_RATE}, weight_decay={ADAMW_DECAY}) (decoupled)",
        lambda n: optax.adamw(
            _lr(n, ADAM_LEARNING_RATE), weight_decay=ADAMW_DECAY, mask=jaxreg.masks.weights_only
        ),
    ),
    "l1": Config(
        f"add_l1({L1}) before SGD (the subgradient rule)",
        lambda n: optax.chain(jaxreg.add_l1(L1, mask=jaxreg.masks.weights_only), _sgd(n)),
    ),
    "l1-prox": Config(
        f"prox_l1({L1_PROX:g}) after SGD (soft-thresholding)",
        lambda n: optax.chain(_sgd(n), jaxreg.prox_l1(L1_PROX, _lr(n), mask=jaxreg.masks.weights_only)),
    ),
    "dropout": Config(f"dropout({DROPOUT}) on the hidden units", _sgd, _dropout),
    "dropout+l2": Config(
        f"dropout({DROPOUT}) and add_decayed_weights({L2})",
        lambda n: optax.chain(_decay(L2), _sgd(n)),
        _dropout,
    ),
    "gaussian-dropout": Config(
        f"gaussian_dropout({GAUSSIAN_DROPOUT}) on the hidden units", _sgd, _gaussian_dropout
    ),
    "group-lasso": Config(
        f"prox_group_lasso({GROUP_LASSO}, axis=0) after SGD (prunes input units)",
        lambda n: optax.chain(
            _sgd(n),
            jaxreg.prox_group_lasso(GROUP_LASSO, _lr(n), axis=0, mask=jaxreg.masks.weights_only),
        ),
    ),
}


class Data(NamedTuple):
    """The digits, split and with noisy training labels; pixels scaled to [0, 1]."""

    x_train: np.ndarray  # (train_size, 64) float32
    y_train: np.ndarray  # (train_size,) int32, a `label_noise` share replaced at random
    x_test: np.ndarray  # (1797 - train_size, 64) float32
    y_test: np.ndarray  # (1797 - train_size,) int32, clean
    num_noisy: int  # how many training labels were replaced (some by chance by the true class)


def load_data(seed: int, train_size: int, label_noise: float) -> Data:
    """Splits ``sklearn.datasets.load_digits`` at random and corrupts a share of the training labels.

    As in Zhang et al. 2017 ("Understanding deep learning requires rethinking
    generalization"), each corrupted label is replaced by a class drawn
    uniformly from the 10, so about a tenth of them stay correct by chance.
    """
    from sklearn.datasets import load_digits

    digits: Any = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    train, test = order[:train_size], order[train_size:]
    y_train = y[train].copy()
    num_noisy = round(label_noise * train_size)
    noisy = rng.choice(train_size, size=num_noisy, replace=False)
    y_train[noisy] = rng.integers(0, 10, size=num_noisy)
    return Data(x[train], y_train, x[test], y[test], num_noisy)


class MLP(nnx.Module):
    """64 -> hidden -> hidden -> 10, ReLU; optional noise (dropout) after each hidden activation."""

    def __init__(self, hidden: int, *, rngs: nnx.Rngs):
        self.linear1 = nnx.Linear(64, hidden, rngs=rngs)
        self.linear2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.linear3 = nnx.Linear(hidden, 10, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        noise: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
        key: jax.Array | None = None,
    ) -> jax.Array:
        for i, layer in enumerate((self.linear1, self.linear2)):
            x = jax.nn.relu(layer(x))
            if noise is not None:
                if key is None:
                    raise ValueError("a noise function needs a key")
                x = noise(jax.random.fold_in(key, i), x)
        return self.linear3(x)


class Result(NamedTuple):
    """The outcome of training one configuration."""

    config: str
    train_accuracy: float  # on the (noisy) labels it was trained on
    test_accuracy: float  # on the clean held-out digits
    gap: float  # train_accuracy - test_accuracy
    final_loss: float  # mean cross-entropy of the last epoch's minibatches (no penalty term)
    zero_fraction: float  # share of kernel entries (weights, not biases) exactly 0.0
    seconds: float  # wall time, compilation included
    test_curve: list[float]  # test accuracy after each epoch
    first_layer: np.ndarray  # final first-layer kernel, (64, hidden)

    def as_json(self) -> dict[str, Any]:
        """The keys of ``--json``."""
        return {k: getattr(self, k) for k in self._fields[:7]}


def _num_correct(graphdef, params, x, y) -> jax.Array:
    logits = nnx.merge(graphdef, params)(x)
    return jnp.sum(jnp.argmax(logits, -1) == y)


def _epoch_fn(graphdef, tx, noise, batch_size: int):
    """The jitted epoch: a ``lax.scan`` of SGD steps over shuffled minibatches, then the test count.

    ``(params, opt_state, epoch_index, data_key, noise_key, x_train, y_train, x_test, y_test)
    -> (params, opt_state, mean minibatch loss, number of test digits classified right)``. The
    order of the minibatches depends only on ``data_key`` and the epoch, the noise keys only on
    ``noise_key`` and the epoch: the same for every configuration.
    """

    def loss_fn(params, x, y, key):
        logits = nnx.merge(graphdef, params)(x, noise, key)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def epoch(params, opt_state, epoch_index, data_key, noise_key, x_train, y_train, x_test, y_test):
        def step(carry, batch):
            params, opt_state = carry
            idx, key = batch
            loss, grads = jax.value_and_grad(loss_fn)(params, x_train[idx], y_train[idx], key)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        n = x_train.shape[0]
        num_batches = n // batch_size
        order = jax.random.permutation(jax.random.fold_in(data_key, epoch_index), n)
        batches = order[: num_batches * batch_size].reshape(num_batches, batch_size)
        keys = jax.random.split(jax.random.fold_in(noise_key, epoch_index), num_batches)
        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (batches, keys))
        return params, opt_state, losses.mean(), _num_correct(graphdef, params, x_test, y_test)

    return epoch


def train(name: str, data: Data, seed: int, epochs: int) -> Iterator[float | Result]:
    """Trains configuration ``name``; yields the test accuracy after each epoch, then the :class:`Result`."""
    start = time.perf_counter()
    config = CONFIGS[name]
    graphdef, params = nnx.split(MLP(HIDDEN, rngs=nnx.Rngs(params=seed)))
    batch_size = min(BATCH_SIZE, len(data.y_train))
    tx = config.optimizer(epochs * (len(data.y_train) // batch_size))
    opt_state = tx.init(params)
    data_key, noise_key = jax.random.split(jax.random.key(seed))
    arrays = tuple(jnp.asarray(a) for a in data[:4])
    epoch = _epoch_fn(graphdef, tx, config.noise, batch_size)
    curve = []
    loss = jnp.nan
    for i in range(epochs):
        params, opt_state, loss, test_correct = epoch(params, opt_state, i, data_key, noise_key, *arrays)
        curve.append(int(test_correct) / len(data.y_test))
        yield curve[-1]
    train_correct = jax.jit(_num_correct, static_argnums=0)(graphdef, params, *arrays[:2])
    train_acc = int(train_correct) / len(data.y_train)
    test_acc = curve[-1]
    kernels = jaxreg.masks.weights_only(params)
    weights = [w for w, k in zip(jax.tree.leaves(params), jax.tree.leaves(kernels), strict=True) if k]
    zeros = sum(int(jnp.sum(w == 0)) for w in weights) / sum(w.size for w in weights)
    yield Result(
        config=name,
        train_accuracy=train_acc,
        test_accuracy=test_acc,
        gap=train_acc - test_acc,
        final_loss=float(loss),
        zero_fraction=zeros,
        seconds=time.perf_counter() - start,
        test_curve=curve,
        first_layer=np.asarray(nnx.merge(graphdef, params).linear1.kernel[...]),
    )
