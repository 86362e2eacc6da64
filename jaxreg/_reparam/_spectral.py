r"""Spectral normalization as a pure function with an explicit power-iteration state.

$W_{SN} = W / \sigma(W)$ where $\sigma(W)$ is the largest singular value,
estimated by power iteration on a vector ``u`` kept between calls (Miyato et
al., 2018). Nothing is stored in place: :func:`spectral_normalize` returns the
normalized weight and the new state, and the caller keeps both (the Flax
wrappers ``jaxreg.linen.SpectralNorm`` and ``jaxreg.nnx.SpectralNorm`` keep ``u``
in a non-trainable collection).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxreg._norms import as_matrix, power_of_two, safe_norm, sharded_like
from jaxreg._validation import check_count, check_float_array, check_ndim, check_positive


class SpectralNormState(NamedTuple):
    """State of :func:`spectral_normalize`: the power-iteration vector."""

    u: jax.Array  # shape (w.shape[-1],), unit norm, float32 (float64 if w is): right singular vector estimate


def _matvec(m: jax.Array, x: jax.Array) -> jax.Array:
    # A multiply and a sum rather than a matmul: full float32 precision on every backend (GPUs and
    # TPUs may use TF32/bf16 passes for f32 matmuls, which would cap the accuracy of sigma at
    # ~1e-3), and on a mesh with explicit axes a sum over a sharded axis is an all-reduce where
    # a matmul contracting a sharded axis is an error. XLA fuses the product into the reduction.
    return jnp.sum(m * x, axis=-1)


def _scaled(w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(M / p, p)``: the ``(-1, out)`` matrix ``M`` of ``w`` over a power of two ``p`` near ``max|M|``.

    Exact (a power-of-two scaling), and it keeps every product and norm of the
    iteration inside the dtype's range. ``p`` is held constant for differentiation:
    ``W / sigma(W)`` does not change when ``W`` is scaled.
    """
    m = as_matrix(w)
    p, _ = power_of_two(jax.lax.stop_gradient(jnp.max(jnp.abs(m), initial=0)))
    return m / p, p


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
    key: jax.Array, w: jax.Array, *, n_steps: int = 15, eps: float = 1e-12
) -> SpectralNormState:
    r"""Initial state for :func:`spectral_normalize`: a random unit ``u``, refined.

    ``u`` is drawn from a standard normal of shape ``(w.shape[-1],)``, normalized,
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

    Returns:
      A :class:`SpectralNormState`.
    """
    check_ndim("w", w, 2, at_least=True)
    check_float_array("w", w)
    n_steps = check_count("n_steps", n_steps)
    eps = check_positive("eps", eps)
    m, p = _scaled(w)
    u = jax.random.normal(key, (m.shape[1],), m.dtype)
    u = u / safe_norm(u, eps=eps)
    if m.size:  # a zero-size weight keeps the random u (of shape (0,) if w.shape[-1] == 0)
        u = _power_iteration(m, u, n_steps, eps / p)
    return SpectralNormState(u=jax.lax.stop_gradient(u))


def spectral_normalize(
    w: jax.Array,
    state: SpectralNormState,
    *,
    n_steps: int = 1,
    update: bool = True,
    eps: float = 1e-12,
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
    check_ndim("w", w, 2, at_least=True)
    check_float_array("w", w)
    n_steps = check_count("n_steps", n_steps)
    eps = check_positive("eps", eps)
    u = state.u
    if u.shape != (w.shape[-1],):
        raise ValueError(
            f"state.u must have shape ({w.shape[-1]},) for w of shape {w.shape}, got {u.shape}; "
            "create it with spectral_norm_init(key, w)"
        )
    if w.size == 0:
        return w, state
    # Everything in units of p (a power of two near max|W|): M / p and eps / p.
    m, p = _scaled(w)
    eps_scaled = eps / p
    u = u.astype(m.dtype)
    if update:
        u = _power_iteration(m, u, n_steps, eps_scaled)
    u = jax.lax.stop_gradient(u)
    sigma = safe_norm(_matvec(m, u), keepdims=False)  # ||M u||, with a zero gradient at W = 0
    # max(sigma, eps) for sigma > 0, and 1 (1 / p in units of p) for sigma = 0.
    divisor = jnp.where(sigma > eps_scaled, sigma, jnp.where(sigma > 0, eps_scaled, 1 / p))
    w_normalized = (m / divisor).reshape(w.shape).astype(w.dtype)
    return w_normalized, SpectralNormState(u=u) if update else state
