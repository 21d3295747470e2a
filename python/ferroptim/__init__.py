"""ferroptim: the optimization algorithms of deep learning for NumPy arrays, in Rust.

Keep your NumPy forward/backward pass; hand your parameter and gradient arrays to an
optimizer with torch.optim's names and defaults::

    import numpy as np, ferroptim as fo
    params = {"W": np.zeros((3, 2)), "b": np.zeros(3)}
    opt = fo.Adam(params, lr=1e-3)
    opt.step({"W": dW, "b": db})        # updates params["W"], params["b"] in place

Feed it shuffled mini-batches, one pass per epoch::

    for Xb, Yb in fo.MiniBatches(X, Y, batch_size=1024, seed=0):
        ...

Exponentially weighted averages (``ewa``, ``moving_average``, the streaming ``EWA``, the
parameter average ``ParameterEMA``) and learning-rate schedules (``ferroptim.schedules``,
any of which an optimizer takes as ``lr``) share the optimizers' Rust core.

Threads and SIMD: large steps run on ``get_num_threads()`` threads (set with
``set_num_threads`` or ``FERROPTIM_NUM_THREADS``); kernels use the best instruction set
of the CPU (``simd_level()``; force one with ``FERROPTIM_SIMD=scalar|avx2|avx512``).
Results are bit-identical whatever the thread count and SIMD level.
"""

from . import data, nn, optim, schedules
from ._core import (
    get_num_threads,
    set_num_threads,
    set_simd_level,
    simd_level,
    supported_simd_levels,
)
from .averages import EWA, ParameterEMA, ewa, moving_average
from .batches import MiniBatches
from .clip import clip_grad_norm, clip_grad_value

# Every optimizer, by optim's ``__all__``: a new one needs no line here.
from .optim import *  # noqa: F403
from .wrappers import GradientAccumulation, Lookahead

try:
    from importlib.metadata import version as _version

    __version__ = _version("ferroptim")
except Exception:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0+unknown"

__all__ = [
    "clip_grad_norm",
    "clip_grad_value",
    "GradientAccumulation",
    "Lookahead",
    "ewa",
    "moving_average",
    "EWA",
    "ParameterEMA",
    "data",
    "nn",
    "schedules",
    "MiniBatches",
    "get_num_threads",
    "set_num_threads",
    "simd_level",
    "set_simd_level",
    "supported_simd_levels",
]
__all__ += optim.__all__
