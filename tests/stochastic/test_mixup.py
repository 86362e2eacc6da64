"""mixup: a convex combination with one Beta(alpha, alpha) lambda per batch and a permutation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg


def test_mixup_is_a_convex_combination_with_one_lambda_and_a_permutation():
    batch, classes = 8, 3
    x = jnp.eye(batch)  # row i is e_i, so x_mixed[i] = lam e_i + (1 - lam) e_perm(i) reveals lam and perm
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    mix = lambda k, x, y: jaxreg.mixup(k, x, y, 0.4, num_classes=classes)  # noqa: E731 (jitted: test_mixup_regressions.py)
    for seed in range(5):
        xm, ym = (np.asarray(a, np.float64) for a in mix(jax.random.key(seed), x, jnp.asarray(labels)))
        assert xm.shape == (batch, batch) and ym.shape == (batch, classes)
        np.testing.assert_allclose(xm.sum(axis=1), 1.0, rtol=1e-6)  # convex weights
        assert np.all(xm >= -1e-7)
        lam = xm[np.arange(batch), np.arange(batch)]
        off = xm.copy()
        off[np.arange(batch), np.arange(batch)] = 0.0
        fixed = np.isclose(off.sum(axis=1), 0.0)  # perm(i) == i: x_mixed[i] = e_i
        lam_values = lam[~fixed]
        np.testing.assert_allclose(lam_values, lam_values[0], atol=1e-6)  # one lambda per batch
        lam0 = lam_values[0]
        perm = np.where(fixed, np.arange(batch), off.argmax(axis=1))
        if 0.001 < lam0 < 0.999:
            assert sorted(perm) == list(range(batch))  # a permutation of the batch
        onehot = np.eye(classes)[labels]
        np.testing.assert_allclose(ym, lam0 * onehot + (1 - lam0) * onehot[perm], atol=1e-6)


def test_mixup_deterministic_float_labels_and_smoothing():
    # 8 examples of 8 features, 3 classes: the shapes of the first test's eager calls (and of
    # test_mixing.py's), so that the eager operations compile once for all of them.
    x, labels, classes = jnp.ones((8, 8)), jnp.arange(8) % 3, 3
    xm, ym = jaxreg.mixup(jax.random.key(0), x, labels, 1.0, num_classes=classes, deterministic=True)
    np.testing.assert_array_equal(np.asarray(xm), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(ym), np.eye(classes)[np.asarray(labels)])
    smoothed = optax.smooth_labels(jax.nn.one_hot(labels, classes), 0.1)
    _, ym = jaxreg.mixup(jax.random.key(1), x, smoothed, 1.0, num_classes=classes)
    np.testing.assert_allclose(np.asarray(ym).sum(axis=1), 1.0, rtol=1e-6)
    # Convex combinations of smoothed labels lie in [0.1 / 3, 1 - 0.2 / 3].
    assert np.all(np.asarray(ym) >= 0.1 / classes - 1e-6)


def test_mixup_errors_name_the_argument():
    key, x, y = jax.random.key(0), jnp.ones((4, 2)), jnp.array([0, 1, 1, 0])
    with pytest.raises(ValueError, match="alpha"):
        jaxreg.mixup(key, x, y, 0.0, num_classes=2)
    with pytest.raises(ValueError, match="alpha"):
        jaxreg.mixup(key, x, y, -1.0, num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        jaxreg.mixup(key, x, y, 0.2)
    with pytest.raises(ValueError, match="num_classes"):
        jaxreg.mixup(key, x, jnp.ones((4, 3)), 0.2, num_classes=2)
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        jaxreg.mixup(key, jnp.ones((4, 2), jnp.int32), y, 0.2, num_classes=2)
    with pytest.raises(ValueError, match="batch axis"):
        jaxreg.mixup(key, jnp.ones((3, 2)), y, 0.2, num_classes=2)
    # Concrete JAX scalars are checked; a schedule is not an alpha.
    with pytest.raises(ValueError, match=r"^alpha must be finite and > 0"):
        jaxreg.mixup(key, x, y, jnp.asarray(-1.0), num_classes=2)
    with pytest.raises(TypeError, match=r"^alpha must be a number or a JAX scalar, not a schedule"):
        jaxreg.mixup(key, x, y, optax.constant_schedule(0.2), num_classes=2)
