"""One place that validates hyperparameters.

Checks run only on values known at trace time: Python numbers, NumPy scalars
and concrete (not traced) JAX scalars. Traced JAX values are never inspected, so
that every function stays usable under ``jax.jit`` and
``optax.inject_hyperparams``. Optax schedules (callables) pass where the caller
evaluates them at a step count (``allow_schedule=True``: the transforms) and
raise a ``TypeError`` naming the argument elsewhere (penalties, mixup, epsilons).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer


def as_float(value: Any) -> Any:
    """Python and NumPy integers (not bools) as a Python ``float``; any other value unchanged.

    Integers beyond the float range become ``inf`` with their sign.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        return value
    try:
        return float(value)
    except OverflowError:
        return math.inf if int(value) > 0 else -math.inf


def concrete_float(name: str, value: Any, allow_schedule: bool = False) -> float | None:
    """Returns ``value`` as a float if it is a concrete number, else ``None`` (traced, or a schedule)."""
    if callable(value):
        if allow_schedule:
            return None
        raise TypeError(f"{name} must be a number or a JAX scalar, not a schedule (callable), got {value!r}")
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number, got the bool {value!r}")
    if isinstance(value, numbers.Real):
        return float(as_float(value))
    if isinstance(value, (np.ndarray, np.generic)):
        if np.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar, got an array of shape {np.shape(value)}")
        return float(value)
    if isinstance(value, jax.Array):
        if value.ndim != 0:
            raise ValueError(f"{name} must be a scalar, got an array of shape {value.shape}")
        if isinstance(value, Tracer) or not value.is_fully_addressable:
            return None  # traced (or spread over processes): never inspected in Python
        return float(value)  # concrete: one scalar read, as for a NumPy scalar
    kinds = "a number, a JAX scalar or an optax schedule" if allow_schedule else "a number or a JAX scalar"
    raise TypeError(f"{name} must be {kinds}, got {value!r}")


def is_concrete(value: Any) -> bool:
    """True for scalars known at trace time: Python and NumPy numbers, and concrete JAX scalars.

    The one notion of "concrete" in jaxreg (the one the checks below use), so
    ``jnp.float32(0.0)`` counts as a known zero while a traced value never does.
    """
    try:
        return concrete_float("value", value) is not None
    except (TypeError, ValueError):  # bools, arrays, non-numbers: never treated as known scalars
        return False


def is_zero(value: Any) -> bool:
    """True only for a concrete 0 (a traced value is never known to be zero)."""
    return is_concrete(value) and float(value) == 0.0


def is_one(value: Any) -> bool:
    """True only for a concrete 1 (a traced value is never known to be one)."""
    return is_concrete(value) and float(value) == 1.0


