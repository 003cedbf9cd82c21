"""Argument validation shared by the public functions.

Every public entry point validates its *concrete* arguments here so that bad input fails at the call with a
message naming the argument and the allowed values -- not as a NaN or a reshape error three layers later.
Traced values (under jit/vmap) cannot be inspected and are passed through; their contracts are documented.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np


def concrete_float(value: Any, name: str) -> Optional[float]:
    """``float(value)`` if ``value`` is concrete, else ``None`` (a tracer under jit/vmap)."""
    if isinstance(value, jax.core.Tracer):
        return None
    try:
        arr = np.asarray(value)
    except Exception as err:  # pragma: no cover - defensive
        raise TypeError(f"{name} must be a real scalar, got {value!r}") from err
    if arr.ndim != 0:
        return None  # arrays of hyperparameters (e.g. per-layer) are checked element-wise by callers
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"{name} must be a real scalar, got {value!r}")
    return float(arr)


def check_in_range(value: Any, name: str, low: float, high: float, *, low_open: bool = False,
                   high_open: bool = False) -> Any:
    """Raise ``ValueError`` unless a concrete ``value`` lies in the interval; tracers pass unchecked."""
    v = concrete_float(value, name)
    if v is None:
        if not isinstance(value, jax.core.Tracer):
            arr = np.asarray(value)
            for item in arr.ravel():
                check_in_range(item, name, low, high, low_open=low_open, high_open=high_open)
        return value
    lo_ok = v > low if low_open else v >= low
    hi_ok = v < high if high_open else v <= high
    if math.isnan(v) or not (lo_ok and hi_ok):
        lb = "(" if low_open else "["
        rb = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lb}{low}, {high}{rb}, got {value!r}")
    return value


def noise_is_on(x: Any, rate: Any, key: Any, train: Any, what: str = "") -> bool:
    """The checks every noise layer (dropout, DropConnect, Gaussian dropout) makes: ``train`` a Python bool, a
    concrete ``rate`` in [0, 1], then -- unless the call is the identity (eval mode or a concrete rate 0, when
    this returns ``False``) -- a key and a floating-point ``x``. ``what`` prefixes the messages."""
    prefix = f"{what}: " if what else ""
    if not isinstance(train, bool):
        raise TypeError(f"train must be a Python bool (static under jit), got {type(train).__name__}")
    check_in_range(rate, "rate", 0.0, 1.0)
    if not train or concrete_float(rate, "rate") == 0.0:
        return False
    if key is None:
        raise ValueError(f"{prefix}key is required when train=True and rate > 0 (pass a fresh jax.random key)")
    dtype = jnp.asarray(x).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{prefix}x must be a floating-point array, got dtype {dtype}")
    return True


def check_nonnegative(value: Any, name: str) -> Any:
    """``check_in_range(value, name, 0, inf)``: finite and ``>= 0`` (tracers pass unchecked)."""
    return check_in_range(value, name, 0.0, math.inf, high_open=True)


def label_out_of_range(labels: Any, num_classes: int) -> Optional[int]:
    """The first offending label of an integer array that must lie in ``[0, num_classes)`` (the smallest if
    any is negative, else the largest), or ``None`` when all are in range."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return None
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        return low
    return high if high >= num_classes else None


def as_count(value: Any, name: str, minimum: int = 1) -> int:
    """``int(value)`` for a Python or NumPy integer ``>= minimum``; anything else is a ``ValueError``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
