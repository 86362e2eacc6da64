"""Proximal steps in a plain optax.sgd chain reach scikit-learn's Lasso / ElasticNet / ridge solutions.

Mapping of objectives (sklearn, fit_intercept=False, centered data):
  Lasso:      1/(2n)||y - Xw||^2 + alpha * ||w||_1
              -> loss = 1/(2n)||y - Xw||^2, prox_l1(strength=alpha)
  ElasticNet: 1/(2n)||y - Xw||^2 + alpha*rho*||w||_1 + alpha*(1-rho)/2 * ||w||^2
              -> prox_elastic_net(l1=alpha*rho, l2=alpha*(1-rho))   (jaxreg's L2 has the 1/2)
  Ridge:      1/(2n)||y - Xw||^2 + lam/2 ||w||^2, closed form (X^T X / n + lam I)^{-1} X^T y / n
              -> add_decayed_weights(lam) before sgd
The step size is 1/L with L the largest eigenvalue of X^T X / n, for which proximal gradient descent
(ISTA) converges; it runs in float64 so that 1e-4 relative agreement is about the solution, not rounding.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import ElasticNet, Lasso

import jaxreg

STEPS = 20_000


@pytest.fixture(scope="module")
def diabetes():
    x, y = load_diabetes(return_X_y=True)
    x = x - x.mean(axis=0)
    y = y - y.mean()
    lipschitz = np.linalg.eigvalsh(x.T @ x / len(y)).max()
    return x, y, 1.0 / lipschitz


def _fit(tx, x, y):
    """Runs `tx` for STEPS steps of full-batch gradient descent on 1/(2n)||y - Xw||^2, under jit."""
    with jax.enable_x64(True):
        xj, yj = jax.device_put(x), jax.device_put(y)
        n = len(y)

        def loss(w):
            r = yj - xj @ w
            return 0.5 * jnp.dot(r, r) / n

        @jax.jit
        def run(w):
            def step(carry, _):
                w, state = carry
                g = jax.grad(loss)(w)
                u, state = tx.update(g, state, w)
                return (optax.apply_updates(w, u), state), None

            (w, _), _ = jax.lax.scan(step, (w, tx.init(w)), None, length=STEPS)
            return w

        w = run(jnp.zeros(x.shape[1]))
        assert w.dtype == jnp.float64
        return np.asarray(w)


def _assert_rel(actual, expected, rtol=1e-4):
    # Relative to the solution's scale: zero coefficients compare against the largest one.
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


@pytest.mark.parametrize("alpha", [0.1, 0.5])
def test_prox_l1_reaches_sklearn_lasso(diabetes, alpha):
    x, y, lr = diabetes
    ref = Lasso(alpha=alpha, fit_intercept=False, tol=1e-12, max_iter=1_000_000).fit(x, y).coef_
    w = _fit(optax.chain(optax.sgd(lr), jaxreg.prox_l1(alpha, lr)), x, y)
    _assert_rel(w, ref)
    # Same zero pattern, and the zeros are exact (not merely small).
    assert (ref == 0).any()
    np.testing.assert_array_equal(w == 0.0, ref == 0.0)


@pytest.mark.parametrize(("alpha", "l1_ratio"), [(0.1, 0.5), (0.3, 0.8)])
def test_prox_elastic_net_reaches_sklearn_elastic_net(diabetes, alpha, l1_ratio):
    x, y, lr = diabetes
    ref = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, fit_intercept=False, tol=1e-12, max_iter=1_000_000)
    ref = ref.fit(x, y).coef_
    tx = optax.chain(optax.sgd(lr), jaxreg.prox_elastic_net(alpha * l1_ratio, alpha * (1 - l1_ratio), lr))
    w = _fit(tx, x, y)
    _assert_rel(w, ref)
    np.testing.assert_array_equal(w == 0.0, ref == 0.0)


@pytest.mark.parametrize("lam", [1e-3, 1e-2])
def test_decayed_weights_and_prox_l2_reach_ridge_closed_form(diabetes, lam):
    x, y, lr = diabetes
    n = len(y)
    ref = np.linalg.solve(x.T @ x / n + lam * np.eye(x.shape[1]), x.T @ y / n)
    # Coupled L2 before the step: converges for lr < 2 / (L + lam).
    step = 1.0 / (1.0 / lr + lam)
    _assert_rel(_fit(optax.chain(jaxreg.add_decayed_weights(lam), optax.sgd(step)), x, y), ref)
    _assert_rel(_fit(optax.chain(optax.sgd(lr), jaxreg.prox_elastic_net(0.0, lam, lr)), x, y), ref)


def test_add_l1_subgradient_does_not_give_exact_zeros(diabetes):
    """The seed's subgradient rule oscillates around zero where the prox lands on it."""
    x, y, lr = diabetes
    alpha = 0.5
    ref = Lasso(alpha=alpha, fit_intercept=False, tol=1e-12, max_iter=1_000_000).fit(x, y).coef_
    w = _fit(optax.chain(jaxreg.add_l1(alpha), optax.sgd(lr * 0.1)), x, y)
    zeros = ref == 0
    assert np.all(w[zeros] != 0.0)
    assert np.all(np.abs(w[zeros]) <= lr * 0.1 * alpha * 2)  # within a couple of step sizes of zero
