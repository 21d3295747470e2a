"""Schedule-Free AdamW and SGD with the ``schedulefree`` package's algorithm, names, defaults
and state (``AdamWScheduleFree``, ``SGDScheduleFree``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import _core
from .._checks import count, flag, real
from .groups import _betas
from .pertensor import _PerTensor

# The per-group scalars the package keeps in each param group, with their start values.
_COUNTERS: dict[str, Any] = {
    "k": 0,
    "train_mode": False,
    "weight_sum": 0.0,
    "lr_max": -1.0,
    "scheduled_lr": 0.0,
}


class _ScheduleFree(_PerTensor):
    """What Schedule-Free AdamW and SGD share: param groups holding the package's
    per-group scalars, the ``y``/``x`` switch of :meth:`train` and :meth:`eval`, and the
    step's schedule."""

    _lists: tuple | None = None  # the state dicts the step's lists were made from, the lists

    def __init__(self, params: Any, defaults: dict[str, Any]):
        super().__init__(params, {**defaults, **_COUNTERS})

    def _normalize(self, g: dict) -> None:
        if "betas" in g:
            g["betas"] = _betas(g["betas"])

    # -- subclass hooks -------------------------------------------------------------------
    def _momentum(self, h: dict) -> float:
        raise NotImplementedError

    def _check_own(self, g: Mapping, where: str) -> dict:
        raise NotImplementedError

    # -------------------------------------------------------------------------------------
    def _check_hyper(self, g: Mapping, gi: int) -> dict:
        """Group ``gi``'s options and scalars, checked (an error naming the entry)."""
        where = f"param_groups[{gi}]"
        for k in ("lr", "weight_decay", "warmup_steps", "r", "weight_lr_power", *_COUNTERS):
            if k not in g:
                raise ValueError(f"{where} lacks {k!r}")
        foreach = g.get("foreach")
        if foreach is not None:
            flag(f"{where}: foreach", foreach)
        if callable(g["lr"]):  # a schedule, at the group's update number
            n = count(f"{where}: k", g["k"])
            lr = real(f"{where}: lr({n}), the schedule's value,", g["lr"](n), low=0.0)
        else:
            lr = real(f"{where}: lr", g["lr"], low=0.0)
        h = {
            "lr": lr,
            "weight_decay": real(f"{where}: weight_decay", g["weight_decay"], low=0.0),
            "warmup_steps": count(f"{where}: warmup_steps", g["warmup_steps"]),
            "r": real(f"{where}: r", g["r"]),
            "weight_lr_power": real(f"{where}: weight_lr_power", g["weight_lr_power"]),
            "k": count(f"{where}: k", g["k"]),
            "train_mode": flag(f"{where}: train_mode", g["train_mode"]),
            "weight_sum": real(f"{where}: weight_sum", g["weight_sum"], low=0.0),
            "lr_max": real(f"{where}: lr_max", g["lr_max"]),
        }
        h.update(self._check_own(g, where))
        return h

    def _switch(self, to_train: bool) -> None:
        self._arrays()
        hypers = self._hypers()
        i = 0
        for gi, (h, ps) in enumerate(zip(hypers, self._param_lists)):
            if h["train_mode"] != to_train:
                m = self._momentum(h)
                w = 1 - m if to_train else 1 - 1 / m
                for j, p in enumerate(ps):
                    s = self._state.get(i + j)
                    if s is not None:
                        _core.schedulefree_interpolate(p, s["z"], w)
                self._hyper_update(gi, {"train_mode": to_train}, {"train_mode": to_train})
            i += len(ps)

    def train(self) -> None:
        """Train mode: each stepped parameter is moved from ``x`` to ``y``,
        ``p = lerp(p, z, 1 - beta1)`` (``momentum`` for SGD), in the groups in eval mode.
        Call it before the first :meth:`step`."""
        self._switch(True)

    def eval(self) -> None:
        """Eval mode: each stepped parameter is moved from ``y`` to the average ``x``,
        ``p = lerp(p, z, 1 - 1/beta1)``, in the groups in train mode. Evaluate, and save
        checkpoints, in eval mode."""
        self._switch(False)

    def step(self, grads: Any) -> None:
        """Updates every parameter (holding ``y``) and its state in place from its gradient
        (taken at ``y``), and each group's ``k``, ``lr_max``, ``weight_sum`` and
        ``scheduled_lr``.

        Args:
            grads: one gradient per parameter (its shape and dtype): a list in parameter
                order, or a dict keyed like the parameters. Only read.

        Raises:
            RuntimeError: the optimizer is in eval mode (the first group's ``train_mode``),
                as the package refuses; call :meth:`train` first.
            TypeError / ValueError: a gradient is missing, extra, of the wrong type, dtype
                or shape, or shares memory with a parameter; or a hyper-parameter is out of
                range. Nothing is modified.
        """
        arrays = self._step_arrays()
        hypers = self._hypers()
        if not hypers[0]["train_mode"]:
            raise RuntimeError(
                f"{self._name} is not in train mode; call .train() before step() and .eval() "
                "before evaluating, as schedulefree's optimizers require"
            )
        grads = self._grad_list(grads, len(arrays))
        # every group's scalars first (Python doubles, the package's expressions), so that a
        # failure (an overflowing weight) changes nothing
        counters, scalars = [], []
        for g, h, ps in zip(self.param_groups, hypers, self._param_lists):
            k = h["k"]
            sched = (k + 1) / h["warmup_steps"] if k < h["warmup_steps"] else 1.0
            lr = h["lr"] * sched
            lr_max = max(lr, g["lr_max"])
            weight = ((k + 1) ** g["r"]) * (lr_max ** g["weight_lr_power"])
            weight_sum = g["weight_sum"] + weight
            try:
                ckp1 = weight / weight_sum
            except ZeroDivisionError:
                ckp1 = 0
            counters.append((k, lr, lr_max, weight_sum))
            scalars.append((len(ps), self._scalars(h, k, lr, ckp1)))
        states, new = self._step_states(arrays)
        # the checks of every array, then the step of every tensor, in one call
        self._step_all(arrays, grads, states, scalars)
        self._commit_states(states, new)
        for gi, (k, lr, lr_max, weight_sum) in enumerate(counters):
            entries = {"scheduled_lr": lr, "lr_max": lr_max, "weight_sum": weight_sum, "k": k + 1}
            finite = math.isfinite(weight_sum) and weight_sum >= 0
            checked = {"lr_max": float(lr_max), "weight_sum": float(weight_sum), "k": k + 1}
            self._hyper_update(gi, entries, checked if finite else None)

    # -- subclass hooks of the one-call step ----------------------------------------------
    def _scalars(self, h: dict, k: int, lr: float, ckp1: float) -> tuple:
        raise NotImplementedError

    def _step_all(self, arrays: list, grads: list, states: list[dict], scalars: list) -> None:
        raise NotImplementedError


