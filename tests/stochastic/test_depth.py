"""Efficient stochastic depth (drop_path_subset) and its linen/NNX wrappers.

Oracles: the subset size ``k = round((1 - rate) B)`` and the scatter
``y_b = B / k * f(x_b)`` on the kept rows, checked row by row; the expectation
against ``drop_path`` (same expected output). Statistical bounds: a count of
``n`` Bernoulli(``p``) events is within ``5 sqrt(n p (1 - p))`` of ``n p``; two
independent sample means agree within 5 standard errors. Keys are fixed.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxreg
import jaxreg.linen as jrl
import jaxreg.nnx as jrx

W = jnp.asarray(np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32))


def _branch(h):
    return jnp.tanh(h @ W)


def _x(b=10, seed=1):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((b, 3)).astype(np.float32))


_SUBSET_CASES = [(10, 0.2), (10, 0.25), (7, 0.5), (16, 0.9), (3, 0.95)]  # (batch, rate)


@functools.cache
def _subset_and_branch():
    """``{(batch, rate, sampler): (drop_path_subset's output, the branch on the whole batch)}``.

    Every case of the test below (Python rates), in one jitted program.
    """

    def run(k):
        out = {}
        for batch, rate in _SUBSET_CASES:
            x = _x(batch)
            for s in ("fast", "jax"):
                out[batch, rate, s] = (jaxreg.drop_path_subset(k, x, _branch, rate, sampler=s), _branch(x))
        return out

    return jax.tree.map(np.asarray, jax.jit(run)(jax.random.key(3)))


@pytest.mark.parametrize("sampler", ["fast", "jax"])
@pytest.mark.parametrize(("batch", "rate"), _SUBSET_CASES)
def test_exactly_k_examples_computed_and_scaled_by_b_over_k(batch, rate, sampler):
    y, fx = _subset_and_branch()[batch, rate, sampler]
    k = max(round((1 - rate) * batch), 1)  # Python's round: half to even
    kept = np.flatnonzero(np.abs(y).sum(1) > 0)
    assert kept.size == k
    np.testing.assert_allclose(y[kept], batch / k * fx[kept], rtol=1e-6, atol=1e-7)
    assert y.shape == (batch, 5) and y.dtype == np.float32


def test_same_expected_output_as_drop_path():
    b, rate, n = 10, 0.4, 3000  # k = 6
    x = _x(b)
    keys = jax.random.split(jax.random.key(0), n)
    subset = np.asarray(jax.jit(jax.vmap(lambda k: jaxreg.drop_path_subset(k, x, _branch, rate)))(keys))
    path = np.asarray(jax.jit(jax.vmap(lambda k: jaxreg.drop_path(k, _branch(x), rate)))(keys))
    kept = (np.abs(subset).sum(2) > 0).sum(0)
    for count in kept:  # each example kept with probability k / B = 0.6
        assert abs(count - n * 0.6) < 5 * math.sqrt(n * 0.6 * 0.4)
    se = np.sqrt(subset.var(0) / n + path.var(0) / n)
    assert (np.abs(subset.mean(0) - path.mean(0)) < 5 * se + 1e-7).all()
    fx = np.asarray(_branch(x))
    assert (np.abs(subset.mean(0) - fx) < 5 * np.sqrt(subset.var(0) / n) + 1e-7).all()


def test_gradients_flow_only_to_the_chosen_examples():
    x, key, rate = _x(8), jax.random.key(5), 0.5

    def loss(w, x):
        return jnp.sum(jaxreg.drop_path_subset(key, x, lambda h: jnp.tanh(h @ w), rate) ** 2)

    # The gradients and the output in one program.
    (gw, gx), y = jax.jit(
        lambda w, x: (jax.grad(loss, argnums=(0, 1))(w, x), jaxreg.drop_path_subset(key, x, _branch, rate))
    )(W, x)
    chosen = np.abs(np.asarray(y)).sum(1) > 0
    assert (np.abs(np.asarray(gx))[~chosen] == 0).all() and (np.abs(np.asarray(gx))[chosen] > 0).all()
    xs = np.asarray(x)[np.flatnonzero(chosen)]
    want = jax.jit(jax.grad(lambda w, xs: jnp.sum((2.0 * jnp.tanh(xs @ w)) ** 2)))(W, xs)  # B / k = 2
    np.testing.assert_allclose(gw, want, rtol=1e-5)


def test_batch_axis_one():
    x = jnp.asarray(
        np.random.default_rng(2).standard_normal((4, 10, 3)).astype(np.float32)
    )  # (time, batch, d)
    y, fx = (
        np.asarray(a)
        for a in jax.jit(lambda k: (jaxreg.drop_path_subset(k, x, _branch, 0.3, batch_axis=1), _branch(x)))(
            jax.random.key(0)
        )
    )
    kept = np.flatnonzero(np.abs(y).sum(axis=(0, 2)) > 0)
    assert kept.size == 7
    np.testing.assert_allclose(y[:, kept], 10 / 7 * fx[:, kept], rtol=1e-6)


def test_no_sampling_cases():
    x = _x()
    np.testing.assert_array_equal(
        jaxreg.drop_path_subset(None, x, _branch, 0.3, deterministic=True), _branch(x)
    )
    np.testing.assert_array_equal(jaxreg.drop_path_subset(None, x, _branch, 0.0), _branch(x))
    zeros = jaxreg.drop_path_subset(jax.random.key(0), x, _branch, 1.0)
    assert zeros.shape == (10, 5) and not np.asarray(zeros).any()


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda x: jaxreg.drop_path_subset(None, x, _branch, 0.5),
            ValueError,
            "drop_path_subset needs a PRNG key",
        ),
        (
            lambda x: jaxreg.drop_path_subset(jax.random.key(0), x, _branch, 1.5),
            ValueError,
            r"rate must lie in \[0, 1\]",
        ),
        (
            lambda x: jax.jit(lambda r: jaxreg.drop_path_subset(jax.random.key(0), x, _branch, r))(0.5),
            TypeError,
            "needs a concrete rate",
        ),
        (
            lambda x: jaxreg.drop_path_subset(jax.random.key(0), x, lambda h: h.sum(0), 0.5),
            ValueError,
            "branch must keep the batch on axis 0",
        ),
        (
            lambda x: jaxreg.drop_path_subset(jax.random.key(0), x, _branch, 0.5, batch_axis=2),
            ValueError,
            "batch_axis=2",
        ),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(_x())


def test_linen_wrapper_is_the_op_on_the_modules_key_and_branch():
    model = jrl.DropPathSubset(nn.Dense(5), 0.5)
    x, key = _x(), jax.random.key(7)
    variables = jax.jit(lambda k: model.init(k, x, deterministic=True))(jax.random.key(0))
    dense = variables["params"]["branch"]

    def branch(h):
        return nn.Dense(5).apply({"params": dense}, h)

    def run(key):
        """Training with a call-time key, the op on it, evaluation, the branch, training on the stream."""
        return (
            model.apply(variables, x, deterministic=False, rng=key),
            jaxreg.drop_path_subset(key, x, branch, 0.5),
            model.apply(variables, x, deterministic=True),
            branch(x),
            model.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(1)}),
        )

    y, want, y_eval, fx, y2 = jax.jit(run)(key)  # one program
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(y_eval, fx)
    assert int((np.abs(np.asarray(y2)).sum(1) > 0).sum()) == 5


def test_nnx_wrapper_trains_the_branch_and_switches_modes():
    model = jrx.DropPathSubset(nnx.Linear(3, 5, rngs=nnx.Rngs(0)), 0.5, rngs=nnx.Rngs(dropout=1))
    x, key = _x(), jax.random.key(7)

    @nnx.jit  # one program
    def run(model, key):
        """Training with a call-time key, the op on it, and the gradient of a loss (the model's stream)."""
        return (
            model(x, rngs=key),
            jaxreg.drop_path_subset(key, x, model.branch, 0.5),
            nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model),
        )

    y, want, grads = run(model, key)
    np.testing.assert_array_equal(y, want)
    assert np.abs(np.asarray(grads.branch.kernel[...])).sum() > 0
    model.eval()
    np.testing.assert_array_equal(model(x), model.branch(x))
