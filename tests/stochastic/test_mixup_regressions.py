"""mixup: labels outside [0, num_classes) and concentrations the Beta sampler cannot draw from.

Oracles: NumPy one-hot encoding and convex combinations; the range of alpha is
derived from ``jax.random.beta``'s algorithm (see the last tests).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jaxreg

KEY = jax.random.key(0)
X = jnp.eye(4)  # row i is e_i, so x_mixed reveals lambda and the permutation


def _onehot(labels, classes):
    """NumPy one-hot; a label outside [0, classes) gives a zero row (jax.nn.one_hot's convention)."""
    labels = np.asarray(labels)
    return (labels[:, None] == np.arange(classes)[None, :]).astype(np.float64)


@pytest.mark.parametrize("bad", [7, 3, -1, -(2**31)])
@pytest.mark.parametrize("kind", ["jax", "numpy", "list"])
def test_concrete_labels_out_of_range_are_rejected(bad, kind):
    labels = [0, 1, bad, 2]
    y = {"jax": jnp.asarray(labels, jnp.int32), "numpy": np.asarray(labels), "list": labels}[kind]
    with pytest.raises(ValueError, match=rf"^y .*\[0, 3\).*{bad}"):
        jaxreg.mixup(KEY, X, y, 0.4, num_classes=3)
    with pytest.raises(ValueError, match=rf"^y .*{bad}"):  # also when deterministic
        jaxreg.mixup(KEY, X, y, 0.4, num_classes=3, deterministic=True)


def test_labels_in_range_are_mixed_as_one_hot_rows():
    # 8 examples, 3 classes: the shapes of test_mixup.py's eager calls (their operations compile once).
    labels = np.array([0, 1, 2, 2, 1, 0, 2, 1])
    xm, ym = (
        np.asarray(a, np.float64)
        for a in jaxreg.mixup(KEY, jnp.eye(8), jnp.asarray(labels), 0.4, num_classes=3)
    )
    lam, perm = _lambda_and_perm(xm)
    want = lam * _onehot(labels, 3) + (1 - lam) * _onehot(labels, 3)[perm]
    np.testing.assert_allclose(ym, want, atol=1e-6)


def _lambda_and_perm(xm):
    # x_mixed[i] = lam e_i + (1 - lam) e_perm(i); rows with perm(i) == i are e_i.
    n = xm.shape[0]
    diag = xm[np.arange(n), np.arange(n)]
    off = xm.copy()
    off[np.arange(n), np.arange(n)] = 0.0
    moved = ~np.isclose(off.sum(axis=1), 0.0)
    lam = float(diag[moved][0]) if moved.any() else 1.0
    perm = np.where(moved, off.argmax(axis=1), np.arange(n))
    return lam, perm


# mixup of X over a batch of keys, labels and alpha traced: one compilation serves the traced-label
# test and every alpha of the range test below.
KEYS = jax.random.split(jax.random.key(1), 2000)
_mixup_over_keys = jax.jit(jax.vmap(lambda k, y, a: jaxreg.mixup(k, X, y, a, num_classes=4), (0, None, None)))


def test_traced_labels_out_of_range_give_the_documented_zero_rows():
    # Under jit the labels are not inspected: an out-of-range label one-hot
    # encodes to a zero row, so its mixed row sums to lam, 1 - lam or 0.
    labels = np.array([0, 7, -1, 2])
    xms, yms = (
        np.asarray(a, np.float64) for a in _mixup_over_keys(KEYS, jnp.asarray(labels), jnp.float32(0.4))
    )
    for i, (xm, ym) in enumerate(zip(xms[:200], yms[:200], strict=True)):
        lam, perm = _lambda_and_perm(xm)
        want = lam * _onehot(labels, 4) + (1 - lam) * _onehot(labels, 4)[perm]
        np.testing.assert_allclose(ym, want, atol=1e-6, err_msg=f"key {i}")


# ---- alpha -----------------------------------------------------------------------------------
# jax.random.beta(key, a, a) is G_a / (G_a + G_b) from two log-gamma draws. For
# a < 1 each is log G(a + 1) - E / a with E ~ Exponential(1), drawn as
# -log1p(-u) from a float32 uniform u <= 1 - 2**-24, so E <= 24 ln 2 = 16.64.
# In float32, E / a overflows to inf once a < 16.64 / 3.4e38 = 4.9e-38 (and a
# below 2**-126 is flushed to 0 on CPU): when both draws overflow, the ratio is
# NaN. Above the float32 maximum 3.4e38, a itself is inf. Documented range:
# [1e-37, 1e38], a factor 2 and 3.4 inside those limits.


@pytest.mark.parametrize("alpha", [1e-46, 1e-40, 1e-38, 4e-38, 5e38, 1e39])
def test_alpha_outside_the_sampler_range_is_rejected(alpha):
    with pytest.raises(ValueError, match=r"^alpha must lie in \[1e-37, 1e\+?38\]"):
        jaxreg.mixup(KEY, X, jnp.array([0, 1, 2, 0]), alpha, num_classes=3)
    # As a JAX scalar (float32: the smallest round to 0, the largest to inf; both rejected too).
    with np.errstate(over="ignore"):
        alpha32 = jnp.asarray(np.float32(alpha))
    with pytest.raises(ValueError, match=r"^alpha "):
        jaxreg.mixup(KEY, X, jnp.array([0, 1, 2, 0]), alpha32, num_classes=3)


@pytest.mark.parametrize("alpha", [1e-37, 1e-20, 0.2, 1e38])
def test_alpha_at_the_edges_of_the_range_gives_convex_labels(alpha):
    # 2000 keys: every lambda is a number in [0, 1] and every label row sums to 1.
    y = jnp.eye(4)
    jax.eval_shape(lambda k: jaxreg.mixup(k, X, y, alpha), KEY)  # the Python float is accepted
    # The same float32 alpha as the Python number gives, traced (so that the four cases share a
    # program); labels 0..3 with num_classes=4 one-hot encode to y.
    _, ym = _mixup_over_keys(KEYS, jnp.arange(4), jnp.float32(alpha))
    ym = np.asarray(ym, np.float64)
    assert np.isfinite(ym).all()
    assert (ym >= 0).all() and (ym <= 1).all()
    np.testing.assert_allclose(ym.sum(axis=-1), 1.0, atol=1e-6)


def test_mixup_lambda_follows_beta():
    # (Here rather than in test_mixup.py: it runs the program of the alpha tests above.)
    # Row 0 of y_mixed is lam * e_0 + (1 - lam) * e_perm(0): its first entry is lam when perm(0) != 0
    # (probability 3/4 for a batch of 4) and lam + (1 - lam) = 1 (to 1 ulp) otherwise.
    alpha = 0.3
    _, ym = _mixup_over_keys(KEYS, jnp.arange(4), jnp.float32(alpha))
    draws = np.asarray(ym, np.float64)[:, 0, 0]
    lams = draws[draws < 1.0 - 1e-7]  # drops the fixed points (and the ~0.44% of lam within 1e-7 of 1)
    # Expected size 2000 * 3/4 * (1 - 0.0044) = 1493, standard deviation 19: the band is about
    # +-10 standard deviations.
    assert 1300 < lams.size < 1690, lams.size
    # Kolmogorov-Smirnov against Beta(alpha, alpha) on ~1500 draws. The keys are fixed, so the test is
    # deterministic; a correct sampler fails it for a fraction 1e-3 of keys. On these draws, Beta(0.2, 0.2)
    # gives a p-value of 2e-10, Beta(1, 1) of 2e-45.
    assert scipy.stats.kstest(lams, scipy.stats.beta(alpha, alpha).cdf).pvalue > 1e-3
