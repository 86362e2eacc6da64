"""conv_spectral_normalize against the SVD of the convolution's matrix and Sedghi et al.'s FFT formula.

Oracles: the matrix of the linear map that ``flax.linen.Conv`` (no bias) computes, built
column by column with ``jax.jacfwd`` and decomposed by ``numpy.linalg.svd``, so the
padding conventions are Flax's, not the code's; and, for circular padding with stride 1,
the singular values of the per-frequency matrices of the kernel's 2-D FFT (Sedghi, Gupta
and Long 2019, theorem 6), computed with NumPy alone.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import conv_matrix_jax

import jaxreg


def _sigma(kernel, w_sn):
    """sigma from the normalization itself: ||w|| / ||w / sigma||."""
    return float(
        np.linalg.norm(np.asarray(kernel, np.float64)) / np.linalg.norm(np.asarray(w_sn, np.float64))
    )


def _svd(matrix):
    return np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)


CASES = [  # (kernel shape, example shape, nn.Conv / conv_spectral_normalize options)
    ((3, 3, 2, 3), (6, 6, 2), {"padding": "SAME"}),
    ((3, 3, 2, 3), (7, 7, 2), {"padding": "VALID", "strides": 2}),
    ((3, 3, 2, 2), (6, 6, 2), {"padding": "CIRCULAR"}),
    ((2, 3, 2, 3), (5, 6, 2), {"padding": ((1, 0), (2, 1)), "kernel_dilation": (2, 1)}),
    ((3, 2, 3), (8, 2), {"padding": "CAUSAL", "strides": 2}),
    ((3, 3, 1, 4), (5, 5, 2), {"padding": 1, "feature_group_count": 2}),
    ((2, 2, 2, 2), (4, 4, 2), {"padding": 1, "input_dilation": 2}),
]


@pytest.mark.parametrize(("kernel_shape", "example_shape", "conv"), CASES)
def test_sigma_is_the_top_singular_value_of_the_convolution(kernel_shape, example_shape, conv):
    kernel = jnp.asarray(np.random.default_rng(0).normal(size=kernel_shape).astype(np.float32))

    @jax.jit
    def run(key, kernel):  # the state, W / sigma, and the matrices of the convolutions by both
        # 3000 iterations: the top two singular values of these random kernels can be within 0.1%.
        state = jaxreg.conv_spectral_norm_init(key, kernel, (4, *example_shape), n_steps=3000, **conv)
        w_sn, _ = jaxreg.conv_spectral_normalize(kernel, state, update=False, **conv)
        matrices = [conv_matrix_jax(w, example_shape, **conv) for w in (kernel, w_sn)]
        return state.u, w_sn, *matrices

    u, w_sn, matrix, matrix_sn = run(jax.random.key(1), kernel)
    singular = _svd(matrix)
    assert u.shape == example_shape
    np.testing.assert_allclose(_sigma(kernel, w_sn), singular[0], rtol=2e-4)
    # The documented bounds by the reshaped kernel's norm: sigma(M) <= sigma(A) <= sqrt(taps) sigma(M),
    # the lower one for inputs that hold a whole window, without groups or input dilation.
    reshaped = np.linalg.norm(np.asarray(kernel, np.float64).reshape(-1, kernel_shape[-1]), 2)
    assert singular[0] <= np.sqrt(np.prod(kernel_shape[:-2])) * reshaped * (1 + 1e-6)
    if conv.get("feature_group_count", 1) == 1 and conv.get("input_dilation", 1) == 1:
        assert singular[0] >= reshaped * (1 - 1e-6)
    # The normalized convolution is 1-Lipschitz: its matrix has top singular value 1.
    np.testing.assert_allclose(_svd(matrix_sn)[0], 1.0, rtol=2e-4)


def test_circular_padding_matches_the_fft_formula_and_differs_from_the_reshape():
    n, rng = 8, np.random.default_rng(2)
    kernel = rng.normal(size=(3, 3, 2, 3)).astype(np.float32)
    # Sedghi et al.: the singular values of the circular convolution are those of the (in, out)
    # matrices P[k, l] of the 2-D DFT of the kernel, zero-padded to n x n, over the n^2 frequencies.
    transforms = np.fft.fft2(kernel.astype(np.float64), s=(n, n), axes=(0, 1))
    fft_singular = np.sort(np.linalg.svd(transforms, compute_uv=False).ravel())[::-1]

    @jax.jit
    def run(key, kernel):  # the matrix of the convolution, and W / sigma
        state = jaxreg.conv_spectral_norm_init(key, kernel, (n, n, 2), padding="CIRCULAR", n_steps=3000)
        w_sn, _ = jaxreg.conv_spectral_normalize(kernel, state, update=False, padding="CIRCULAR")
        return conv_matrix_jax(kernel, (n, n, 2), padding="CIRCULAR"), w_sn

    matrix, w_sn = run(jax.random.key(3), jnp.asarray(kernel))
    matrix_singular = np.linalg.svd(np.asarray(matrix, np.float64))[1]
    np.testing.assert_allclose(matrix_singular, fft_singular[: matrix_singular.size], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_sigma(kernel, w_sn), fft_singular[0], rtol=2e-4)
    reshape = np.linalg.norm(kernel.reshape(-1, 3).astype(np.float64), 2)
    assert abs(fft_singular[0] - reshape) > 0.05 * reshape  # the reshaped kernel's norm is another number


def test_gradient_is_that_of_the_exact_operator_norm_at_convergence():
    # With u at the top singular vector, d(W / sigma(u))/dW equals d(W / sigma_exact(W))/dW:
    # sigma_exact from jnp.linalg.svd of the jacfwd matrix, differentiated by JAX.
    rng = np.random.default_rng(4)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 2, 2)).astype(np.float32))
    g = jnp.asarray(rng.normal(size=kernel.shape).astype(np.float32))
    conv = {"padding": "SAME", "strides": 2}
    state = jaxreg.conv_spectral_norm_init(jax.random.key(5), kernel, (6, 6, 2), n_steps=3000, **conv)
    layer = nn.Conv(2, (3, 3), use_bias=False, **conv)

    def exact(w):
        def apply(x):
            return layer.apply({"params": {"kernel": w}}, x.reshape(1, 6, 6, 2)).reshape(-1)

        sigma = jnp.linalg.svd(jax.jacfwd(apply)(jnp.zeros(72)), compute_uv=False)[0]
        return jnp.sum(g * w / sigma)

    ours = jax.grad(lambda w: jnp.sum(g * jaxreg.conv_spectral_normalize(w, state, update=False, **conv)[0]))
    got, want = jax.jit(lambda w: (ours(w), jax.grad(exact)(w)))(kernel)  # one program for both
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)


def test_update_modes_jit_dtypes_and_errors():
    kernel = jnp.asarray(np.random.default_rng(6).normal(size=(3, 3, 2, 3)).astype(np.float32))
    state = jaxreg.conv_spectral_norm_init(jax.random.key(7), kernel, (5, 5, 2), n_steps=0)
    step = jax.jit(lambda w, s: jaxreg.conv_spectral_normalize(w, s, n_steps=2))
    _, new = step(kernel, state)
    assert new.u.shape == (5, 5, 2) and not np.allclose(new.u, state.u)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(new.u, np.float64)), 1.0, rtol=1e-5)

    def evaluate(w, state):  # no iteration, state returned unchanged: the same Python object
        _, same = jaxreg.conv_spectral_normalize(w, state, update=False)
        assert same is state

    jax.eval_shape(evaluate, kernel, state)  # the identity is checked while tracing
    w_bf16, _ = jax.jit(jaxreg.conv_spectral_normalize)(
        jnp.asarray(np.asarray(kernel).astype(jnp.bfloat16)), state
    )
    assert w_bf16.dtype == jnp.bfloat16
    with pytest.raises(ValueError, match=r"input_shape must be \(\*spatial, 2\)"):
        jaxreg.conv_spectral_norm_init(jax.random.key(0), kernel, (5, 5, 3))
    with pytest.raises(ValueError, match=r"state.u must have the shape \(\*spatial, 2\)"):
        jaxreg.conv_spectral_normalize(
            kernel, jaxreg.ConvSpectralNormState(jnp.asarray(np.ones((5, 2), np.float32)))
        )
    with pytest.raises(ValueError, match="padding must be one of"):
        jaxreg.conv_spectral_normalize(kernel, state, padding="FULL")
    with pytest.raises(ValueError, match="strides must be >= 1"):
        jaxreg.conv_spectral_normalize(kernel, state, strides=0)
    with pytest.raises(ValueError, match="w must have at least 3 dimensions"):
        jaxreg.conv_spectral_norm_init(jax.random.key(0), jnp.asarray(np.ones((3, 3), np.float32)), (5, 3))


def test_an_integer_eps_is_taken_as_the_float_it_is():
    # As spectral_norm_init: eps is converted to a float before it reaches jit, so an int too
    # large for int32 is accepted and gives the same state as the float.
    kernel = jnp.asarray(np.random.default_rng(3).standard_normal((3, 3, 2, 2)).astype(np.float32))
    key = jax.random.key(0)
    got = jaxreg.conv_spectral_norm_init(key, kernel, (5, 5, 2), n_steps=2, eps=2**40)
    want = jaxreg.conv_spectral_norm_init(key, kernel, (5, 5, 2), n_steps=2, eps=float(2**40))
    np.testing.assert_array_equal(np.asarray(got.u), np.asarray(want.u))
