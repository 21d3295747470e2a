"""Adafactor with torch.optim.Adafactor's algorithm, names, defaults and state."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import _core
from .._checks import flag, real
from .pertensor import _PerTensor


def _check_hyper(g: Mapping, gi: int) -> dict:
    """The step's hyper-parameters of group ``gi``, checked as torch checks them (an error
    naming the entry); ``eps1`` is None or a number."""
    where = f"param_groups[{gi}]"
    for k in ("lr", "beta2_decay", "eps", "d", "weight_decay", "maximize"):
        if k not in g:
            raise ValueError(f"{where} lacks {k!r}")
    eps = g["eps"]
    if not isinstance(eps, (tuple, list)) or len(eps) != 2:
        raise ValueError(f"{where}: eps must be a pair (eps1 or None, eps2), got {eps!r}")
    foreach = g.get("foreach")
    if foreach is not None:
        flag(f"{where}: foreach", foreach)
    return {
        "lr": real(f"{where}: lr", g["lr"], low=0.0),
        "beta2_decay": real(f"{where}: beta2_decay", g["beta2_decay"], high=0.0),
        "eps1": None if eps[0] is None else real(f"{where}: eps[0] (epsilon1)", eps[0], low=0.0),
        "eps2": real(f"{where}: eps[1] (epsilon2)", eps[1], low=0.0),
        "d": real(f"{where}: d (the clipping threshold)", g["d"], low=1.0),
        "weight_decay": real(f"{where}: weight_decay", g["weight_decay"], low=0.0),
        "maximize": flag(f"{where}: maximize", g["maximize"]),
        "foreach": bool(foreach),
    }


def _state_shapes(shape: tuple) -> dict[str, tuple]:
    """torch's state shapes for a parameter of ``shape``: the row and column EWAs of a
    parameter with 2 or more dimensions (the last, resp. second-to-last, dimension 1), else
    the variance."""
    if len(shape) < 2:
        return {"variance": shape}
    return {"row_var": (*shape[:-1], 1), "col_var": (*shape[:-2], 1, shape[-1])}


class Adafactor(_PerTensor):
    """Adafactor (torch.optim.Adafactor): Adam's second moment, factored for matrices, with a
    step size relative to the parameter's scale and the update's RMS clipped.

    Per step ``t`` (1, 2, ...), for each parameter ``p`` with gradient ``g`` (``-g`` with
    ``maximize``)::

        rho   = min(lr, 1 / sqrt(t))
        alpha = max(eps2, RMS(p)) rho                     # RMS(x) = ||x|| / sqrt(x.size)
        p     = p (1 - lr weight_decay)
        w     = t ** beta2_decay                          # 1 - beta2_t
        # p with 2 or more dimensions (..., m, n): row and column EWAs of g**2's means
        R = (1 - w) R + w mean(g**2, axis=-1)             # shape (..., m, 1): row_var
        C = (1 - w) C + w mean(g**2, axis=-2)             # shape (..., 1, n): col_var
        V = R C / max(mean(R, axis=-2), eps1)
        # p a vector or scalar
        V = (1 - w) V + w g**2                            # variance
        U = g / sqrt(max(V, eps1**2))
        p = p - alpha / max(1, RMS(U) / d) U

    (the EWAs are torch's ``lerp_``). A ``(m, n)`` matrix keeps ``m + n`` state numbers
    instead of Adam's ``2 m n``.

    Args:
        params: writeable C-contiguous float32 or float64 arrays of any shape, none empty
            (a list, a dict, or a list of param-group dicts).
        lr: the cap of the relative step size ``rho`` and the weight-decay coefficient
            (default 1e-2), >= 0.
        beta2_decay: the exponent of ``t`` giving the EWAs' weight (default -0.8), <= 0.
        eps: ``(eps1, eps2)`` (default ``(None, 1e-3)``): ``eps1`` (>= 0) floors the row
            mean and ``sqrt(V)``; None is the machine epsilon of the group's first
            parameter's dtype (``np.finfo(dtype).eps``), as torch picks it. ``eps2``
            (>= 0) floors the parameter RMS that scales the step.
        d: the update's RMS limit (default 1.0), >= 1.
        weight_decay: decoupled weight decay (default 0.0), >= 0.
        foreach: None or False (default): torch's single-tensor path, each update added
            with one fused multiply-add; True: torch's foreach path, the scaled update
            rounded before it is added (the two differ by float rounding).
        maximize: ascend instead of descend (default False).

    Matches torch's CPU results bit for bit as measured on an AVX2 machine, float32 and
    float64 (tests/test_adafactor.py), except where torch splits a reduction across its
    threads (the mean of ``row_var`` over 32768 rows or more: there to float rounding, a few
    ulps of the parameter per step) and on AVX-512 machines (torch's sums then run in 16
    lanes: to float rounding).

    State per parameter, torch's names and shapes: ``step`` (torch's float32 counter, as a
    float), and ``row_var`` and ``col_var``, or ``variance``, in the parameter's dtype.

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> W, b = np.ones((4, 3), dtype=np.float32), np.zeros(4, dtype=np.float32)
        >>> opt = fo.Adafactor([W, b])
        >>> opt.step([np.full((4, 3), 0.5, np.float32), np.ones(4, np.float32)])
        >>> sorted(opt.state[0]), opt.state[0]["row_var"].shape
        (['col_var', 'row_var', 'step'], (4, 1))
    """

    _name = "Adafactor"

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
    ):
        defaults = {
            "lr": lr,
            "beta2_decay": beta2_decay,
            "eps": eps,
            "d": d,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _check_hyper(self, g: Mapping, gi: int) -> dict:
        return _check_hyper(g, gi)

    def _normalize(self, g: dict) -> None:
        if isinstance(g.get("eps"), list):
            g["eps"] = tuple(g["eps"])

    def _check_param(self, a: np.ndarray, name: str) -> None:
        if a.size == 0:
            raise ValueError(f"parameter {name} is empty; Adafactor divides by its size, as torch's does")

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
        arrays = self._step_arrays()
        hypers = self._hypers()
        grads = self._grad_list(grads, len(arrays))
        groups, cache = [], self._group_args
        if len(cache) != len(hypers):
            cache[:] = [None] * len(hypers)
        for gi, (h, ps) in enumerate(zip(hypers, self._param_lists)):
            c = cache[gi]
            if c is None or c[0] is not h:
                # torch resolves eps1=None once per group, from its first parameter's dtype
                eps1 = float(np.finfo(ps[0].dtype).eps) if h["eps1"] is None else h["eps1"]
                args = (h["lr"], h["beta2_decay"], eps1, h["eps2"], h["d"], h["weight_decay"])
                c = cache[gi] = (h, (len(ps), (*args, float(h["maximize"]), float(h["foreach"]))))
            groups.append(c[1])
        states, new = self._step_states(arrays)
        lists = self._lists
        if lists is None or lists[0] is not states:
            lists = self._lists = (
                states,
                [s.get("variance") for s in states],
                [s.get("row_var") for s in states],
                [s.get("col_var") for s in states],
            )
        # torch's float32 step counters, each incremented (the parameters of a group share
        # one counter object, so that the increment is computed once per value)
        steps, ts, memo = [], [], self._step_memo
        for s in states:
            old = s["step"]
            if memo[0] is not old:
                new_step = np.float32(old + np.float32(1.0))
                memo = (old, new_step, float(new_step))
            steps.append(memo[1])
            ts.append(memo[2])
        self._step_memo = memo
        _core.adafactor_steps(arrays, grads, ts, lists[1], lists[2], lists[3], self._names, groups)
        self._commit_states(states, new)
        for s, step in zip(states, steps):
            s["step"] = step

    _lists: tuple | None = None  # the state dicts the step's lists were made from, the lists
    _step_memo: tuple = (None, None, None)  # a step counter, the next one and it as a float

    def _step_cache_clear(self) -> None:
        super()._step_cache_clear()
        # per group: its checked options and the step's arguments made from them
        self._group_args: list[tuple | None] = []

    def _new_state(self, param: np.ndarray) -> dict[str, Any]:
        s: dict[str, Any] = {"step": np.float32(0.0)}
        s.update({k: np.zeros(shape, param.dtype) for k, shape in _state_shapes(param.shape).items()})
        return s

    def _copy_state(self, s: dict) -> dict:
        return {k: float(v) if k == "step" else v.copy() for k, v in s.items()}

    def _load_state(self, s: Any, param: np.ndarray, name: str) -> dict[str, Any]:
        return _load_state(s, param, name)


def _load_state(s: Any, param: np.ndarray, name: str) -> dict[str, Any]:
    """One parameter's saved state, checked against torch's names and shapes and cast to the
    parameter's dtype."""
    shapes = _state_shapes(param.shape)
    if not isinstance(s, Mapping) or set(s) != {"step", *shapes}:
        raise ValueError(f"the state of {name} must have the entries {sorted(['step', *shapes])}")
    try:
        step = float(np.asarray(s["step"]))
    except (TypeError, ValueError):
        raise ValueError(f"step of {name} must be a number, got {type(s['step']).__name__}") from None
    if not (math.isfinite(step) and step >= 0 and np.float32(step) == step):
        raise ValueError(f"step of {name} must be a float32 count >= 0, got {step!r}")
    out: dict[str, Any] = {"step": np.float32(step)}
    for k, shape in shapes.items():
        a = np.asarray(s[k])
        if a.shape != shape or a.dtype.kind != "f":
            raise ValueError(f"{k} of {name} must be a float array of shape {shape}, got {a.dtype} {a.shape}")
        out[k] = np.array(a, dtype=param.dtype, order="C")
    return out
