r"""Spectral normalization as a pure function with an explicit power-iteration state.

$W_{SN} = W / \sigma(W)$ where $\sigma(W)$ is the largest singular value,
estimated by power iteration on a vector ``u`` kept between calls (Miyato et
al., 2018). Nothing is stored in place: :func:`spectral_normalize` returns the
normalized weight and the new state, and the caller keeps both (the Flax
wrappers ``jaxreg.linen.SpectralNorm`` and ``jaxreg.nnx.SpectralNorm`` keep ``u``
in a non-trainable collection).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxreg._norms import acc_dtype, map_matrices, power_of_two, safe_norm, sharded_like
from jaxreg._validation import check_batch_dims, check_count, check_float_array, check_positive


class SpectralNormState(NamedTuple):
    """State of :func:`spectral_normalize`: the power-iteration vector."""

    # shape w.shape[:batch_dims] + (w.shape[-1],), unit norm per matrix, float32 (float64 if w is):
    # the right singular vector estimate of each matrix
    u: jax.Array


def _matvec(m: jax.Array, x: jax.Array) -> jax.Array:
    # A multiply and a sum rather than a matmul: full float32 precision on every backend (GPUs and
    # TPUs may use TF32/bf16 passes for f32 matmuls, which would cap the accuracy of sigma at
    # ~1e-3), and on a mesh with explicit axes a sum over a sharded axis is an all-reduce where
    # a matmul contracting a sharded axis is an error. XLA fuses the product into the reduction.
    return jnp.sum(m * x, axis=-1)


def _scaled(m: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(M / p, p)``: the matrix ``M`` over a power of two ``p`` near ``max|M|``.

    Exact (a power-of-two scaling), and it keeps every product and norm of the
    iteration inside the dtype's range. ``p`` is held constant for differentiation:
    ``W / sigma(W)`` does not change when ``W`` is scaled.
    """
    p, inv_p = power_of_two(jax.lax.stop_gradient(jnp.max(jnp.abs(m), initial=0)))
    # A product by the exact 1 / p, not a division that XLA could fold with the later one by sigma.
    return m * inv_p, p


def _power_iteration(m: jax.Array, u: jax.Array, n_steps: int, eps: jax.Array) -> jax.Array:
    """``n_steps`` power iterations on the matrix ``m`` from ``u``; ``eps`` in the units of ``m``.

    A step where ``||M u|| <= eps`` (u = 0, or orthogonal to the rows of M)
    restarts from the row of M of largest norm: ``v`` is that row's index vector,
    so ``u`` becomes the row's direction and ``||M u|| >= max_i ||M_i||``. A step
    where ``||M^T v|| <= eps`` (M is 0 or below eps) keeps ``u``. Otherwise the
    Rayleigh quotient ``||M u||`` does not decrease from step to step, so one
    restart is enough.
    """

    def step(_, u):
        mu = _matvec(m, u)
        rows = jnp.sum(m * m, axis=-1)  # the same pass over M as M u
        mu_norm = safe_norm(mu, keepdims=False)
        # The indicator of the first row of largest norm, from a max and a min (on a mesh: all-reduces
        # of one element, where an argmax would all-gather its partial results).
        index = sharded_like(jnp.arange(rows.shape[0]), rows)
        first = jnp.min(jnp.where(rows == jnp.max(rows), index, rows.shape[0]))
        restart = (index == first).astype(m.dtype)
        v = jnp.where(mu_norm > eps, mu / jnp.where(mu_norm > eps, mu_norm, 1), restart)
        mtv = _matvec(m.T, v)
        mtv_norm = safe_norm(mtv, keepdims=False)
        u = sharded_like(u, mtv)
        return jnp.where(mtv_norm > eps, mtv / jnp.where(mtv_norm > eps, mtv_norm, 1), u)

    return jax.lax.fori_loop(0, n_steps, step, u)