def check_non_negative(name: str, value: Any, *, allow_schedule: bool = False) -> Any:
    """Raises if a concrete ``value`` is negative, NaN or infinite (or a callable, unless allowed).

    Returns ``as_float(value)``.
    """
    v = concrete_float(name, value, allow_schedule)
    if v is not None and (not math.isfinite(v) or v < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return as_float(value)


def check_positive(name: str, value: Any, *, allow_schedule: bool = False) -> Any:
    """Raises if a concrete ``value`` is not a finite number > 0 (or a callable, unless allowed).

    Returns ``as_float(value)``.
    """
    v = concrete_float(name, value, allow_schedule)
    if v is not None and (not math.isfinite(v) or v <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return as_float(value)


def check_rate(name: str, value: Any, *, allow_schedule: bool = False) -> Any:
    """Raises if a concrete probability ``value`` is outside [0, 1] or NaN (or a callable, unless allowed).

    Returns ``as_float(value)``.
    """
    v = concrete_float(name, value, allow_schedule)
    if v is not None and not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return as_float(value)


def _reject_array_axis(name: str, axis: Any) -> None:
    # optax.inject_hyperparams turns every int argument into a JAX array (a tracer under jit),
    # which cannot select axes: point at its static_args.
    if isinstance(axis, (jax.Array, np.ndarray)):
        raise TypeError(
            f"{name} must be a Python int, not an array (got {axis!r}); "
            f"with optax.inject_hyperparams pass static_args=({name!r},)"
        )


def check_axis(name: str, axis: int, ndim: int | None = None, where: str = "") -> int:
    """Returns ``axis`` normalized to [0, ndim), raising if it is out of range.

    With ``ndim=None`` only the type is checked (a Python or NumPy int) and
    ``int(axis)`` is returned.
    """
    _reject_array_axis(name, axis)
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {axis!r}")
    if ndim is None:
        return int(axis)
    if not -ndim <= axis < ndim:
        suffix = f" of {where}" if where else ""
        raise ValueError(f"{name}={axis} is out of range for the {ndim}-D array{suffix}")
    return int(axis) % ndim


def check_axes(name: str, axis: Any, ndim: int | None = None, where: str = "") -> tuple[int, ...] | None:
    """Checks an axis spec (an int, a sequence of ints, or ``None`` for all axes).

    Returns the axes as a tuple (normalized to [0, ndim) and checked for range and
    duplicates when ``ndim`` is given), or ``None`` for ``None``.
    """
    if axis is None:
        return None
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    for a in axes:
        _reject_array_axis(name, a)
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise TypeError(f"{name} must be an int, a tuple of ints or None, got {axis!r}")
    if ndim is None:
        return tuple(int(a) for a in axes)
    if any(not -ndim <= a < ndim for a in axes):
        suffix = f" of {where}" if where else ""
        raise ValueError(f"{name}={axis!r} is out of range for the {ndim}-D array{suffix}")
    normalized = tuple(int(a) % ndim for a in axes)
    if len(set(normalized)) != len(normalized):
        suffix = f" of {where}" if where else ""
        raise ValueError(f"{name}={axis!r} repeats an axis of the {ndim}-D array{suffix}")
    return normalized


def check_group_axes(name: str, axis: Any, ndim: int | None = None, where: str = "") -> tuple[int, ...]:
    """Checks the axes that index groups (group lasso): an int or a tuple (or list) of ints, never ``None``.

    Returns them as a tuple, normalized to [0, ndim) when ``ndim`` is given (negative axes
    count from the end); raises a ``TypeError`` for any other type and a ``ValueError`` for an
    axis out of range or repeated (``(0, 0)`` at once, ``(1, -1)`` once ``ndim`` says so).
    """
    _reject_array_axis(name, axis)
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    if any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in items):
        for a in items:
            _reject_array_axis(name, a)
        raise TypeError(f"{name} must be an int or a tuple of ints, got {axis!r}")
    if ndim is not None:
        return check_axes(name, axis, ndim, where) or ()
    axes = tuple(int(a) for a in items)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{name}={axis!r} repeats an axis")
    return axes


def check_less_equal(name_lo: str, lo: Any, name_hi: str, hi: Any, *, allow_schedule: bool = False) -> None:
    """Raises if concrete ``lo`` and ``hi`` have ``lo > hi`` (traced values, and allowed schedules, pass)."""
    a, b = concrete_float(name_lo, lo, allow_schedule), concrete_float(name_hi, hi, allow_schedule)
    if a is not None and b is not None and a > b:
        raise ValueError(f"{name_lo} must be <= {name_hi}, got {name_lo}={lo!r} > {name_hi}={hi!r}")


def check_ndim(name: str, x: Any, ndim: int, *, at_least: bool = False) -> None:
    """Raises if the array ``x`` does not have ``ndim`` dimensions (``>= ndim`` if ``at_least``)."""
    got = np.ndim(x)
    if got < ndim if at_least else got != ndim:
        need = f"at least {ndim}" if at_least else f"exactly {ndim}"
        raise ValueError(f"{name} must have {need} dimensions, got shape {np.shape(x)}")


def check_count(name: str, value: Any, minimum: int = 0) -> int:
    """Returns the Python int ``value``, raising unless it is an int ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_batch_dims(batch_dims: Any, x: Any, name: str, item_ndim: int = 2, *, exact: bool = False) -> int:
    """Returns ``batch_dims`` as a Python int, raising unless ``x`` is a stack of ``item_ndim``-D items.

    ``batch_dims`` must be an int ``>= 0`` (a ``TypeError`` or ``ValueError`` names it), and ``x``
    must have ``batch_dims + item_ndim`` dimensions (at least that many unless ``exact``): the
    leading ``batch_dims`` axes index the stack, the rest is one item (a matrix for
    ``item_ndim=2``). With ``batch_dims=0`` the error is :func:`check_ndim`'s.
    """
    batch_dims = check_count("batch_dims", batch_dims)
    if batch_dims == 0:
        check_ndim(name, x, item_ndim, at_least=not exact)
        return 0
    got, need = np.ndim(x), batch_dims + item_ndim
    if got < need if not exact else got != need:
        what = "exactly" if exact else "at least"
        item = f", then {what} {item_ndim} of each item" if item_ndim else ""
        raise ValueError(
            f"batch_dims={batch_dims} needs {name} with {what} {need} dimensions ({batch_dims} stacked "
            f"axes{item}), got shape {np.shape(x)}"
        )
    return batch_dims


def check_bool(name: str, value: Any) -> bool:
    """Returns ``value`` as a Python bool, raising unless it is a bool (Python, NumPy or a concrete JAX scalar).

    Flags such as ``deterministic`` choose the program at trace time: a string,
    a number or a traced value is an error, never a truthiness test.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, jax.Array) and value.dtype == np.bool_ and value.ndim == 0:
        if not isinstance(value, Tracer):
            return bool(value)
        raise TypeError(
            f"{name} must be a Python bool, got a traced value {value!r}: it selects the program at "
            "trace time, pass it as a static argument"
        )
    raise TypeError(f"{name} must be a bool, got {value!r}")


