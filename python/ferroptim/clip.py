"""Gradient clipping in place, with torch.nn.utils' rules; the arithmetic runs in Rust."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Sequence, Union

import numpy as np

from . import _core
from ._checks import real

GradsLike = Union[np.ndarray, Sequence[np.ndarray], Mapping[Any, np.ndarray]]

__all__ = ["clip_grad_norm", "clip_grad_value"]


def _as_list(grads: GradsLike) -> list:
    if isinstance(grads, np.ndarray):
        return [grads]
    if isinstance(grads, Mapping):
        return list(grads.values())
    return list(grads)


def clip_grad_norm(
    grads: GradsLike, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> float:
    r"""Scales the gradients in place so that their global norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: with ``N`` the norm of all gradients together
    (as if concatenated into one vector)::

        N = (sum_i |g_i| ** norm_type) ** (1 / norm_type)      # max |g_i| for inf
        g *= min(1, max_norm / (N + 1e-6))

    The norm is one Rust pass over all gradients, summed in float64 in a fixed order, so it
    is identical whatever the thread count.

    Args:
        grads: an array, or a list / dict of arrays (float32 or float64, C-contiguous,
            writeable); modified in place.
        max_norm: the largest allowed norm, in gradient units (>= 0).
        norm_type: the order of the norm (> 0, or ``float("inf")`` for the max norm).
        error_if_nonfinite: raise ``FloatingPointError`` (before modifying anything) when
            the norm is NaN or infinite; otherwise, as torch, the gradients are scaled anyway.

    Returns:
        The norm before clipping, as a Python float.

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> g = [np.array([3.0, 0.0]), np.array([4.0])]
        >>> fo.clip_grad_norm(g, max_norm=1.0)
        5.0
        >>> [np.round(x, 6) for x in g]
        [array([0.6, 0. ]), array([0.8])]
    """
    max_norm = real("max_norm", max_norm, low=0.0)
    arrays = _as_list(grads)
    total = _core.clip_grad_norm_(arrays, max_norm, float(norm_type), bool(error_if_nonfinite))
    if error_if_nonfinite and not math.isfinite(total):
        raise FloatingPointError(
            f"the total norm of order {norm_type} of the gradients is {total}; nothing was "
            "changed (pass error_if_nonfinite=False to scale anyway)"
        )
    return total


def clip_grad_value(grads: GradsLike, clip_value: float) -> None:
    r"""Clamps every gradient element in place to ``[-clip_value, clip_value]``.

    As ``torch.nn.utils.clip_grad_value_``: ``g = min(max(g, -clip_value), clip_value)``;
    NaN stays NaN.

    Args:
        grads: an array, or a list / dict of arrays (float32 or float64, C-contiguous,
            writeable); modified in place.
        clip_value: the bound, in gradient units (>= 0).

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> g = np.array([-3.0, 0.5, 2.0])
        >>> fo.clip_grad_value(g, 1.0)
        >>> g
        array([-1. ,  0.5,  1. ])
    """
    if not (math.isfinite(clip_value) and clip_value >= 0):
        raise ValueError(f"clip_value must be a finite number >= 0, got {clip_value}")
    _core.clamp_(_as_list(grads), -float(clip_value), float(clip_value))
