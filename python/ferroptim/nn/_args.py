"""Argument checks of :mod:`ferroptim.nn`: integers, 64-bit counters and callback lists."""

from __future__ import annotations

import operator
from typing import Any


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        i = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if i < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {i}")
    return i


_U64_MAX = 2**64 - 1


def _count(name: str, value: Any) -> int:
    """A counter the core keeps in 64 bits: an int in [0, 2**64 - 1]."""
    i = _int(name, value, 0)
    if i > _U64_MAX:
        raise ValueError(f"{name} must be below 2**64, got {i}")
    return i


def _callables(name: str, value: Any) -> list:
    """``value`` as a list of callables: a list, tuple or other iterable of them."""
    if callable(value) or isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        hint = f" (pass [{name[:-1]}] for one)" if callable(value) else ""
        raise TypeError(f"{name} must be a list of callables, got {type(value).__name__}{hint}")
    out = list(value)
    for cb in out:
        if not callable(cb):
            raise TypeError(f"{name} must be callables, got {type(cb).__name__}")
    return out
