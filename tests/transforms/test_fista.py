"""fista: the iterates of jaxopt's accelerated ProximalGradient, and fewer steps than ISTA to scikit-learn's Lasso."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.linear_model import Lasso

import jaxreg

jaxopt = pytest.importorskip("jaxopt")

RNG = np.random.default_rng(0)
N, D = 40, 15
# Correlated features (a common factor with variance 0.8): an ill-conditioned problem, where the
# acceleration shows.
X = (np.sqrt(0.2) * RNG.standard_normal((N, D)) + np.sqrt(0.8) * RNG.standard_normal((N, 1))).astype(
    np.float32
)
W_TRUE = np.where(np.arange(D) < 4, 2.0, 0.0).astype(np.float32)
Y = (X @ W_TRUE + 0.1 * RNG.standard_normal(N)).astype(np.float32)
ALPHA = 0.1
LR = float(N / np.linalg.norm(X, 2) ** 2)  # 1 / L for f(w) = ||Xw - y||^2 / (2n)


def loss(w):
    return 0.5 * jnp.mean((X @ w - Y) ** 2)


def _chain(accelerate):
    steps = [optax.sgd(LR), jaxreg.prox_l1(ALPHA, LR)]
    return optax.chain(*steps, jaxreg.fista()) if accelerate else optax.chain(*steps)


def _iterates(accelerate, steps):
    """The solution estimate after each step: fista's state.x, or ISTA's params."""
    tx = _chain(accelerate)
    w = jnp.zeros(D)
    state = tx.init(w)

    @jax.jit
    def step(w, state):
        updates, state = tx.update(jax.grad(loss)(w), state, w)
        return optax.apply_updates(w, updates), state

    for _ in range(steps):
        w, state = step(w, state)
        yield np.asarray(state[-1].x if accelerate else w)


def test_fista_matches_jaxopt_accelerated_proximal_gradient():
    ours = list(_iterates(True, 30))
    solver = jaxopt.ProximalGradient(
        fun=loss, prox=jaxopt.prox.prox_lasso, stepsize=LR, acceleration=True, maxiter=30, tol=0.0
    )
    x = jnp.zeros(D)
    state = solver.init_state(x, hyperparams_prox=ALPHA)
    for k in range(30):
        x, state = solver.update(x, state, hyperparams_prox=ALPHA)
        np.testing.assert_allclose(ours[k], np.asarray(x), rtol=1e-4, atol=1e-5)


def test_fista_reaches_sklearn_lasso_in_fewer_steps_than_ista():
    w_star = Lasso(alpha=ALPHA, fit_intercept=False, tol=1e-10, max_iter=100_000)
    w_star = w_star.fit(X.astype(np.float64), Y.astype(np.float64)).coef_

    def steps_to(accelerate, tol=1e-4, cap=3000):
        for k, w in enumerate(_iterates(accelerate, cap), start=1):
            if np.max(np.abs(w - w_star)) < tol:
                return k, w
        raise AssertionError(f"not within {tol} of scikit-learn's Lasso after {cap} steps")

    ista, _ = steps_to(False)
    fista, w = steps_to(True)
    print(f"steps to scikit-learn's Lasso within 1e-4: ISTA {ista}, FISTA {fista}")
    assert fista < ista / 1.5, (fista, ista)
    np.testing.assert_array_equal(w == 0, w_star == 0)  # exact zeros in the solution estimate
