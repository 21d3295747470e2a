"""Muon with torch.optim.Muon's algorithm, names, defaults and state, for 2-D arrays."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import _core
from .._checks import count, flag, real
from .groups import _check_grads
from .pertensor import _PerTensor

_ADJUST_LR_FNS = (None, "original", "match_rms_adamw", "spectral_unclamped")
_NS_DTYPES = ("bfloat16", "float32")


def _check_hyper(g: Mapping, gi: int) -> dict:
    """The step's hyper-parameters of group ``gi``, checked (an error naming the entry)."""
    where = f"param_groups[{gi}]"
    for k in ("lr", "weight_decay", "momentum", "nesterov", "ns_coefficients", "eps", "ns_steps"):
        if k not in g:
            raise ValueError(f"{where} lacks {k!r}")
    coefficients = g["ns_coefficients"]
    if not isinstance(coefficients, (tuple, list)) or len(coefficients) != 3:
        raise ValueError(
            f"{where}: ns_coefficients must be a tuple of 3 numbers (a, b, c), got {coefficients!r}"
        )
    ns_steps = count(f"{where}: ns_steps", g["ns_steps"])
    if ns_steps >= 100:
        raise ValueError(f"{where}: ns_steps must be < 100 (torch's limit), got {ns_steps}")
    adjust = g.get("adjust_lr_fn")
    if adjust not in _ADJUST_LR_FNS:
        raise ValueError(
            f"{where}: adjust_lr_fn must be None, 'original', 'match_rms_adamw' or 'spectral_unclamped', got {adjust!r}"
        )
    ns_dtype = g.get("ns_dtype", "bfloat16")
    if ns_dtype not in _NS_DTYPES:
        raise ValueError(f"{where}: ns_dtype must be 'bfloat16' or 'float32', got {ns_dtype!r}")
    return {
        "lr": real(f"{where}: lr", g["lr"], low=0.0),
        "weight_decay": real(f"{where}: weight_decay", g["weight_decay"], low=0.0),
        "momentum": real(f"{where}: momentum", g["momentum"], low=0.0),
        "nesterov": flag(f"{where}: nesterov", g["nesterov"]),
        "ns_coefficients": [real(f"{where}: ns_coefficients[{i}]", c) for i, c in enumerate(coefficients)],
        "eps": real(f"{where}: eps", g["eps"], low=0.0, low_open=True),
        "ns_steps": ns_steps,
        "adjust_lr_fn": adjust,
        "ns_dtype": ns_dtype,
    }


class Muon(_PerTensor):
    """Muon (torch.optim.Muon): momentum orthogonalized by Newton–Schulz iterations, for 2-D
    parameters (the weight matrices of hidden layers; give biases and embeddings to AdamW).

    Per step, for each parameter ``p`` (shape ``(A, B)``) with gradient ``g``::

        buf = buf + (1 - momentum) (g - buf)                 # buf.lerp_(g, 1 - momentum)
        u   = g + momentum (buf - g)  if nesterov else buf   # g.lerp(buf, momentum)
        O   = NS(u)                                          # ns_steps iterations, below
        p   = p (1 - lr weight_decay) - adjusted_lr O

    ``NS``: ``X = u / max(||u||_F, eps)`` (transposed so that it is wide), then
    ``ns_steps`` times ``G = X X^T; X = a X + (b G + c G G) X`` with ``(a, b, c) =
    ns_coefficients``: it pushes the singular values of ``X`` towards 1 (into about
    (0.5, 1.5) with the default coefficients). ``adjusted_lr`` is ``lr sqrt(max(1, A/B))``
    (``adjust_lr_fn=None`` or ``"original"``), ``0.2 lr sqrt(max(A, B))``
    (``"match_rms_adamw"``) or ``lr sqrt(A/B)`` (``"spectral_unclamped"``).

    Args:
        params: writeable C-contiguous 2-D float32 or float64 arrays (a list, a dict, or a
            list of param-group dicts); other shapes are refused, as torch does.
        lr: learning rate (default 1e-3), >= 0.
        weight_decay: decoupled weight decay (default 0.1), >= 0.
        momentum: decay of the momentum buffer (default 0.95), >= 0.
        nesterov: Nesterov momentum (default True).
        ns_coefficients: ``(a, b, c)`` (default Keller Jordan's (3.4445, -4.7750, 2.0315)).
        eps: floor of the norm ``X`` is divided by (default 1e-7), > 0.
        ns_steps: Newton–Schulz iterations (default 5), in [0, 100).
        adjust_lr_fn: None, ``"original"``, ``"match_rms_adamw"`` or
            ``"spectral_unclamped"``.
        ns_dtype: ``"bfloat16"`` (default, torch's: every intermediate of the iteration is
            rounded to bfloat16 where torch rounds it; products summed in float32) or
            ``"float32"`` (float32 throughout: about 2**-16 times the rounding error).
            The GIL is released for the products: in bfloat16 by a bfloat16 kernel summing
            in float32 (AVX-512 BF16 where the CPU has it), in float32 by the gemm of
            ``ferroptim.nn``.

    State: ``momentum_buffer`` per parameter (its dtype), created at its first step.

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> W = np.ones((4, 3), dtype=np.float32)
        >>> opt = fo.Muon([W], lr=0.02)
        >>> opt.step([np.eye(4, 3, dtype=np.float32)])
        >>> W.shape
        (4, 3)
    """

    _name = "Muon"
    _state_keys = ("momentum_buffer",)

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (3.4445, -4.7750, 2.0315),
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        *,
        ns_dtype: str = "bfloat16",
    ):
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_coefficients": ns_coefficients,
            "eps": eps,
            "ns_steps": ns_steps,
            "adjust_lr_fn": adjust_lr_fn,
            "ns_dtype": ns_dtype,
        }
        super().__init__(params, defaults)

    def _check_hyper(self, g: Mapping, gi: int) -> dict:
        return _check_hyper(g, gi)

    def _check_param(self, a: np.ndarray, name: str) -> None:
        if a.ndim != 2:
            raise ValueError(
                f"Muon only supports 2D parameters whereas we found a parameter with size: {a.shape} ({name})"
            )

    def step(self, grads: Any) -> None:
        """Updates every parameter in place from its gradient.

        Args:
            grads: one gradient per parameter (its shape and dtype): a list in parameter
                order, or a dict keyed like the parameters. Only read.

        Raises:
            TypeError / ValueError: a gradient is missing, extra, of the wrong type, dtype
                or shape, or shares memory with a parameter; or a hyper-parameter is out of
                range. Nothing is modified.
        """
        arrays = self._arrays()
        hypers = [self._check_hyper(g, gi) for gi, g in enumerate(self.param_groups)]
        checked = _check_grads(grads, self._keys, arrays, self._names)
        i = 0
        for h, ps in zip(hypers, self._param_lists):
            for p in ps:
                s = self._state.get(i)
                if s is None:
                    s = self._state[i] = {"momentum_buffer": np.zeros_like(p)}
                _core.muon_step(p, checked[i], s["momentum_buffer"], **h)
                i += 1