def check_float_array(name: str, x: Any) -> None:
    """Raises a ``TypeError`` naming ``name`` and the dtype unless the array ``x`` has a real floating dtype."""
    dtype = x.dtype if hasattr(x, "dtype") else jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name} must be a real floating-point array, got dtype {dtype}")


CONV_OPTIONS = ("strides", "padding", "input_dilation", "kernel_dilation", "feature_group_count")


def conv_layer_options(layer: Any, conv_type: type, type_name: str) -> dict[str, Any]:
    """The options of a Flax conv ``layer`` as :func:`jaxreg.conv_spectral_normalize` takes them, checked.

    For ``operator="conv"`` of the Flax ``SpectralNorm`` wrappers: ``layer`` must be
    a ``conv_type`` (called ``type_name`` in the message) without a mask. Flax's
    ``None`` strides and dilations mean 1.
    """
    if not isinstance(layer, conv_type):
        raise ValueError(
            f"operator='conv' needs an {type_name} layer (it takes the norm of the convolution), got a "
            f"{type(layer).__name__}; use operator='matrix' for other layers"
        )
    if layer.mask is not None:
        raise ValueError(
            f"operator='conv' does not support an {type_name} with a mask; use operator='matrix'"
        )
    options = {name: getattr(layer, name) for name in CONV_OPTIONS}
    return {name: 1 if value is None else value for name, value in options.items()}


def check_example_shape(u_shape: tuple[int, ...], input_shape: tuple[int, ...], remedy: str) -> None:
    """Raises unless ``input_shape`` ends with ``u_shape``, the input example a conv's ``u`` was made for."""
    if len(input_shape) < len(u_shape) or tuple(input_shape[len(input_shape) - len(u_shape) :]) != u_shape:
        raise ValueError(
            f"SpectralNorm(operator='conv') holds u for inputs of shape (..., {', '.join(map(str, u_shape))}): "
            f"the operator norm of a convolution depends on the input size, and u is one input example; got "
            f"an input of shape {tuple(input_shape)}. {remedy}, or use operator='matrix'"
        )
