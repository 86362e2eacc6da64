r"""FISTA: Nesterov acceleration of a proximal gradient chain, as a transform placed after the prox step."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxreg._masking import masked
from jaxreg._transforms._base import require_params
from jaxreg._typing import Mask


class FistaState(NamedTuple):
    """State of :func:`fista`: the last proximal iterate and the momentum sequence."""

    count: jax.Array  # pyright: ignore[reportIncompatibleMethodOverride]  # shape (), int32; +1 per update
    x: Any  # the proximal iterate x_k (the selected leaves): the solution estimate, with exact zeros
    t: jax.Array  # shape (), float32: t_k, t_0 = 1


def fista(*, mask: Mask = None) -> optax.GradientTransformation:
    r"""Accelerates a proximal gradient chain (FISTA), placed **after** the prox step.

    In ``optax.chain(optax.sgd(lr), jaxreg.prox_l1(lam, lr), jaxreg.fista())`` the
    prox step lands on $x_{k+1} = \mathrm{prox}(y_k - \eta\nabla f(y_k))$, where
    $y_k$ are the params; ``fista`` moves the params on to the extrapolated point
    $y_{k+1} = x_{k+1} + \frac{t_k - 1}{t_{k+1}}(x_{k+1} - x_k)$ with
    $t_{k+1} = (1 + \sqrt{1 + 4t_k^2})/2$, $t_0 = 1$, $x_0$ the initial params.
    The objective converges as $O(1/k^2)$ instead of ISTA's $O(1/k)$ (Beck and
    Teboulle). The gradient is then taken at $y_k$, as FISTA requires.

    The params are the extrapolated points $y_k$, which have no exact zeros:
    the solution estimate $x_k$, with the prox's exact zeros, is the state's
    ``x`` (``state[-1].x`` at the end of a chain; inside ``optax.MaskedState``
    with ``mask=``). The iterates are those of
    ``jaxopt.ProximalGradient(acceleration=True)`` with a fixed step size. The
    acceleration assumes plain gradient steps of a fixed size $\eta \le 1/L$: use
    it with ``optax.sgd(lr)`` (no momentum), not after Adam.

    Args:
      mask: which leaves (``optax.masked`` semantics); the others keep their updates.

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``; its
      state is :class:`FistaState` (in ``optax.MaskedState`` with ``mask=``).

    Examples:
      >>> import jax, jax.numpy as jnp, optax, jaxreg
      >>> A, b = jnp.array([[1.0, 0.0], [0.0, 2.0]]), jnp.array([1.0, 0.1])
      >>> loss = lambda w: 0.5 * jnp.sum((A @ w - b) ** 2)
      >>> tx = optax.chain(optax.sgd(0.25), jaxreg.prox_l1(0.5, 0.25), jaxreg.fista())
      >>> w = jnp.zeros(2)
      >>> state = tx.init(w)
      >>> for _ in range(100):
      ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
      ...     w = optax.apply_updates(w, updates)
      >>> state[-1].x.round(4).tolist()  # the lasso solution: 1 - 0.5, and exactly 0
      [0.5, 0.0]

    References:
      Beck and Teboulle, "A Fast Iterative Shrinkage-Thresholding Algorithm for
      Linear Inverse Problems", SIAM J. Imaging Sci. 2009
      (https://doi.org/10.1137/080716542); ``jaxopt.ProximalGradient``.
    """

    def init_fn(params: Any) -> FistaState:
        return FistaState(
            count=jnp.zeros([], jnp.int32),
            x=jax.tree.map(jnp.copy, params),  # own buffers: params may be donated
            t=jnp.ones([], jnp.float32),
        )

    def update_fn(updates: Any, state: Any, params: Any = None) -> tuple[Any, FistaState]:
        require_params(params, "fista")
        t = state.t
        t_next = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
        beta = (t - 1) / t_next
        x_next = jax.tree.map(lambda w, u: w + u, params, updates)

        def leaf(w, u, x_new, x_old):
            y = x_new + beta.astype(x_new.dtype) * (x_new - x_old)
            return (y - w).astype(u.dtype)

        new_updates = jax.tree.map(leaf, params, updates, x_next, state.x)
        return new_updates, FistaState(jnp.asarray(optax.safe_increment(state.count)), x_next, t_next)

    return masked(optax.GradientTransformation(init_fn, update_fn), mask)
