"""One place that validates hyperparameters given as Python numbers.

Checks run only on values known at trace time (Python numbers and NumPy
scalars). Traced JAX values and optax schedules pass through untouched so that
every function stays usable under ``jax.jit`` and ``optax.inject_hyperparams``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import numpy as np


def _concrete_float(name: str, value: Any) -> float | None:
    """Returns ``value`` as a float if it is a concrete number, else ``None``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number, got the bool {value!r}")
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (np.ndarray, np.generic)):
        if np.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar, got an array of shape {np.shape(value)}")
        return float(value)
    if isinstance(value, jax.Array):
        if value.ndim != 0:
            raise ValueError(f"{name} must be a scalar, got an array of shape {value.shape}")
        return None  # possibly traced: never inspected in Python
    raise TypeError(f"{name} must be a number, a JAX scalar or an optax schedule, got {value!r}")


def check_non_negative(name: str, value: Any) -> None:
    """Raises if a concrete ``value`` is negative, NaN or infinite."""
    if callable(value):
        return
    v = _concrete_float(name, value)
    if v is not None and (not math.isfinite(v) or v < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def check_positive(name: str, value: Any) -> None:
    """Raises if a concrete ``value`` is not a finite number > 0."""
    if callable(value):
        return
    v = _concrete_float(name, value)
    if v is not None and (not math.isfinite(v) or v <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")


def check_rate(name: str, value: Any) -> None:
    """Raises if a concrete probability ``value`` lies outside [0, 1] or is NaN."""
    v = _concrete_float(name, value)
    if v is not None and not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")


def check_axis(name: str, axis: int, ndim: int, where: str = "") -> int:
    """Returns ``axis`` normalized to [0, ndim), raising if it is out of range."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {axis!r}")
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
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise TypeError(f"{name} must be an int, a tuple of ints or None, got {axis!r}")
    if ndim is None:
        return tuple(int(a) for a in axes)
    if any(not -ndim <= a < ndim for a in axes):
        suffix = f" of {where}" if where else ""
        raise ValueError(f"{name}={axis!r} is out of range for the {ndim}-D array{suffix}")
    normalized = tuple(int(a) % ndim for a in axes)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"{name}={axis!r} repeats an axis")
    return normalized


def check_less_equal(name_lo: str, lo: Any, name_hi: str, hi: Any) -> None:
    """Raises if concrete ``lo`` and ``hi`` have ``lo > hi`` (schedules and traced values pass)."""
    if callable(lo) or callable(hi):
        return
    a, b = _concrete_float(name_lo, lo), _concrete_float(name_hi, hi)
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
