"""Gradient penalties, the Jacobian penalty and the output penalties against closed forms and oracles.

Oracles: closed-form input gradients of linear and quadratic critics, per-example
gradients by ``jax.vmap(jax.grad)`` of a one-example function, the exact Jacobian
by ``jax.jacfwd``, NumPy softmax entropies, and central finite differences (float64)
for the penalties' gradients with respect to the critic's parameters.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import on_device

import jaxreg

STRICT = {"jax_numpy_dtype_promotion": "strict", "jax_numpy_rank_promotion": "raise"}


@pytest.fixture(autouse=True)
def _strict_promotion():
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        yield


def _mlp(params, x):
    """A smooth critic of one batch ``(batch, 3)`` -> ``(batch,)``."""
    h = jnp.tanh(x @ params["w1"] + params["b1"][None])
    return h @ params["w2"]


def _mlp_params(seed, dtype=np.float32, d=3, hidden=5, out=None):
    rng = np.random.default_rng(seed)
    w2_shape = (hidden,) if out is None else (hidden, out)
    return {
        "w1": on_device(rng.normal(size=(d, hidden)), dtype),
        "b1": on_device(rng.normal(size=hidden), dtype),
        "w2": on_device(rng.normal(size=w2_shape), dtype),
    }


def test_quadratic_critic_closed_form():
    # D(x_i) = 1/2 x_i^T A x_i + b^T x_i, gradient A x_i + b (A symmetric).
    rng = np.random.default_rng(0)
    m = rng.normal(size=(3, 3))
    a, b = (m + m.T).astype(np.float32), rng.normal(size=3).astype(np.float32)
    x = rng.normal(size=(6, 3)).astype(np.float32)

    def critic(x):
        return 0.5 * jnp.sum((x @ a) * x, axis=1) + x @ b

    expected = np.mean(np.sum((x.astype(np.float64) @ a + b) ** 2, axis=1))
    r1, igp = jax.jit(lambda x: (jaxreg.r1_penalty(critic, x), jaxreg.input_gradient_penalty(critic, x)))(x)
    np.testing.assert_allclose(r1, expected, rtol=1e-5)
    np.testing.assert_allclose(igp, expected, rtol=1e-5)
    assert r1.dtype == jnp.float32


def test_examples_with_several_axes_and_column_scores():
    # D(x_i) = sum(c * x_i^2) over the example's (2, 3) axes, returned as (batch, 1): gradient 2 c x_i.
    rng = np.random.default_rng(1)
    c = rng.uniform(0.5, 2.0, size=(2, 3)).astype(np.float32)
    x = rng.normal(size=(4, 2, 3)).astype(np.float32)

    def critic(x):
        return jnp.sum(c[None] * x**2, axis=(1, 2))[:, None]

    expected = np.mean(np.sum((2 * c * x) ** 2, axis=(1, 2)))
    np.testing.assert_allclose(jax.jit(lambda x: jaxreg.r1_penalty(critic, x))(x), expected, rtol=1e-5)


def test_per_example_gradients_not_the_gradient_of_a_batch_mean():
    params = _mlp_params(2)
    x = on_device(np.random.default_rng(3).normal(size=(8, 3)), jnp.float32)

    def one(xi):
        return _mlp(params, xi[None])[0]

    # oracle: each example's own gradient (one compilation for it and the penalty)
    per_example, got = jax.jit(
        lambda x: (jax.vmap(jax.grad(one))(x), jaxreg.r1_penalty(lambda x: _mlp(params, x), x))
    )(x)
    expected = np.mean(np.sum(np.asarray(per_example, np.float64) ** 2, axis=1))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    with pytest.raises(ValueError, match=r"one score per example.*got shape \(\)"):
        jaxreg.r1_penalty(lambda x: jnp.mean(_mlp(params, x)), x)


def test_wgan_gp_linear_critic_and_one_sided():
    key = jax.random.key(0)
    real, fake = jnp.ones((5, 2)), -jnp.ones((5, 2))
    cases = [
        ([3.0, 4.0], 1.0, False, 16.0),  # (5 - 1)^2
        ([0.3, 0.4], 1.0, False, 0.25),  # (0.5 - 1)^2
        ([0.3, 0.4], 1.0, True, 0.0),  # below the target: no penalty one-sided
        ([3.0, 4.0], 1.0, True, 16.0),
        ([3.0, 4.0], 2.0, False, 9.0),
        ([3.0, 4.0], 0.0, False, 25.0),
    ]

    @jax.jit
    def penalties(ws):  # every case in one compilation; target and one_sided stay Python values
        out = []
        for w, (_, target, one_sided, _) in zip(ws, cases, strict=True):

            def critic(x, w=w):
                return x @ w

            out.append(jaxreg.gradient_penalty(key, critic, real, fake, target=target, one_sided=one_sided))
        return out

    got = penalties([jnp.asarray(w) for w, *_ in cases])
    for value, (w, target, one_sided, expected) in zip(got, cases, strict=True):
        np.testing.assert_allclose(value, expected, rtol=1e-6, err_msg=f"{w}, {target}, {one_sided}")


def test_wgan_gp_interpolates_uniformly_per_example():
    # D = 1/2 ||x||^2 has gradient x_hat = eps_i * real_i (fake = 0): with target 0 the penalty is
    # mean(eps_i^2) ||r||^2, of mean ||r||^2 / 3 and standard error sqrt(Var(eps^2) / B) ||r||^2 with
    # Var(eps^2) = 1/5 - 1/9 = 4/45. Within 6 standard errors (Chebyshev: probability >= 1 - 1/36 each).
    # An epsilon shared by the batch would pass each of the three keys with probability ~0.05.
    batch = 4096
    real = on_device(np.full((batch, 2), 2.0), jnp.float32)  # ||r||^2 = 8
    fake = on_device(np.zeros((batch, 2)), jnp.float32)

    def critic(x):
        return 0.5 * jnp.sum(x**2, axis=1)

    keys = jax.random.split(jax.random.key(1), 3)
    got = jax.jit(jax.vmap(lambda k: jaxreg.gradient_penalty(k, critic, real, fake, target=0.0)))(keys)
    se = 8.0 * np.sqrt(4 / 45 / batch)
    np.testing.assert_array_less(np.abs(np.asarray(got) - 8.0 / 3), 6 * se)
    # real == fake: every interpolate is that sample, whatever the weights.
    same = jax.jit(lambda k: jaxreg.gradient_penalty(k, critic, real, real))(keys[0])
    np.testing.assert_allclose(same, (np.sqrt(8.0) - 1) ** 2, rtol=1e-5)


def test_norm_of_a_zero_gradient_has_a_finite_gradient():
    params = {"w": jnp.zeros(2)}  # the critic's input gradient is exactly 0: sqrt'(0) must not NaN

    def loss(p):
        return jaxreg.gradient_penalty(
            jax.random.key(0), lambda x: x @ p["w"], jnp.ones((3, 2)), jnp.zeros((3, 2))
        )

    g = jax.jit(jax.grad(loss))(params)
    assert np.all(np.isfinite(np.asarray(g["w"])))


def test_gradients_wrt_critic_params_against_finite_differences():
    # jaxreg's acc_dtype promotes with jnp.promote_types, which strict promotion refuses for float64.
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        params = _mlp_params(4, np.float64)
        rng = np.random.default_rng(5)
        real, fake = jax.device_put(rng.normal(size=(6, 3))), jax.device_put(rng.normal(size=(6, 3)))
        key = jax.random.key(6)

        def losses(p):  # the four penalties as one vector: one compilation for all their gradients
            return jnp.stack(
                [
                    jaxreg.r1_penalty(lambda x: _mlp(p, x), real),
                    jaxreg.gradient_penalty(key, lambda x: _mlp(p, x), real, fake),
                    jaxreg.gradient_penalty(
                        key, lambda x: _mlp(p, x), real, fake, target=0.5, one_sided=True
                    ),
                    jaxreg.jacobian_penalty(
                        key, lambda x: jnp.tanh(x @ p["w1"] + p["b1"][None]), real, n_proj=2
                    ),
                ]
            )

        jac, value, h = jax.jit(jax.jacrev(losses))(params), jax.jit(losses), 1e-5
        assert jac["w1"].dtype == jnp.float64
        for seed in (7, 8):  # central differences along two random directions, in float64
            d = {k: np.random.default_rng(seed).normal(size=p.shape) for k, p in params.items()}
            analytic = sum(np.asarray(jac[k]).reshape(4, -1) @ d[k].reshape(-1) for k in params)
            plus = np.asarray(value({k: np.asarray(params[k]) + h * d[k] for k in params}))
            minus = np.asarray(value({k: np.asarray(params[k]) - h * d[k] for k in params}))
            np.testing.assert_allclose(analytic, (plus - minus) / (2 * h), rtol=1e-6)


def _exact_jacobian_sq(fn, x):
    """Per-example ||J||_F^2 and tr((J J^T)^2), from jax.jacfwd of the one-example function."""
    jac = jax.jit(jax.vmap(jax.jacfwd(lambda xi: fn(xi[None])[0])))(x)  # (batch, C, D)
    jac = np.asarray(jac, np.float64)
    jjt = jac @ jac.transpose(0, 2, 1)
    return np.trace(jjt, axis1=1, axis2=2), np.trace(jjt @ jjt, axis1=1, axis2=2)


def test_jacobian_penalty_is_unbiased_against_jacfwd():
    params = _mlp_params(9, d=4, hidden=6, out=3)

    def fn(x):  # (batch, 4) -> (batch, 3)
        return _mlp(params, x)

    x = on_device(np.random.default_rng(10).normal(size=(2, 4)), jnp.float32)
    fro2, tr_m2 = _exact_jacobian_sq(fn, x)
    exact = fro2.mean()
    c, n_proj, n_keys = 3, 2, 4000
    keys = jax.random.split(jax.random.key(11), n_keys)
    est = np.asarray(jax.jit(jax.vmap(lambda k: jaxreg.jacobian_penalty(k, fn, x, n_proj=n_proj)))(keys))
    # Variance of one projection of example i (v uniform on the sphere of radius sqrt(C)):
    # 2 (C tr(M_i^2) - tr(M_i)^2) / (C + 2), M_i = J_i J_i^T; the batch mean of n_proj of them divides
    # by batch^2 * n_proj. Mean of n_keys estimates within 10 standard errors: Chebyshev bounds the
    # probability of failing by 1/100 whatever the distribution.
    var = np.sum(2 * (c * tr_m2 - fro2**2) / (c + 2)) / (x.shape[0] ** 2 * n_proj)
    assert abs(est.mean() - exact) < 10 * np.sqrt(var / n_keys)
    # The sphere (not Gaussian projections, variance 2 tr(M^2)): the sample variance matches.
    assert 0.8 < est.var() / var < 1.25


def test_jacobian_penalty_with_one_output_is_exact():
    params = _mlp_params(12)

    def fn(x):
        return _mlp(params, x)

    x = on_device(np.random.default_rng(13).normal(size=(5, 3)), jnp.float32)
    fro2, _ = _exact_jacobian_sq(lambda x: fn(x)[:, None], x)
    got, igp = jax.jit(
        lambda k, x: (jaxreg.jacobian_penalty(k, fn, x, n_proj=3), jaxreg.input_gradient_penalty(fn, x))
    )(jax.random.key(0), x)
    np.testing.assert_allclose(got, fro2.mean(), rtol=1e-5)
    np.testing.assert_allclose(got, igp, rtol=1e-6)


def _np_neg_entropy(z):
    z = np.asarray(z, np.float64)
    log_p = z - z.max(-1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
    return np.sum(np.exp(log_p) * log_p, axis=-1)


def test_confidence_penalty_against_numpy():
    z = np.random.default_rng(14).normal(size=(3, 4, 5)).astype(np.float32) * 3
    where = np.array([[True, False, True, True]] * 3)
    saturated = jnp.array([[1e4, 0.0, -1e4]], jnp.float32)

    @jax.jit
    def values(z, where, saturated):  # every value below in one compilation
        return (
            jaxreg.confidence_penalty(z),
            jaxreg.confidence_penalty(z, where=where),
            jaxreg.confidence_penalty(jnp.zeros((2, 5))),
            jaxreg.confidence_penalty(saturated),
            jax.grad(jaxreg.confidence_penalty)(saturated),
        )

    plain, masked, uniform, at_saturation, saturated_grad = values(z, where, saturated)
    np.testing.assert_allclose(plain, _np_neg_entropy(z).mean(), rtol=1e-5)
    np.testing.assert_allclose(masked, _np_neg_entropy(z)[where].mean(), rtol=1e-5)
    # uniform predictions: -log K, the minimum; one-hot (saturated) predictions: 0, no NaN in the gradient.
    np.testing.assert_allclose(uniform, -np.log(5), rtol=1e-6)
    assert abs(float(at_saturation)) < 1e-6
    assert np.all(np.isfinite(np.asarray(saturated_grad)))
    with jax.numpy_dtype_promotion("standard"):  # as above, for bfloat16 (traced under this mode)
        assert jax.jit(jaxreg.confidence_penalty)(on_device(z, jnp.bfloat16)).dtype == jnp.float32


def test_confidence_penalty_gradient_raises_entropy():
    # d(-H)/dz_k = p_k (log p_k + H): a step against it moves the predictions towards uniform.
    z = jnp.array([[2.0, 0.0, -1.0]])
    g = jax.jit(jax.grad(jaxreg.confidence_penalty))(z)
    z64 = np.asarray(z, np.float64)
    p = np.exp(z64 - z64.max()) / np.exp(z64 - z64.max()).sum()  # softmax in NumPy
    expected = p * (np.log(p) - _np_neg_entropy(z)[:, None])
    np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-7)


def test_spectral_decoupling_against_numpy():
    z = np.random.default_rng(15).normal(size=(6, 4)).astype(np.float32)
    expected = 0.5 * np.mean(np.sum(z.astype(np.float64) ** 2, axis=1))
    where = np.array([True, True, False, True, False, False])
    plain, masked, grad = jax.jit(  # one compilation for the three
        lambda z, where: (
            jaxreg.spectral_decoupling_penalty(z),
            jaxreg.spectral_decoupling_penalty(z, where=where),
            jax.grad(jaxreg.spectral_decoupling_penalty)(z),
        )
    )(z, where)
    np.testing.assert_allclose(plain, expected, rtol=1e-6)
    np.testing.assert_allclose(
        masked, 0.5 * np.mean(np.sum(z[where].astype(np.float64) ** 2, axis=1)), rtol=1e-6
    )
    np.testing.assert_allclose(grad, z / 6, rtol=1e-6)


def test_validation_errors_name_the_argument():
    def critic(x):
        return jnp.sum(x, axis=1)

    x = jnp.ones((3, 2))
    with pytest.raises(ValueError, match="target must be finite and >= 0"):
        jaxreg.gradient_penalty(jax.random.key(0), critic, x, x, target=-1.0)
    with pytest.raises(ValueError, match="real and fake must have the same shape"):
        jaxreg.gradient_penalty(jax.random.key(0), critic, x, jnp.ones((4, 2)))
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        jaxreg.r1_penalty(critic, jnp.ones((3, 2), jnp.int32))
    with pytest.raises(ValueError, match="n_proj must be >= 1"):
        jaxreg.jacobian_penalty(jax.random.key(0), critic, x, n_proj=0)
    with pytest.raises(ValueError, match="per-example outputs"):
        jaxreg.jacobian_penalty(jax.random.key(0), jnp.sum, x)
    with pytest.raises(ValueError, match=r"where must have shape \(3,\)"):
        jaxreg.confidence_penalty(x, where=jnp.ones((2,), bool))
