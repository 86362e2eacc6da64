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
