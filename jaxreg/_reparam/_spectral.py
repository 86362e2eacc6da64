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

from jaxreg._norms import as_matrix, safe_norm
from jaxreg._validation import check_count, check_float_array, check_ndim, check_positive


class SpectralNormState(NamedTuple):
    """State of :func:`spectral_normalize`: the power-iteration vector."""

    u: jax.Array  # shape (w.shape[-1],), unit norm, float32 (float64 if w is): right singular vector estimate


def _normalize(x: jax.Array, eps: float) -> jax.Array:
    # x / max(||x||, eps), as torch.nn.functional.normalize.
    return x / safe_norm(x, eps=eps)


def _matvec(m: jax.Array, x: jax.Array) -> jax.Array:
    # A multiply and a sum rather than a matmul: full float32 precision on every backend (GPUs and
    # TPUs may use TF32/bf16 passes for f32 matmuls, which would cap the accuracy of sigma at
    # ~1e-3), and on a mesh with explicit axes a sum over a sharded axis is an all-reduce where
    # a matmul contracting a sharded axis is an error. XLA fuses the product into the reduction.
    return jnp.sum(m * x, axis=-1)


def _power_iteration(m: jax.Array, u: jax.Array, n_steps: int, eps: float) -> jax.Array:
    def step(_, u):
        v = _normalize(_matvec(m, u), eps)
        return _normalize(_matvec(m.T, v), eps)

    return jax.lax.fori_loop(0, n_steps, step, u)


def spectral_norm_init(
    key: jax.Array, w: jax.Array, *, n_steps: int = 15, eps: float = 1e-12
) -> SpectralNormState:
    r"""Initial state for :func:`spectral_normalize`: a random unit ``u``, refined.

    ``u`` is drawn from a standard normal of shape ``(w.shape[-1],)``, normalized,
    then refined by ``n_steps`` power iterations on ``w`` (15 by default, as
    ``torch.nn.utils.parametrizations.spectral_norm`` does when it is registered),
    so that the first call already sees an accurate $\sigma$.

    Args:
      key: a ``jax.random`` key.
      w: the weight to be normalized (``ndim >= 2``; see :func:`spectral_normalize`).
      n_steps: power iterations run at initialization (``>= 0``).
      eps: lower bound on norms in the iteration.

    Returns:
      A :class:`SpectralNormState`.
    """
    check_ndim("w", w, 2, at_least=True)
    check_float_array("w", w)
    n_steps = check_count("n_steps", n_steps)
    eps = check_positive("eps", eps)
    m = as_matrix(w)
    u = _normalize(jax.random.normal(key, (m.shape[1],), m.dtype), eps)
    return SpectralNormState(u=jax.lax.stop_gradient(_power_iteration(m, u, n_steps, eps)))


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

    $$v \leftarrow \frac{M u}{\max(\|M u\|, \epsilon)}, \qquad
      u \leftarrow \frac{M^\top v}{\max(\|M^\top v\|, \epsilon)},$$

    under ``jax.lax.stop_gradient``, and $\sigma = \|M u\|_2 = v^\top M u$ with
    $v = Mu / \|Mu\|$ (a lower bound on $\sigma_{\max}$, exact when $u$ is the top
    right singular vector). The result is $W / \max(\sigma, \epsilon)$, in the
    dtype of ``w``. Gradients flow through $\sigma$ with $u$ held fixed, as in
    Miyato et al. and PyTorch.

    With ``update=False`` (evaluation) no iteration runs: $\sigma$ is computed from
    the stored $u$ and the state is returned unchanged, so the output is
    deterministic, as PyTorch's ``spectral_norm`` in ``eval()`` mode. (Flax's
    ``SpectralNorm`` still iterates from the stored ``u`` when
    ``update_stats=False``, without storing the result.)

    Args:
      w: the weight, ``ndim >= 2``, of a real floating dtype (an integer ``w``
        raises a ``TypeError``).
      state: from :func:`spectral_norm_init` or a previous call.
      n_steps: power iterations per call when ``update`` (``>= 0``).
      update: whether to iterate and return the refined ``u``.
      eps: lower bound on norms (and on $\sigma$): nothing divides by zero.

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
    m = as_matrix(w)
    u = u.astype(m.dtype)
    if update:
        u = _power_iteration(m, u, n_steps, eps)
    u = jax.lax.stop_gradient(u)
    # max(||M u||, eps), with a finite gradient at W = 0.
    sigma = safe_norm(_matvec(m, u), eps=eps, keepdims=False)
    w_normalized = (m / sigma).reshape(w.shape).astype(w.dtype)
    return w_normalized, SpectralNormState(u=u) if update else state
