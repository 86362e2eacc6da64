"""Monte Carlo dropout: the functional helper, its linen/NNX forms, and the digits example.

Oracles: NumPy mean and population variance of the passes run one key at a
time (``jax.random.split(key, N)``, the keys the helper documents); for the
Flax forms, a model whose dropout flag is separate from its BatchNorm flag.
Statistical bound: a model linear after its last dropout has
``E[mc mean] = evaluation output``; the MC mean is within 5 standard errors
``5 sqrt(variance / N)`` of it (BatchNorm in training mode would move it far
outside: the batch is chosen with statistics far from the running ones).
"""

from __future__ import annotations

import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxreg
import jaxreg.linen as jrl
import jaxreg.nnx as jrx

ROOT = pathlib.Path(__file__).resolve().parents[2]
X = jnp.asarray(
    np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32) + 3.0
)  # far from BN's init stats


def _forward(key, x):
    h = jaxreg.dropout(key, jnp.tanh(x), 0.4)
    # Full float32 products: on a GPU the default is TF32, rounded differently batched and per pass.
    out = jnp.matmul(h, jnp.ones((5, 2)), precision=jax.lax.Precision.HIGHEST)
    return {"out": out, "aux": (h.sum(), jnp.float32(1.0))}


@pytest.mark.parametrize("batch_size", [None, 4, 8, 16])
def test_mean_and_variance_are_numpys_over_the_documented_keys(batch_size):
    key, n = jax.random.key(3), 16
    got = jax.jit(lambda k: jaxreg.mc_dropout(k, _forward, X, num_samples=n, batch_size=batch_size))(key)
    forward = jax.jit(_forward)  # one pass, one key at a time
    keys = jax.random.split(key, n)  # indexed, not iterated (unstacking compiles a program of n outputs)
    samples = [forward(keys[i], X) for i in range(n)]
    stacked = jax.tree.map(lambda *a: np.stack([np.asarray(v, np.float64) for v in a]), *samples)
    want_mean = jax.tree.map(lambda a: a.mean(0), stacked)
    want_var = jax.tree.map(lambda a: a.var(0), stacked)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-5), got.mean, want_mean)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-5), got.variance, want_var)
    assert float(got.variance["aux"][1]) == 0.0


def test_legacy_keys_and_half_precision_outputs():
    # Jitted (one program instead of one per operation; the docstring examples run it eagerly).
    pred = jax.jit(
        lambda k: jaxreg.mc_dropout(
            k, lambda k, x: jaxreg.dropout(k, x, 0.5).astype(jnp.bfloat16), X, num_samples=4
        )
    )(jax.random.PRNGKey(0))
    assert pred.mean.dtype == jnp.float32 and pred.mean.shape == X.shape


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_samples": 0}, ValueError, "num_samples must be >= 1, got 0"),
        ({"num_samples": 10, "batch_size": 4}, ValueError, "batch_size must divide num_samples"),
        ({"num_samples": 4, "batch_size": 2.0}, TypeError, "batch_size must be an int"),
    ],
)
def test_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        jaxreg.mc_dropout(jax.random.key(0), _forward, X, **kwargs)


def _assert_unbiased(pred, evaluation, n):
    se = np.sqrt(np.asarray(pred.variance) / n)
    assert (np.asarray(pred.variance) > 0).any()
    assert (np.abs(np.asarray(pred.mean) - np.asarray(evaluation)) <= 5 * se + 1e-6).all()


class _LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool, dropout_train: bool | None = None):
        drop = train if dropout_train is None else dropout_train
        h = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Dense(16)(x)))
        h = jrl.Dropout(0.3, deterministic=not drop)(h)
        h = nn.Dropout(0.2, deterministic=not drop)(h)
        return nn.Dense(3)(h)


def test_linen_mc_dropout_is_dropout_in_training_with_batchnorm_in_evaluation():
    model, n = _LinenMLP(), 256
    variables = jax.jit(lambda k: model.init(k, X, train=False))(jax.random.key(0))
    key = jax.random.key(1)
    pred, small, evaluation = jax.jit(
        lambda k: (
            jrl.mc_dropout(k, model, variables, X, num_samples=n, batch_size=64, train=False),
            jrl.mc_dropout(k, model, variables, X, num_samples=8, train=False),
            model.apply(variables, X, train=False),
        )
    )(key)
    # oracle: the same model with dropout switched on by its own flag, one key at a time
    apply_with_dropout = jax.jit(
        lambda k: model.apply(variables, X, train=False, dropout_train=True, rngs={"dropout": k})
    )
    keys = jax.random.split(key, 8)
    oracle = [apply_with_dropout(keys[i]) for i in range(8)]
    np.testing.assert_allclose(small.mean, np.mean(oracle, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(small.variance, np.var(oracle, 0), rtol=1e-4, atol=1e-6)
    _assert_unbiased(pred, evaluation, n)


class _NNXMLP(nnx.Module):
    def __init__(self, rngs):
        self.linear1, self.norm = nnx.Linear(5, 16, rngs=rngs), nnx.BatchNorm(16, rngs=rngs)
        self.drop1, self.drop2 = jrx.Dropout(0.3, rngs=rngs), nnx.Dropout(0.2, rngs=rngs)
        self.linear2 = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.linear2(self.drop2(self.drop1(nnx.relu(self.norm(self.linear1(x))))))


def test_nnx_mc_dropout_leaves_the_model_alone_and_is_unbiased():
    # Built under nnx.jit: one program instead of the eager initializers' op-by-op compilations.
    model, n = nnx.jit(lambda: _NNXMLP(nnx.Rngs(params=0, dropout=1)))(), 256
    count = int(model.drop1.rngs.count[...])
    # Under nnx.jit (one program instead of the eager vmap's op-by-op compilations): nnx.jit
    # writes back every change the call makes to the model (Variables, the rng count, flags),
    # so the checks below see any the helper would make eagerly.
    mc = nnx.jit(lambda model, key: jrx.mc_dropout(key, model, X, num_samples=n, batch_size=64))
    pred = mc(model, jax.random.key(2))
    assert model.drop1.deterministic is False and model.norm.use_running_average is False
    assert int(model.drop1.rngs.count[...]) == count
    model.eval()
    _assert_unbiased(pred, nnx.jit(lambda model: model(X))(model), n)
    again = mc(model, jax.random.key(2))  # (the model in evaluation mode now)
    np.testing.assert_array_equal(again.mean, pred.mean)  # the same key, the same passes