class ScheduleFreeAdamW(_ScheduleFree):
    """Schedule-Free AdamW (``schedulefree.AdamWScheduleFree``, Defazio et al. 2024): AdamW
    without a learning-rate schedule; the model is evaluated at an average of the iterates.

    Each parameter keeps ``z`` (the base iterate) and, implicitly, ``x`` (the weighted
    average of the ``z``s); in train mode it holds ``y = (1 - beta1) z + beta1 x``, where
    the gradient ``g`` is taken; in eval mode (:meth:`eval`) it holds ``x``. A step of a
    group at its count ``k`` (0, 1, ...), the scalars in double precision::

        lr_k       = lr min(1, (k + 1) / warmup_steps)          # scheduled_lr
        lr_max     = max(lr_max, lr_k)
        weight     = (k + 1) ** r  lr_max ** weight_lr_power
        weight_sum = weight_sum + weight
        c_{k+1}    = weight / weight_sum                        # ckp1; 0 if weight_sum is 0
        v = beta2 v + ((1 - beta2) g) g                         # exp_avg_sq
        d = g / (sqrt(v / (1 - beta2 ** (k + 1))) + eps) + weight_decay y
        y = lerp(y, z, c_{k+1}) + lr_k (beta1 (1 - c_{k+1}) - 1) d   # lerp(a, b, w) = a + w (b - a)
        z = z - lr_k d
        # which is, with x never stored:
        # x = (1 - c_{k+1}) x + c_{k+1} z,  y = (1 - beta1) z + beta1 x

    Args:
        params: writeable C-contiguous float32 or float64 arrays (a list, a dict, or a
            list of param-group dicts).
        lr: the learning rate (default 0.0025), >= 0: parameter units per step, ``d``
            being about 1 per element; or a schedule, a callable ``k -> lr`` evaluated at
            the group's ``k`` before each step (as setting ``param_groups[i]["lr"]`` before
            each step would; the warmup multiplies it).
        betas: ``(beta1, beta2)`` (default ``(0.9, 0.999)``), unitless: ``beta1`` in (0, 1)
            the interpolation between ``z`` and ``x``, ``beta2`` in [0, 1) the second
            moment's EWA.
        eps: added to the root of the second moment (default 1e-8), >= 0, gradient units.
        weight_decay: L2 penalty taken at ``y`` (default 0), >= 0, per parameter unit.
        warmup_steps: linear warmup of the learning rate over this many steps (default 0),
            an integer >= 0.
        r: the power of ``k + 1`` in the average's weights (default 0), a finite number.
        weight_lr_power: the power of ``lr_max`` in the average's weights (default 2), a
            finite number.
        foreach: the package's option, kept in the groups (default True); on the CPU its
            two paths compute the same values, and so does this one.

    Every element-wise operation is torch's CPU kernel's (as built for AVX2 and AVX-512: its
    fused multiply-adds in ``lerp_``, ``add_(alpha=)`` and ``addcmul_``), so parameters
    (train and eval mode), state and group scalars equal the package's bit for bit, float32
    and float64, wherever torch's ``sqrt`` is correctly rounded. torch built with MKL takes
    ``sqrt`` from MKL, which on AVX-512 machines is off by an ulp for some inputs: there the
    two agree to float rounding (tests/test_schedulefree.py).

    Call :meth:`train` before :meth:`step` (the optimizer starts in eval mode, as the
    package's does) and :meth:`eval` before evaluating or saving. Group scalars, as the
    package keeps them: ``k``, ``train_mode``, ``weight_sum``, ``lr_max``,
    ``scheduled_lr``. State per parameter: ``z`` and ``exp_avg_sq``, created at its first
    step.

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> w = np.ones(3)
        >>> opt = fo.ScheduleFreeAdamW([w], lr=0.1)
        >>> opt.train()
        >>> opt.step([np.array([1.0, -1.0, 0.0])])
        >>> w.round(6), sorted(opt.state[0]), opt.param_groups[0]["k"]
        (array([0.9, 1.1, 1. ]), ['exp_avg_sq', 'z'], 1)
        >>> opt.eval()
    """

    _name = "ScheduleFreeAdamW"
    _state_keys = ("z", "exp_avg_sq")

    def __init__(
        self,
        params: Any,
        lr: float = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        foreach: bool | None = True,
    ):
        super().__init__(
            params,
            {
                "lr": lr,
                "betas": _betas(betas),
                "eps": eps,
                "r": r,
                "warmup_steps": warmup_steps,
                "weight_lr_power": weight_lr_power,
                "weight_decay": weight_decay,
                "foreach": foreach,
            },
        )

    def _check_own(self, g: Mapping, where: str) -> dict:
        for k in ("betas", "eps"):
            if k not in g:
                raise ValueError(f"{where} lacks {k!r}")
        betas = g["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{where}: betas must be a pair (beta1, beta2), got {betas!r}")
        return {
            "beta1": real(f"{where}: betas[0]", betas[0], low=0.0, high=1.0, low_open=True, high_open=True),
            "beta2": real(f"{where}: betas[1]", betas[1], low=0.0, high=1.0, high_open=True),
            "eps": real(f"{where}: eps", g["eps"], low=0.0),
        }

    def _momentum(self, h: dict) -> float:
        return h["beta1"]

    def _new_state(self, param: np.ndarray) -> dict:
        return {"z": param.copy(), "exp_avg_sq": np.zeros_like(param)}

    def _scalars(self, h: dict, k: int, lr: float, ckp1: float) -> tuple:
        beta1, beta2 = h["beta1"], h["beta2"]
        return (
            beta2,
            1 - beta2,
            1 - beta2 ** (k + 1),
            h["eps"],
            h["weight_decay"],
            ckp1,
            lr * (beta1 * (1 - ckp1) - 1),
            lr,
        )

    def _step_all(self, arrays: list, grads: list, states: list[dict], scalars: list) -> None:
        lists = self._lists
        if lists is None or lists[0] is not states:
            lists = self._lists = (states, [s["z"] for s in states], [s["exp_avg_sq"] for s in states])
        _core.schedulefree_adamw_steps(arrays, grads, lists[1], lists[2], self._names, scalars)


