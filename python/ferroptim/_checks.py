"""Argument checks shared by the Python-side classes: a clear TypeError or ValueError that
names the argument, raised before anything is built or changed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float within the given bounds."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    too_low = low is not None and (v <= low if low_open else v < low)
    too_high = high is not None and (v >= high if high_open else v > high)
    if math.isfinite(v) and not too_low and not too_high:
        return v
    if low is not None and high is not None:
        expected = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        expected = f"{'>' if low_open else '>='} {low:g}"
    elif high is not None:
        expected = f"{'<' if high_open else '<='} {high:g}"
    else:
        expected = "finite"
    raise ValueError(f"{name} must be {expected}, got {value!r}")


def count(name: str, value: Any) -> int:
    """``value`` as an int >= 0."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def flag(name: str, value: Any) -> bool:
    """``value`` as a bool (only True or False are accepted)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return bool(value)


def number_type(name: str, value: Any) -> Any:
    """``value`` unchanged if the Rust core can read it as a float (it has ``__float__`` or
    ``__index__``), else a TypeError naming ``name``. PyO3 names the argument only in an
    exception note, which Python 3.9 and 3.10 do not show; the range is checked in Rust."""
    if not (hasattr(type(value), "__float__") or hasattr(type(value), "__index__")):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return value


def integer_type(name: str, value: Any) -> Any:
    """``value`` unchanged if the Rust core can read it as an integer (it has ``__index__``),
    else a TypeError naming ``name`` (see :func:`number_type`)."""
    if not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    return value
