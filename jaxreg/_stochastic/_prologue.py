"""The dropout family's shared prologue (argument checks, the no-sampling result) and masked select."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.core import Tracer

from jaxreg._norms import acc_dtype
from jaxreg._stochastic import _sampling
from jaxreg._typing import Sampler
from jaxreg._validation import check_axis, check_bool, check_rate, is_concrete, is_one, is_zero

MODES = ("inverted", "classic")


def require_key(key: Any, name: str) -> None:
    if key is None:
        raise _sampling.missing_key_error(name)


def check_argument_order(name: str, signature: str, x_name: str, x: Any, rate_name: str, rate: Any) -> None:
    """Raises a ``TypeError`` if a PRNG key was passed in place of ``x`` or the rate (a swapped call).

    A typed key is never a legitimate input or rate, nor ``uint32`` words of
    shape ``(n,)`` (legacy key data) a rate: the message gives ``signature``
    (``dropout(key, x, rate)``).
    """
    for arg, value in ((x_name, x), (rate_name, rate)):
        if _sampling.is_typed_key(value):
            raise TypeError(f"{name}: {arg} is a PRNG key; the signature is {signature}, with the key first")
    if isinstance(rate, (jax.Array, np.ndarray)) and rate.dtype == np.uint32 and rate.ndim == 1:
        raise TypeError(
            f"{name}: {rate_name} looks like legacy PRNG key data (uint32 of shape {rate.shape}); the "
            f"signature is {signature}, with the key first"
        )


def checked_input(
    name: str,
    key: Any,
    x: Any,
    rate: Any,
    sampler: Sampler,
    *,
    deterministic: Any = False,
    rate_name: str = "rate",
    check: Any = None,
    signature: str | None = None,
) -> tuple[jax.Array, Any]:
    """The shared first step of every op: checks the arguments; returns ``(x, rate)``.

    In order: no PRNG key in place of ``x`` or the rate (a swapped call, named by
    ``signature``, default ``name(key, x, rate_name)``); ``deterministic`` a
    bool; a concrete rate valid (``check``, default ``check_rate``: in [0, 1]);
    the sampler known; ``key`` (unless ``None``) one well-formed PRNG key;
    ``x`` a real floating-point array. Returns ``x`` as an array and the rate
    with Python integers as floats.
    """
    signature = signature or f"{name}(key, x, {rate_name})"
    check_argument_order(name, signature, "x", x, rate_name, rate)
    check_bool("deterministic", deterministic)
    rate = (check_rate if check is None else check)(rate_name, rate)
    _sampling.resolve_sampler(sampler)
    if key is not None:
        _sampling.check_key(key, f"; the signature is {signature}")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        hint = f" (a legacy PRNG key? the signature is {signature})" if x.dtype == np.uint32 else ""
        raise TypeError(f"{name}: x must be a real floating-point array, got dtype {x.dtype}{hint}")
    return x, rate


def result_without_sampling(
    name: str, key: Any, x: Any, rate: Any, deterministic: bool, *, one_drops_all: bool = True
) -> Any:
    """The shared second step: the op's result when no randomness is needed, else ``None``.

    ``x`` itself when ``deterministic`` or for a concrete zero ``rate`` (no key
    needed, no random work); otherwise a missing ``key`` raises; zeros for a
    concrete ``rate == 1`` (with ``one_drops_all``); ``None`` when the op must
    sample (``key`` is then present).
    """
    if check_bool("deterministic", deterministic) or is_zero(rate):
        return x
    require_key(key, name)
    if one_drops_all and is_one(rate):
        return jnp.zeros_like(x)
    return None


def keep_prob_of(rate: Any) -> Any:
    """``1 - rate``: a Python float for a concrete rate, a float32 array otherwise."""
    if is_concrete(rate):
        return 1.0 - float(rate)
    return 1.0 - jnp.asarray(rate, jnp.float32)


def safe_divide(x: jax.Array, q: Any, sampler: Sampler = None) -> jax.Array:
    """``x / q`` in ``x``'s dtype; ``x / 1`` where ``q == 0`` (then every element is dropped).

    The guard keeps the gradient NaN-free at a traced ``rate == 1``: the dropped
    branch of the select gets a zero cotangent, and ``0 * (1 / 0)`` would be NaN.

    With the fast sampler the division runs in float32 or wider and is rounded
    to ``x``'s dtype once, so half-precision inputs are scaled by ``1 / q`` up
    to one rounding of each product (not by ``1 / round(q)``, a bias of up to
    ``2**-9`` in bfloat16). ``sampler="jax"`` divides in ``x``'s dtype, as
    ``flax.linen.Dropout`` does, for bit-identical results.
    """
    return _divide(x, _divisor(q, x.dtype, sampler))


def _divisor(q: Any, dtype: Any, sampler: Sampler) -> jax.Array:
    """``safe_keep_prob(q)`` as an array of the dtype that `safe_divide` divides in."""
    qs = safe_keep_prob(q)
    wide = dtype if _sampling.resolve_sampler(sampler) == "jax" else acc_dtype(dtype)
    return jnp.asarray(qs, wide)


def _divide(x: jax.Array, divisor: jax.Array) -> jax.Array:
    if divisor.dtype == x.dtype:
        return x / divisor
    return (x.astype(divisor.dtype) / divisor).astype(x.dtype)


def zero_where_nothing_kept(q: Any, y: jax.Array) -> jax.Array:
    """Zeros if the keep probability actually used, ``q``, is 0; else ``y``.

    The one place every masking op (dropout, spatial dropout, drop path, alpha
    dropout) handles "rate effectively 1": ``rate == 1``, or a rate within
    ``2**-25`` of 1 that the fast sampler quantizes to ``q = 0``. ``y`` must be
    finite there (use `safe_keep_prob` for constants derived from ``1 / q``),
    so gradients stay NaN-free.
    """
    if is_concrete(q):
        return jnp.zeros_like(y) if float(q) == 0.0 else y
    return jnp.where(jnp.asarray(q) > 0, y, jnp.zeros_like(y))


def masked_shape(shape: Sequence[int], broadcast_dims: int | Sequence[int]) -> tuple[int, ...]:
    """``shape`` with 1 along ``broadcast_dims`` (axes along which the mask is shared).

    ``broadcast_dims`` is an int or a sequence of ints (negative ones count from the end).
    """
    if isinstance(broadcast_dims, (int, np.integer)) and not isinstance(broadcast_dims, (bool, np.bool_)):
        broadcast_dims = (broadcast_dims,)
    elif not isinstance(broadcast_dims, Sequence) or isinstance(broadcast_dims, str):
        raise TypeError(f"broadcast_dims must be an int or a sequence of ints, got {broadcast_dims!r}")
    out = list(shape)
    for d in broadcast_dims:
        out[check_axis("broadcast_dims", d, len(shape), "x")] = 1
    return tuple(out)


def apply_keep_mask(
    key: Any,
    x: jax.Array,
    rate: Any,
    mask_shape: tuple[int, ...],
    *,
    scale: bool,
    sampler: Sampler,
) -> jax.Array:
    """Zeroes ``x`` where a keep mask of ``mask_shape`` (broadcast to ``x``) is False.

    With ``scale=True`` kept values are divided by the keep probability the
    sampler actually used (unbiased). This is the core of ``dropout``,
    ``spatial_dropout`` and ``drop_path``.

    Called eagerly (no tracer among ``key``, ``x`` and ``rate``) the mask and
    the select run as one compiled kernel, as they do under ``jit``, so that
    XLA fuses them instead of writing the random words, the mask and the
    scaled input as separate arrays; the threshold and divisor enter it as
    arguments (the values the traced path uses), so new rates compile nothing.
    """
    sampler = _sampling.resolve_sampler(sampler)  # a name, no longer None
    threshold, q = _sampling.keep_threshold(keep_prob_of(rate), sampler)
    divisor = _divisor(q, x.dtype, sampler) if scale else None
    if is_concrete(q) and not isinstance(x, Tracer) and not isinstance(key, Tracer):
        if float(q) == 0.0:
            return jnp.zeros_like(x)
        threshold = jnp.asarray(threshold) if sampler == "jax" else jnp.asarray(threshold, jnp.uint32)
        return _masked_select_kernel(key, x, threshold, divisor, mask_shape, sampler)
    return zero_where_nothing_kept(q, _masked_select(key, x, threshold, divisor, mask_shape, sampler))


def _masked_select(
    key: Any, x: jax.Array, threshold: Any, divisor: Any, mask_shape: tuple[int, ...], sampler: Sampler
) -> jax.Array:
    keep = jnp.broadcast_to(_sampling.keep_mask_at(key, mask_shape, threshold, sampler), x.shape)
    kept = x if divisor is None else _divide(x, divisor)
    return lax.select(keep, kept, jnp.zeros_like(x))


_masked_select_kernel = jax.jit(_masked_select, static_argnums=(4, 5))


def zero_where_rate_is_one(rate: Any, y: jax.Array) -> jax.Array:
    """``0`` where a traced ``rate`` equals 1, else ``y`` (``y`` must be finite there)."""
    if is_concrete(rate):
        return y
    return jnp.where(jnp.asarray(rate) < 1, y, jnp.zeros_like(y))


def safe_keep_prob(q: Any) -> Any:
    """``q``, or 1 where ``q == 0``, so that constants derived from ``1 / q`` stay finite."""
    if is_concrete(q):
        return q if q > 0 else 1.0
    return jnp.where(q > 0, q, 1.0)