class ScheduleFreeSGD(_ScheduleFree):
    """Schedule-Free SGD (``schedulefree.SGDScheduleFree``, Defazio et al. 2024): SGD with
    momentum replaced by interpolation between the iterate ``z`` and the average ``x`` of
    the iterates, and no learning-rate schedule.

    In train mode a parameter holds ``y = (1 - momentum) z + momentum x``, where the
    gradient ``g`` is taken; in eval mode (:meth:`eval`) it holds ``x``. A step of a group
    at its count ``k`` (0, 1, ...), the scalars in double precision::

        lr_k       = lr min(1, (k + 1) / warmup_steps)          # scheduled_lr
        lr_max     = max(lr_max, lr_k)
        weight     = (k + 1) ** r  lr_max ** weight_lr_power
        weight_sum = weight_sum + weight
        c_{k+1}    = weight / weight_sum                        # ckp1; 0 if weight_sum is 0
        d = g + weight_decay y
        y = lerp(y, z, c_{k+1}) + lr_k (momentum (1 - c_{k+1}) - 1) d   # lerp(a, b, w) = a + w (b - a)
        z = z - lr_k d
        # which is, with x never stored:
        # x = (1 - c_{k+1}) x + c_{k+1} z,  y = (1 - momentum) z + momentum x

    Args:
        params: writeable C-contiguous float32 or float64 arrays (a list, a dict, or a
            list of param-group dicts).
        lr: the learning rate (default 1.0), >= 0: parameter units per gradient unit; or
            a schedule, a callable ``k -> lr`` evaluated at the group's ``k`` before each
            step (as setting ``param_groups[i]["lr"]`` before each step would; the warmup
            multiplies it).
        momentum: the interpolation between ``z`` and ``x`` (default 0.9), in (0, 1),
            unitless.
        weight_decay: L2 penalty taken at ``y`` (default 0), >= 0, gradient units per
            parameter unit.
        warmup_steps: linear warmup of the learning rate over this many steps (default 0),
            an integer >= 0.
        r: the power of ``k + 1`` in the average's weights (default 0), a finite number.
        weight_lr_power: the power of ``lr_max`` in the average's weights (default 2), a
            finite number.
        foreach: the package's option, kept in the groups (default True); on the CPU its
            two paths compute the same values, and so does this one.

    Every operation is torch's CPU kernel's (as built for AVX2 and AVX-512: ``lerp_`` and
    ``add_(alpha=)`` one fused multiply-add each), so parameters (train and eval mode),
    state and group scalars equal the package's bit for bit, float32 and float64
    (tests/test_schedulefree.py). Call :meth:`train` before :meth:`step` and :meth:`eval`
    before evaluating or saving. State per parameter: ``z``, created at its first step.

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> w = np.ones(2)
        >>> opt = fo.ScheduleFreeSGD([w], lr=0.5)
        >>> opt.train()
        >>> opt.step([np.array([1.0, -2.0])])
        >>> w, opt.state[0]["z"]
        (array([0.5, 2. ]), array([0.5, 2. ]))
    """

    _name = "ScheduleFreeSGD"
    _state_keys = ("z",)

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2,
        foreach: bool | None = True,
    ):
        super().__init__(
            params,
            {
                "lr": lr,
                "momentum": momentum,
                "r": r,
                "warmup_steps": warmup_steps,
                "weight_lr_power": weight_lr_power,
                "weight_decay": weight_decay,
                "foreach": foreach,
            },
        )

    def _check_own(self, g: Mapping, where: str) -> dict:
        if "momentum" not in g:
            raise ValueError(f"{where} lacks 'momentum'")
        return {
            "momentum": real(
                f"{where}: momentum", g["momentum"], low=0.0, high=1.0, low_open=True, high_open=True
            )
        }

    def _momentum(self, h: dict) -> float:
        return h["momentum"]

    def _new_state(self, param: np.ndarray) -> dict:
        return {"z": param.copy()}

    def _scalars(self, h: dict, k: int, lr: float, ckp1: float) -> tuple:
        return (h["weight_decay"], ckp1, lr * (h["momentum"] * (1 - ckp1) - 1), lr)

    def _step_all(self, arrays: list, grads: list, states: list[dict], scalars: list) -> None:
        lists = self._lists
        if lists is None or lists[0] is not states:
            lists = self._lists = (states, [s["z"] for s in states])
        _core.schedulefree_sgd_steps(arrays, grads, lists[1], self._names, scalars)
