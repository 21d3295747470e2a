"""State dtypes: the element type of an optimizer's state buffers (``state_dtype=``) and the
conversion of saved 16-bit state (float, ``ml_dtypes.bfloat16`` or uint16 bits) to what the
engine takes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .base import DtypeLike

_STATE_DTYPES = ("float32", "float64", "bfloat16", "float16")


def _ml_bfloat16() -> np.dtype | None:
    """``ml_dtypes.bfloat16`` as a NumPy dtype, or None when ml_dtypes is not installed."""
    try:
        import ml_dtypes
    except ImportError:
        return None
    return np.dtype(ml_dtypes.bfloat16)


def _state_dtype_name(value: DtypeLike) -> str | None:
    """``state_dtype`` as one of ``_STATE_DTYPES`` (or None), from a name or a dtype."""
    if value is None:
        return None
    if isinstance(value, str):
        name = value
    else:
        try:
            name = np.dtype(value).name
        except TypeError:
            raise TypeError(
                f"state_dtype must be None, a dtype name or a dtype, got {type(value).__name__}"
            ) from None
    if name not in _STATE_DTYPES:
        raise ValueError(f"state_dtype must be None or one of {_STATE_DTYPES}, got {value!r}")
    return name


def _state_dtype_of(option: str | None, param: np.ndarray) -> str:
    """The state dtype a parameter gets: ``option``, else float64 for float64 parameters and
    float32 for the others (16-bit parameters are computed in float32)."""
    if option is not None:
        return option
    return "float64" if param.dtype == np.float64 else "float32"


def _to_state_array(a: np.ndarray, target: str, saved: str, where: str) -> np.ndarray:
    """A saved buffer as the engine takes it for state of dtype ``target``: float32/float64
    as such, 16-bit state as uint16 bit patterns (or float32, which the engine rounds).
    ``a`` may be a float array, an ``ml_dtypes.bfloat16`` array, or uint16 bit patterns of
    the ``saved`` state dtype."""
    if a.dtype == np.uint16:
        if saved == target:
            return np.ascontiguousarray(a)
        if saved == "float16":
            a = a.view(np.float16)
        elif saved == "bfloat16":
            a = (a.astype(np.uint32) << 16).view(np.float32)  # exact: bfloat16 is float32's top half
        else:
            raise ValueError(
                f"{where} is uint16, but uint16 state holds float16 or bfloat16 bits; got {saved} state"
            )
    elif a.dtype.name == "bfloat16" and a.dtype.itemsize == 2:
        a = a.view(np.uint16) if target == "bfloat16" else a.astype(np.float32)
        if target == "bfloat16":
            return np.ascontiguousarray(a)
    elif a.dtype.kind != "f":
        raise ValueError(f"{where} must be a float, bfloat16 or uint16 array, got {a.dtype}")
    if target == "float16":
        return np.ascontiguousarray(a, dtype=np.float16).view(np.uint16)
    if target == "bfloat16":
        return np.ascontiguousarray(a, dtype=np.float32)
    return np.ascontiguousarray(a, dtype=target)
