r"""Structural penalties on one weight matrix, and activity regularization.

Unlike the penalties of :mod:`jaxreg._penalties` (pytree in, scalar out), these
take a single weight ``w`` and return a float32 scalar (float64 for a float64 ``w``) with
no strength factor: add ``factor * penalty(w)`` to the loss yourself, e.g.
``loss + 0.01 * jaxreg.orthogonal_penalty(params["dense"]["kernel"])``.

**Stacked layers.** A scanned stack of layers (``nn.scan``, ``nnx.vmap``) stores
its kernels as one array ``(layers, in, out)``. ``batch_dims=1`` makes the
leading axis a stack of independent matrices: the penalty is computed on each
``(in, out)`` matrix and the result is their **sum**, a scalar equal to
``sum(penalty(w[i]) for i in range(layers))``, so it drops into a loss
unchanged. (Without ``batch_dims``, ``spectral_penalty`` would take the
``(layers * in, out)`` matrix, and the orthogonality penalties raise.) For one
value per matrix, ``jax.vmap`` the function with ``batch_dims=0``.

**Activity regularization.** Keras's ``activity_regularizer=`` penalizes a
layer's *outputs*, not its weights, and divides the penalty by the batch size
"so that the relative weighting between the weight regularizers and the
activity regularizers does not change with the batch size" (Keras,
``keras.regularizers.Regularizer``). In JAX there is nothing to hook: return the
activations from the model and add the penalty to the loss, with the same
pytree penalties used for weights:

- Keras ``activity_regularizer=L1(l1)``: ``l1 * jaxreg.l1_penalty(h) / batch``;
- Keras ``activity_regularizer=L2(l2)``: ``2 * l2 * jaxreg.l2_penalty(h) / batch``
  (Keras's L2 has no 1/2, :func:`jaxreg.l2_penalty` has).

The example reproduces the one in Keras's ``Regularizer`` docstring (a Dense
layer of ones, input ``2 * ones((5, 5))``, kernel ``L1(0.01)`` and activity
``L2(0.01)``: total 5.25):

>>> import jax.numpy as jnp, jaxreg
>>> kernel, x = jnp.ones((5, 5)), 2.0 * jnp.ones((5, 5))
>>> h = x @ kernel                                    # the layer's activations
>>> weight_term = 0.01 * jaxreg.l1_penalty(kernel)
>>> activity_term = 2 * 0.01 * jaxreg.l2_penalty(h) / x.shape[0]
>>> round(float(weight_term), 4), round(float(activity_term), 4)
(0.25, 5.0)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxreg._norms import as_matrices, normalize, replicated_acc
from jaxreg._validation import check_batch_dims

_HIGHEST = jax.lax.Precision.HIGHEST  # full f32 matmuls on GPU/TPU too (no TF32/bf16 passes)


def orthogonal_penalty(w: jax.Array, mode: str = "rows", *, batch_dims: int = 0) -> jax.Array:
    r"""Mean absolute cosine similarity between distinct rows (or columns) of ``w``.

    With $\hat w_i = w_i / \max(\|w_i\|_2, \epsilon)$ the L2-normalized rows
    ($\epsilon = 10^{-7}$, Keras's ``normalize``) and $n$ rows,

    $$P(W) = \frac{1}{n(n-1)/2} \sum_{i<j} |\hat w_i^\top \hat w_j|,$$

    a value in $[0, 1]$, zero exactly when the nonzero rows are mutually
    orthogonal. ``mode="columns"`` applies it to the columns. A matrix with a
    single row (or column) has no pairs: the penalty is 0. The row norms are
    computed on rows scaled by a power of two, so the cosines are right for
    any finite ``w`` (rows of 1e20 in float32, whose squares overflow, included).

    **Gradient.** $|\cdot|$ is differentiated with the subgradient
    $\mathrm{sign}(0) = 0$ (as :func:`jaxreg.l1_penalty`), and the norm is
    gradient-safe: a row that is exactly zero (e.g. pruned by
    :func:`jaxreg.prox_group_lasso`) gets a zero gradient and adds none to the
    others, instead of a NaN; an exactly orthogonal pair adds no gradient either.

    **Mapping to Keras.** ``keras.regularizers.OrthogonalRegularizer(factor,
    mode)`` returns ``factor * 0.5 * sum(|offdiag(W_hat W_hat^T)|) / num_pairs``,
    which is ``factor * orthogonal_penalty(w, mode)``: the off-diagonal sum counts
    each pair twice, the 0.5 undoes that. On a Dense kernel ``(in, out)``,
    ``"rows"`` decorrelates the input features' weight vectors and ``"columns"``
    the units' incoming weight vectors.

    Args:
      w: a 2-D weight matrix, or a stack of them (``batch_dims + 2`` dimensions).
      mode: ``"rows"`` or ``"columns"``.
      batch_dims: the number of leading axes of ``w`` that index a stack of
        matrices (a Python int, ``0 <= batch_dims == w.ndim - 2``); the result
        is the sum of the penalties of the matrices.

    Returns:
      A float32 scalar (float64 for a float64 ``w``); with ``batch_dims > 0``, the
      sum over the stack.

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> float(jaxreg.orthogonal_penalty(jnp.eye(3)))
      0.0
      >>> round(float(jaxreg.orthogonal_penalty(jnp.array([[1.0, 0.0], [1.0, 1.0]]))), 6)  # cos 45 deg
      0.707107

    References:
      Keras, ``keras.regularizers.OrthogonalRegularizer``
      (https://keras.io/api/layers/regularizers/).
    """
    batch_dims = check_batch_dims(batch_dims, w, "w", exact=True)
    if mode not in ("rows", "columns"):
        raise ValueError(f'mode must be "rows" or "columns", got {mode!r}')
    return _orthogonal_penalty(jnp.asarray(w), str(mode), batch_dims)


@functools.partial(jax.jit, static_argnames=("mode", "batch_dims"))
def _orthogonal_penalty(w: jax.Array, mode: str, batch_dims: int) -> jax.Array:
    m = as_matrices(replicated_acc(w, batch_dims), batch_dims)
    m = m if mode == "rows" else m.mT
    n = m.shape[1]
    if n < 2:
        return jnp.zeros((), m.dtype)
    m_hat = normalize(m, axis=-1, eps=1e-7)  # scaled: rows of 1e20 in float32 do not overflow
    gram = jnp.matmul(m_hat, m_hat.mT, precision=_HIGHEST)
    # sign(g) * g is |g| with the subgradient sign(0) = 0 at g = 0 (jnp.abs has 1): a zero row has
    # zero cosines with every other row, so it gets no gradient (and gives none) instead of ~1/eps.
    off_diagonal = jnp.sign(gram) * gram * (1 - jnp.eye(n, dtype=m.dtype))
    return jnp.sum(off_diagonal) / (n * (n - 1))


def soft_orthogonal_penalty(w: jax.Array, *, batch_dims: int = 0) -> jax.Array:
    r"""Soft orthogonality $\|W^\top W - I\|_F^2$ (Bansal et al., 2018).

    The Gram matrix is $W^\top W$, of shape ``(out, out)`` for a Dense kernel
    ``(in, out)``: the penalty pushes the ``out`` columns (each unit's incoming
    weights, or each filter of a conv kernel reshaped to ``(-1, out)``) to be
    orthonormal. This is reachable (the penalty can be 0) only when ``out <=
    in``; for a wide matrix the minimum is ``out - in``, and ``w.T`` gives the
    row version $\|W W^\top - I\|_F^2$. Multiply by the paper's $\lambda$
    yourself. Unlike :func:`orthogonal_penalty` it also fixes the norms to 1.

    Args:
      w: a 2-D weight matrix (reshape conv kernels with ``w.reshape(-1, w.shape[-1])``),
        or a stack of them (``batch_dims + 2`` dimensions).
      batch_dims: the number of leading axes of ``w`` that index a stack of
        matrices (a Python int, ``0 <= batch_dims == w.ndim - 2``); the result
        is the sum of the penalties of the matrices.

    Returns:
      A float32 scalar (float64 for a float64 ``w``); with ``batch_dims > 0``, the
      sum over the stack.

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> float(jaxreg.soft_orthogonal_penalty(2.0 * jnp.eye(2)))  # (4 - 1)^2 * 2
      18.0

    References:
      Bansal, Chen and Wang, 2018, `Can We Gain More from Orthogonality
      Regularizations in Training Deep CNNs? <https://arxiv.org/abs/1810.09102>`_
      (SO regularization).
    """
    batch_dims = check_batch_dims(batch_dims, w, "w", exact=True)
    return _soft_orthogonal_penalty(jnp.asarray(w), batch_dims)


@functools.partial(jax.jit, static_argnames=("batch_dims",))
def _soft_orthogonal_penalty(w: jax.Array, batch_dims: int) -> jax.Array:
    m = as_matrices(replicated_acc(w, batch_dims), batch_dims)
    gram = jnp.matmul(m.mT, m, precision=_HIGHEST)
    return jnp.sum(jnp.square(gram - jnp.eye(gram.shape[-1], dtype=m.dtype)))


def spectral_penalty(w: jax.Array, *, batch_dims: int = 0) -> jax.Array:
    r"""Squared spectral norm $\sigma_{\max}(W)^2$, the largest singular value squared.

    Computed exactly with an SVD (``jnp.linalg.svd(..., compute_uv=False)``); its
    gradient is $2\sigma_1 u_1 v_1^\top$. Weights with ``ndim > 2`` are reshaped
    to ``(-1, w.shape[-1])`` (output axis last, as Flax stores kernels and as
    :func:`jaxreg.spectral_normalize` does). Yoshida and Miyato add
    $\frac{\lambda}{2}\sigma(W)^2$ per layer to the loss, i.e.
    ``lam / 2 * spectral_penalty(w)``; they estimate $\sigma$ by one power
    iteration per step, while this exact SVD costs $O(\min(m, n)\, m n)$ per call,
    fine for the matrices of most layers. A zero-size ``w`` (the zero map) gives
    0. The result is $\sigma^2$ itself, so it overflows where $\sigma$ exceeds the
    square root of the dtype's largest value (about 1.8e19 in float32).

    With ``batch_dims=b`` the leading ``b`` axes of ``w`` index a stack of
    weights, each reshaped to ``(-1, w.shape[-1])`` on its own, and the result
    is $\sum_i \sigma_{\max}(W_i)^2$ (for a scanned stack ``(layers, in,
    out)``, ``batch_dims=1`` gives the sum over the layers, the per-layer
    penalty of Yoshida and Miyato).

    Args:
      w: a weight with ``ndim >= 2``, or a stack of them.
      batch_dims: the number of leading axes of ``w`` that index a stack of
        weights (a Python int, ``0 <= batch_dims <= w.ndim - 2``).

    Returns:
      A float32 scalar (float64 for a float64 ``w``); with ``batch_dims > 0``, the
      sum over the stack.

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> float(jaxreg.spectral_penalty(jnp.diag(jnp.array([3.0, 1.0]))))
      9.0

    References:
      Yoshida and Miyato, 2017, `Spectral Norm Regularization for Improving the
      Generalizability of Deep Learning <https://arxiv.org/abs/1705.10941>`_.
    """
    batch_dims = check_batch_dims(batch_dims, w, "w")
    return _spectral_penalty(jnp.asarray(w), batch_dims)


@functools.partial(jax.jit, static_argnames=("batch_dims",))
def _spectral_penalty(w: jax.Array, batch_dims: int) -> jax.Array:
    m = as_matrices(replicated_acc(w, batch_dims), batch_dims)
    if m.size == 0:  # the zero map (or an empty stack): sigma_max = 0
        return jnp.zeros((), m.dtype)
    return jnp.sum(jnp.max(jnp.linalg.svd(m, compute_uv=False), axis=-1) ** 2)