def spectral_norm_init(
    key: jax.Array, w: jax.Array, *, n_steps: int = 15, eps: float = 1e-12, batch_dims: int = 0
) -> SpectralNormState:
    r"""Initial state for :func:`spectral_normalize`: a random unit ``u``, refined.

    ``u`` is drawn from a standard normal of shape ``(w.shape[-1],)`` (for a stack,
    ``w.shape[:batch_dims] + (w.shape[-1],)``: one independent draw per matrix), normalized,
    then refined by ``n_steps`` power iterations on ``w`` (15 by default, as
    ``torch.nn.utils.parametrizations.spectral_norm`` does when it is registered),
    so that the first call already sees an accurate $\sigma$. On a zero weight
    the iteration keeps the random ``u`` (see the safeguards of
    :func:`spectral_normalize`), so the state is ready when the weight becomes
    nonzero. A zero-size ``w`` keeps the random ``u`` without iterating.

    Args:
      key: a ``jax.random`` key.
      w: the weight to be normalized (``ndim >= 2``; see :func:`spectral_normalize`).
      n_steps: power iterations run at initialization (``>= 0``).
      eps: the norm at or below which the iteration's safeguards apply.
      batch_dims: the number of leading axes of ``w`` that index a stack of
        weights, each with its own ``u`` (see :func:`spectral_normalize`).

    Returns:
      A :class:`SpectralNormState`, ``u`` of shape ``w.shape[:batch_dims] + (w.shape[-1],)``.
    """
    batch_dims = check_batch_dims(batch_dims, w, "w")
    check_float_array("w", w)
    n_steps = check_count("n_steps", n_steps)
    eps = check_positive("eps", eps)
    return SpectralNormState(u=_init_u(key, w, eps, n_steps, batch_dims))


@functools.partial(jax.jit, static_argnums=(3, 4))
def _init_u(key: jax.Array, w: jax.Array, eps: float, n_steps: int, batch_dims: int) -> jax.Array:
    # Jitted so that an eager call compiles one program instead of one per operation; under an
    # outer jit (or vmap, or a Flax scan) it is traced in place like the rest.
    u = jax.random.normal(key, (*w.shape[:batch_dims], w.shape[-1]), acc_dtype(w.dtype))
    u = u / safe_norm(u, axis=-1, eps=eps)  # one unit vector per matrix
    if w.size:  # a zero-size weight keeps the random u (of shape (0,) if w.shape[-1] == 0)

        def refine(m, u):  # one matrix M and its u
            m, p = _scaled(m)
            return _power_iteration(m, u, n_steps, eps / p)

        u = map_matrices(refine, w, batch_dims, u)
    return jax.lax.stop_gradient(u)


