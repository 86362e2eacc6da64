r"""Hard orthogonality: a map from an unconstrained matrix to an orthogonal (or semi-orthogonal) one.

The optimizer trains the unconstrained parameter; the layer uses its image,
computed at every call, so the constraint holds exactly after every step
whatever the optimizer (a penalty such as :func:`jaxreg.soft_orthogonal_penalty`
only pulls towards it). The maps are PyTorch's
(``torch.nn.utils.parametrizations.orthogonal``, ``"cayley"``,
``"matrix_exp"`` and ``"householder"``), so that a parameter gives the same
matrix and the same gradient in both libraries; ``jaxreg.linen.Orthogonal`` and
``jaxreg.nnx.Orthogonal`` wrap a layer with them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxreg._norms import acc_dtype
from jaxreg._validation import check_ndim

_HIGHEST = jax.lax.Precision.HIGHEST  # full float32 matmuls on GPU/TPU too (no TF32/bf16 passes)
_METHODS = ("cayley", "expm", "householder")


def _tall(x: jax.Array) -> tuple[jax.Array, bool]:
    """``x`` with at least as many rows as columns (transposed if it was wide), and whether it was."""
    wide = x.shape[-2] < x.shape[-1]
    return (jnp.swapaxes(x, -1, -2) if wide else x), wide


def _householder(x: jax.Array) -> jax.Array:
    """``H_1 ... H_k`` times the first ``k`` columns of the identity, times the signs, for a tall ``x``.

    ``H_i = I - tau_i v_i v_i^T`` with ``v_i`` column ``i`` of the unit lower
    triangle ``V`` of ``x`` and ``tau_i = 2 / ||v_i||^2``
    (``torch.linalg.householder_product``'s convention). The product is
    ``I - V S^{-1} V^T`` with ``S = triu(V^T V, 1) + diag(V^T V) / 2``, upper
    triangular (the UT transform of Joffrain et al., 2006), so its first ``k`` columns are
    ``E - V S^{-1} V[:k]^T``: two products and a ``k x k`` triangular solve,
    ``O(n k^2)``, instead of ``k`` reflections one after the other.
    """
    n, k = x.shape[-2:]
    v = jnp.tril(x, -1) + jnp.eye(n, k, dtype=x.dtype)  # v_i: a 1 on the diagonal
    gram = jnp.matmul(jnp.swapaxes(v, -1, -2), v, precision=_HIGHEST)
    s = jnp.triu(gram, 1) + jnp.eye(k, dtype=x.dtype) * gram / 2
    z = jax.lax.linalg.triangular_solve(s, jnp.swapaxes(v[..., :k, :], -1, -2), left_side=True, lower=False)
    q = jnp.eye(n, k, dtype=x.dtype) - jnp.matmul(v, z, precision=_HIGHEST)
    signs = jnp.where(jnp.diagonal(x, axis1=-2, axis2=-1) > 0, 1, -1).astype(x.dtype)
    return q * signs[..., None, :]


def orthogonal_map(a: jax.Array, *, method: str = "cayley", base: jax.Array | None = None) -> jax.Array:
    r"""An orthogonal (or semi-orthogonal) matrix $Q(a)$ of the shape of the unconstrained ``a``.

    For a tall ``a`` ($n \times k$, $n \ge k$; a wide one is transposed first and
    the result transposed back), let $L$ be the lower triangle of ``a`` (diagonal
    included) padded with zeros to $n \times n$ and $A = L - L^\top$, a
    skew-symmetric matrix built from the $nk - k(k+1)/2$ entries of ``a``
    strictly below the diagonal (the other entries get a zero gradient). Then, for
    ``"cayley"`` and ``"expm"``,

    $$Q = \big[B\, \phi(A)\big]_{:, :k}, \qquad
      \phi(A) = \Big(I - \frac{A}{2}\Big)^{-1}\Big(I + \frac{A}{2}\Big) \ (\text{"cayley"})
      \quad\text{or}\quad \phi(A) = e^{A} \ (\text{"expm"}),$$

    with $B$ = ``base`` ($n \times n$ orthogonal, the identity by default). $\phi(A)$
    is a rotation ($\det = 1$), so $Q^\top Q = I_k$: the columns of a tall $Q$
    (the rows of a wide one) are orthonormal.

    ``"householder"`` instead takes the $k$ columns of ``a`` as Householder
    reflectors: $v_i = e_i + (0, \dots, 0, a_{i+1,i}, \dots, a_{n,i})^\top$ (the
    strict lower triangle under a unit diagonal), $\tau_i = 2 / \|v_i\|^2$ and
    $H_i = I - \tau_i v_i v_i^\top$, a reflection, and

    $$Q = \big[B\, H_1 H_2 \cdots H_k\big]_{:, :k} \operatorname{diag}(s), \qquad
      s_i = \begin{cases} +1 & a_{ii} > 0 \\ -1 & a_{ii} \le 0, \end{cases}$$

    as ``torch.linalg.householder_product`` and LAPACK's QR store $Q$: every
    semi-orthogonal matrix is reached (it is the Q factor of its own QR
    decomposition). The diagonal of ``a`` only chooses the signs of the columns
    and gets a zero gradient, as the entries above it. PyTorch multiplies by
    the diagonal cast to an integer (``X.diagonal().int()``), which agrees with
    $s$ where the diagonal is $\pm 1$, the values its ``right_inverse`` writes,
    and otherwise gives a matrix that is not orthogonal: a zero column where
    $|a_{ii}| < 1$, as after weight decay shrinks a $-1$; here $Q$ stays
    orthogonal for any ``a``, and ``a = 0`` gives the first $k$ columns of the
    identity, as for the other maps.

    Leading axes of ``a`` are a batch of matrices. Each method is PyTorch's
    ``orthogonal(module, orthogonal_map=...)`` forward map (``"expm"`` is its
    ``"matrix_exp"``): with ``use_trivialization=False`` and no base, or with the
    default ``use_trivialization=True`` and its ``base`` buffer; the test suite
    checks values and gradients against it.

    Without a base, every $\phi(A)$ is a rotation near the identity for small
    ``a``, so ``a = 0`` gives the first $k$ columns of the identity. A base moves
    the starting point: with ``base = orthogonal_map_init(w)``, ``a = 0`` gives
    the polar factor of ``w`` (PyTorch starts from the Q factor of ``w``'s QR
    decomposition instead). The Cayley map costs one $n \times n$ linear solve,
    the exponential a scaling-and-squaring Padé approximation, a few $n \times n$
    products; the Cayley map cannot reach rotations with eigenvalue $-1$, which
    the base can supply. The Householder map forms no $n \times n$ matrix (but
    a base): the product of the reflections is $I - V S^{-1} V^\top$ with $V$
    the matrix of the $v_i$ and $S$ the upper triangle of $V^\top V$ with half
    its diagonal (Joffrain et al., 2006), so $Q$ costs two products and a
    $k \times k$ triangular solve, $O(n k^2)$.

    Args:
      a: the unconstrained parameter, ``(..., n, k)``.
      method: ``"cayley"``, ``"expm"`` or ``"householder"``.
      base: an orthogonal ``(..., max(n, k), max(n, k))`` matrix, e.g. from
        :func:`orthogonal_map_init`, or ``None``.

    Returns:
      $Q$, of the shape and dtype of ``a`` (computed in float32 at least).

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np, jaxreg
      >>> a = jax.random.normal(jax.random.key(0), (5, 3))
      >>> q = jaxreg.orthogonal_map(a)
      >>> bool(np.allclose(q.T @ q, np.eye(3), atol=1e-5))
      True
      >>> q = jaxreg.orthogonal_map(a.T, method="householder")   # wide: orthonormal rows
      >>> bool(np.allclose(q @ q.T, np.eye(3), atol=1e-5))
      True
      >>> w = jnp.array([[2.0, 0.0], [0.0, 0.5], [0.0, 0.0]])
      >>> base = jaxreg.orthogonal_map_init(w)
      >>> np.asarray(jaxreg.orthogonal_map(jnp.zeros_like(w), base=base)).round(4).tolist()  # polar(w)
      [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]

    References:
      Lezcano-Casado and Martínez-Rubio, 2019, `Cheap Orthogonal Constraints in
      Neural Networks: A Simple Parametrization of the Orthogonal and Unitary
      Group <https://arxiv.org/abs/1901.08428>`_; Lezcano-Casado, 2019,
      `Trivializations for Gradient-Based Optimization on Manifolds
      <https://arxiv.org/abs/1909.09501>`_ (the base); Mhammedi et al., 2017,
      `Efficient Orthogonal Parametrisation of Recurrent Neural Networks Using
      Householder Reflections <https://arxiv.org/abs/1612.00188>`_; Joffrain,
      Low, Quintana-Ortí and van de Geijn, 2006, Accumulating Householder
      Transformations, Revisited, ACM Transactions on Mathematical Software
      32(2) (the UT transform);
      ``torch.nn.utils.parametrizations.orthogonal``.
    """
    check_ndim("a", a, 2, at_least=True)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    a = jnp.asarray(a)
    n = max(a.shape[-2:])
    if base is not None:
        base = jnp.asarray(base)
        if base.shape[-2:] != (n, n):
            raise ValueError(
                f"base must have shape (..., {n}, {n}) for a of shape {a.shape}, got {base.shape}; "
                "create it with orthogonal_map_init(w)"
            )
    return _orthogonal_map(a, base, str(method))


@functools.partial(jax.jit, static_argnames=("method",))
def _orthogonal_map(a: jax.Array, base: jax.Array | None, method: str) -> jax.Array:
    # After the checks, one program: an eager call compiles once rather than once per operation.
    x, wide = _tall(a.astype(acc_dtype(a.dtype)))
    n, k = x.shape[-2:]
    if method == "householder":
        q = _householder(x)
    else:
        lower = jnp.tril(x)
        if n != k:
            lower = jnp.concatenate([lower, jnp.zeros((*x.shape[:-2], n, n - k), x.dtype)], axis=-1)
        skew = lower - jnp.swapaxes(lower, -1, -2)
        if method == "cayley":
            eye = jnp.eye(n, dtype=x.dtype)
            q = jnp.linalg.solve(eye - skew / 2, (eye + skew / 2)[..., :k])
        else:
            q = jax.scipy.linalg.expm(skew)[..., :k]
    if base is not None:
        q = jnp.matmul(base.astype(x.dtype), q, precision=_HIGHEST)
    return (jnp.swapaxes(q, -1, -2) if wide else q).astype(a.dtype)


def orthogonal_map_init(w: jax.Array) -> jax.Array:
    r"""The base with which :func:`orthogonal_map` of zeros is the polar factor of ``w``.

    For a tall ``w`` ($n \times k$; a wide one is transposed) with SVD
    $w = U \Sigma V^\top$ ($U$ the full $n \times n$ factor), the polar factor
    $P = U_{:, :k} V^\top$ is the semi-orthogonal matrix nearest to ``w`` in the
    Frobenius norm, and the base is $B = [P, U_{:, k:}]$, an $n \times n$
    orthogonal matrix whose first $k$ columns are $P$. Hence
    ``orthogonal_map(zeros_like(w), base=B)`` is $P$ (transposed back for a
    wide ``w``): a layer whose unconstrained parameter starts at zero starts
    from its initial kernel made orthogonal, as PyTorch's default trivialization
    does (PyTorch uses the Q factor of the QR decomposition rather than $P$).
    Leading axes of ``w`` are a batch.

    Args:
      w: a matrix, ``(..., n, k)``.

    Returns:
      The base, ``(..., max(n, k), max(n, k))``, float32 (float64 for float64 ``w``).

    References:
      Higham, 1986, `Computing the Polar Decomposition, with Applications
      <https://doi.org/10.1137/0907079>`_.
    """
    check_ndim("w", w, 2, at_least=True)
    return _orthogonal_map_init(jnp.asarray(w))


@jax.jit
def _orthogonal_map_init(w: jax.Array) -> jax.Array:
    x, _ = _tall(w.astype(acc_dtype(w.dtype)))
    k = x.shape[-1]
    u, _, vt = jnp.linalg.svd(x, full_matrices=True)
    polar = jnp.matmul(u[..., :k], vt, precision=_HIGHEST)
    return jnp.concatenate([polar, u[..., k:]], axis=-1)