def spectral_normalize(
    w: jax.Array,
    state: SpectralNormState,
    *,
    n_steps: int = 1,
    update: bool = True,
    eps: float = 1e-12,
    batch_dims: int = 0,
) -> tuple[jax.Array, SpectralNormState]:
    r"""Spectral normalization $W / \sigma(W)$ with an explicit power-iteration state.

    Let $M$ be ``w`` reshaped to ``(-1, w.shape[-1])`` (output axis last: Flax's
    ``(in, out)`` Dense and ``(h, w, in, out)`` conv kernels; PyTorch reshapes
    its ``(out, in, ...)`` weights to ``(out, -1)``, the transpose, with the same
    singular values). With ``update=True`` the state vector $u$ (unit, in the
    output space) is refined by ``n_steps`` power iterations

    $$v \leftarrow \frac{M u}{\|M u\|}, \qquad u \leftarrow \frac{M^\top v}{\|M^\top v\|},$$

    under ``jax.lax.stop_gradient``, with two safeguards that keep $u$ a unit
    vector. A step where $\|M u\| \le \epsilon$ ($u = 0$, or $u$ orthogonal to
    every row of $M$, as for a state initialized on a zero weight that has
    since become nonzero) restarts from the row of $M$ of largest norm: $v$ is
    that row's indicator, so $u$ becomes the row's direction and $\|M u\| \ge
    \max_i \|M_i\|$, which the following steps do not decrease (in exact
    arithmetic). A step where $\|M^\top v\| \le \epsilon$ ($M = 0$) keeps $u$.
    Where the norms exceed $\epsilon$ this is PyTorch's step $x / \max(\|x\|,
    \epsilon)$. Then $\sigma = \|M u\|_2 = v^\top M u$ with $v = Mu / \|Mu\|$
    (a lower bound on $\sigma_{\max}$, exact when $u$ is the top right
    singular vector), and the result is $W / \hat\sigma$ in the
    dtype of ``w``, with $\hat\sigma = \max(\sigma, \epsilon)$ for $\sigma > 0$
    and $\hat\sigma = 1$ for $\sigma = 0$ (a zero weight, e.g. a zero-initialized
    attention bias: Flax's convention, so the gradient there is that of the
    identity, not $1/\epsilon$). Gradients flow through $\sigma$ with $u$ held
    fixed, as in Miyato et al. and PyTorch.

    Everything is computed on $M / p$ for a power of two $p$ near
    $\max_{ij}|M_{ij}|$ (an exact scaling, which leaves $W / \sigma$ unchanged),
    so no product or norm overflows or underflows: a float32 ``w`` of entries
    1e20 or 3e38 is normalized as accurately as one of entries 1. This costs one
    max-reduction over ``w`` per call. A zero-size ``w`` is returned as it is,
    with the state unchanged.

    With ``update=False`` (evaluation) no iteration runs: $\sigma$ is computed from
    the stored $u$ and the state is returned unchanged, so the output is
    deterministic, as PyTorch's ``spectral_norm`` in ``eval()`` mode; a stored
    $u$ with $M u = 0$ gives $\hat\sigma = 1$ until a training call restarts it.
    (Flax's ``SpectralNorm`` still iterates from the stored ``u`` when
    ``update_stats=False``, without storing the result.)

    Args:
      w: the weight, ``ndim >= 2``, of a real floating dtype (an integer ``w``
        raises a ``TypeError``).
      state: from :func:`spectral_norm_init` or a previous call.
      n_steps: power iterations per call when ``update`` (``>= 0``).
      update: whether to iterate and return the refined ``u``.
      eps: lower bound on $\sigma$, and the norm at or below which the iteration's
        safeguards apply: nothing divides by zero.
      batch_dims: the number of leading axes of ``w`` that index a stack of
        independent weights (a Python int, ``0 <= batch_dims <= w.ndim - 2``):
        for a scanned stack of kernels ``(layers, in, out)``, ``batch_dims=1``
        normalizes each ``(in, out)`` kernel by its own $\sigma$, with its own
        ``u`` (``state.u`` of shape ``(layers, out)``), as a loop over the
        layers would; ``batch_dims=0`` would take the ``(layers * in, out)``
        matrix and one $\sigma$ for all.

    Returns:
      ``(w_normalized, new_state)``.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np, jaxreg
      >>> w = jnp.array([[3.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
      >>> state = jaxreg.spectral_norm_init(jax.random.key(0), w)
      >>> w_sn, state = jaxreg.spectral_normalize(w, state)
      >>> np.asarray(w_sn, float).round(4).tolist()
      [[1.0, 0.0], [0.0, 0.3333], [0.0, 0.0]]

    References:
      Miyato et al., 2018, `Spectral Normalization for Generative Adversarial
      Networks <https://arxiv.org/abs/1802.05957>`_;
      ``torch.nn.utils.parametrizations.spectral_norm``; ``flax.linen.SpectralNorm``.
    """
    batch_dims = check_batch_dims(batch_dims, w, "w")
    check_float_array("w", w)
    n_steps = check_count("n_steps", n_steps)
    eps = check_positive("eps", eps)
    u = state.u
    u_shape = (*w.shape[:batch_dims], w.shape[-1])
    if u.shape != u_shape:
        raise ValueError(
            f"state.u must have shape {u_shape} for w of shape {w.shape} and batch_dims={batch_dims}, "
            f"got {u.shape}; create it with spectral_norm_init(key, w, batch_dims={batch_dims})"
        )
    if w.size == 0:
        return w, state

    def normalize(m, u):  # one matrix M and its u
        # Everything in units of p (a power of two near max|M|): M / p and eps / p.
        m, p = _scaled(m)
        eps_scaled = eps / p
        u = u.astype(m.dtype)
        if update:
            u = _power_iteration(m, u, n_steps, eps_scaled)
        u = jax.lax.stop_gradient(u)
        sigma = safe_norm(_matvec(m, u), keepdims=False)  # ||M u||, with a zero gradient at W = 0
        # max(sigma, eps) for sigma > 0, and 1 (1 / p in units of p) for sigma = 0.
        divisor = jnp.where(sigma > eps_scaled, sigma, jnp.where(sigma > 0, eps_scaled, 1 / p))
        return m / divisor, u

    m_normalized, u = map_matrices(normalize, w, batch_dims, u)
    w_normalized = m_normalized.reshape(w.shape).astype(w.dtype)
    return w_normalized, SpectralNormState(u=u) if update else state
