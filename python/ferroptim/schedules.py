r"""Learning-rate schedules: pure functions from the update number to the learning rate.

Every schedule is a callable ``schedule(step) -> lr``. ``step`` is the 0-based update
number (``schedule(0)`` is the rate of the first update); a number gives a Python float,
and a NumPy array of steps gives an array of rates, so a schedule can be plotted. Any
optimizer takes a schedule as ``lr`` and evaluates it at its own update count, which a
``state_dict`` round trip keeps::

    import ferroptim as fo
    from ferroptim.schedules import CosineDecay, JoinSchedules, LinearSchedule

    warmup_then_cosine = JoinSchedules(
        [LinearSchedule(0.0, 1e-3, steps=500), CosineDecay(1e-3, decay_steps=9500)],
        boundaries=[500],
    )
    opt = fo.Adam(params, lr=warmup_then_cosine)

The lecture's decays are per epoch; ``decay_steps`` (the number of updates per epoch, say)
turns them into per-step decays: ``epoch = step / decay_steps`` (floored with
``staircase=True``). Names and formulas follow Keras (``initial_lr`` for its
``initial_learning_rate``); the table below maps torch's ``lr_scheduler`` classes onto them.

=======================================  ====================================================
torch.optim.lr_scheduler                 ferroptim.schedules
=======================================  ====================================================
``StepLR(step_size, gamma)``             ``ExponentialDecay(lr, gamma, step_size, staircase=True)``
``ExponentialLR(gamma)``                 ``ExponentialDecay(lr, gamma)``
``CosineAnnealingLR(T_max, eta_min)``    ``CosineDecay(lr, T_max, alpha=eta_min / lr)``
``CosineAnnealingWarmRestarts(T_0,       ``CosineDecayRestarts(lr, T_0, t_mul=T_mult,
T_mult, eta_min)``                       alpha=eta_min / lr)``
``PolynomialLR(total_iters, power)``     ``PolynomialDecay(lr, total_iters, end_lr=0, power=power)``
``LinearLR(start_factor, end_factor,     ``LinearSchedule(lr * start_factor, lr * end_factor,
total_iters)``                           total_iters)``
``OneCycleLR(max_lr, total_steps, ...)``  ``OneCycle(max_lr, total_steps, ...)``
``SequentialLR(schedulers, milestones)``  ``JoinSchedules(schedules, boundaries)``
``ReduceLROnPlateau(optimizer, ...)``    :class:`ReduceLROnPlateau` (driven by a metric)
=======================================  ====================================================

A torch scheduler's ``last_epoch`` counts its ``step()`` calls; called once per update, its
rate for update ``k`` is the schedule's value at ``k``. Past ``T_max``, torch's
``CosineAnnealingLR`` rises again; ``CosineDecay`` stays at its floor, as Keras's does.

Bad arguments (a negative rate, ``decay_steps <= 0``, boundaries that do not increase, ...)
raise ``ValueError`` or ``TypeError`` at construction, and a negative or non-finite step
raises ``ValueError`` when the schedule is called.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Sequence

import numpy as np

from ._checks import count as _count
from ._checks import flag as _flag
from ._checks import real as _real
from .averages import EWA

__all__ = [
    "Schedule",
    "InverseTimeDecay",
    "ExponentialDecay",
    "InverseSqrtDecay",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "CosineDecay",
    "CosineDecayRestarts",
    "LinearSchedule",
    "OneCycle",
    "JoinSchedules",
    "ReduceLROnPlateau",
]


def _lr(name: str, value: Any) -> float:
    return _real(name, value, low=0.0)


def _steps(name: str, value: Any) -> float:
    return _real(name, value, low=0.0, low_open=True)


class Schedule:
    """Base class of the schedules: a pure, vectorised function ``step -> lr``.

    Subclasses implement ``_value(k)`` for valid steps ``k``, a float64 array or NumPy
    scalar; calling the schedule checks the steps and returns a float for a number, an array
    for an array.

    ``vectorized = True`` tells the optimizer so: :meth:`ferroptim.nn.MLP.fit` evaluates the
    rates of its next updates in one call with an array of steps (a plain callable is called
    once per step).
    """

    vectorized = True

    def __call__(self, step: Any) -> Any:
        if isinstance(step, (int, float, np.integer, np.floating)) and not isinstance(step, (bool, np.bool_)):
            # The optimizer's path, once per update: NumPy scalars cost far less than arrays.
            x = np.float64(step)
            if not (np.isfinite(x) and x >= 0):
                raise ValueError(f"step must be a finite number >= 0, got {step!r}")
            return float(self._value(x))
        k = np.asarray(step)
        if k.dtype == np.bool_ or k.dtype.kind not in "iuf":
            raise TypeError(f"step must be a number or an array of numbers, got {type(step).__name__}")
        k = k.astype(np.float64)
        valid = np.isfinite(k) & (k >= 0)
        if not valid.all():
            raise ValueError(f"step must be a finite number >= 0, got {k[~valid].flat[0]}")
        out = np.broadcast_to(np.asarray(self._value(k), dtype=np.float64), k.shape)
        return float(out) if k.ndim == 0 else np.array(out)

    def _value(self, k: np.ndarray | np.float64) -> np.ndarray | np.float64:
        raise NotImplementedError

    def __repr__(self) -> str:
        names = list(inspect.signature(type(self).__init__).parameters)[1:]
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in names)})"


class InverseTimeDecay(Schedule):
    r"""The lecture's ``lr0 / (1 + decay_rate * epoch)`` (Keras ``InverseTimeDecay``).

    ::

        epoch = step / decay_steps                  (floor(step / decay_steps) if staircase)
        lr    = initial_lr / (1 + decay_rate * epoch)

    ``staircase=True`` is the lecture's fixed-interval staircase: the rate drops once every
    ``decay_steps`` updates. The lecture counts epochs from 1; here the first update is
    ``epoch = 0`` and runs at ``initial_lr``.

    Args:
        initial_lr: the rate at step 0 (>= 0), in parameter units per gradient unit.
        decay_rate: how fast the rate falls, per epoch (>= 0).
        decay_steps: updates per epoch (> 0).
        staircase: decay in whole epochs instead of continuously.

    Example:
        >>> import numpy as np
        >>> from ferroptim.schedules import InverseTimeDecay
        >>> s = InverseTimeDecay(0.2, decay_rate=1.0, decay_steps=2)
        >>> s(np.arange(5))
        array([0.2       , 0.13333333, 0.1       , 0.08      , 0.06666667])
        >>> InverseTimeDecay(0.2, 1.0, 2, staircase=True)(np.arange(5))
        array([0.2       , 0.2       , 0.1       , 0.1       , 0.06666667])
    """

    def __init__(self, initial_lr: float, decay_rate: float, decay_steps: float = 1, staircase: bool = False):
        self.initial_lr = _lr("initial_lr", initial_lr)
        self.decay_rate = _real("decay_rate", decay_rate, low=0.0)
        self.decay_steps = _steps("decay_steps", decay_steps)
        self.staircase = _flag("staircase", staircase)

    def _value(self, k):
        epoch = k / self.decay_steps
        if self.staircase:
            epoch = np.floor(epoch)
        return self.initial_lr / (1 + self.decay_rate * epoch)


class ExponentialDecay(Schedule):
    r"""The lecture's ``0.95**epoch * lr0`` (Keras ``ExponentialDecay``; torch ``ExponentialLR``,
    and ``StepLR`` with ``staircase=True``).

    ::

        epoch = step / decay_steps                  (floor(step / decay_steps) if staircase)
        lr    = initial_lr * decay_rate**epoch

    Args:
        initial_lr: the rate at step 0 (>= 0), in parameter units per gradient unit.
        decay_rate: the factor per epoch (> 0; below 1 to decay).
        decay_steps: updates per epoch (> 0).
        staircase: decay in whole epochs instead of continuously.

    Example:
        >>> import numpy as np
        >>> from ferroptim.schedules import ExponentialDecay
        >>> ExponentialDecay(0.1, 0.5)(np.arange(4))
        array([0.1   , 0.05  , 0.025 , 0.0125])
        >>> ExponentialDecay(0.1, 0.5, decay_steps=2, staircase=True)(np.arange(4))
        array([0.1 , 0.1 , 0.05, 0.05])
    """

    def __init__(self, initial_lr: float, decay_rate: float, decay_steps: float = 1, staircase: bool = False):
        self.initial_lr = _lr("initial_lr", initial_lr)
        self.decay_rate = _real("decay_rate", decay_rate, low=0.0, low_open=True)
        self.decay_steps = _steps("decay_steps", decay_steps)
        self.staircase = _flag("staircase", staircase)

    def _value(self, k):
        epoch = k / self.decay_steps
        if self.staircase:
            epoch = np.floor(epoch)
        return self.initial_lr * self.decay_rate**epoch


class InverseSqrtDecay(Schedule):
    r"""The lecture's ``k / sqrt(epoch) * lr0``, with the lecture's 1-based epoch.

    ::

        epoch = 1 + step / decay_steps
        lr    = k / sqrt(epoch) * initial_lr

    so the first update runs at ``k * initial_lr`` and the rate halves by epoch 4.

    Args:
        initial_lr: the base rate (>= 0), in parameter units per gradient unit.
        k: the constant factor (>= 0, dimensionless).
        decay_steps: updates per epoch (> 0).

    Example:
        >>> import numpy as np
        >>> from ferroptim.schedules import InverseSqrtDecay
        >>> InverseSqrtDecay(0.1, k=1.0)(np.array([0, 3, 8]))
        array([0.1       , 0.05      , 0.03333333])
    """

    def __init__(self, initial_lr: float, k: float, decay_steps: float = 1):
        self.initial_lr = _lr("initial_lr", initial_lr)
        self.k = _real("k", k, low=0.0)
        self.decay_steps = _steps("decay_steps", decay_steps)

    def _value(self, k):
        return self.k / np.sqrt(1 + k / self.decay_steps) * self.initial_lr


class PiecewiseConstantDecay(Schedule):
    r"""Constant rates between step boundaries (Keras ``PiecewiseConstantDecay``).

    ::

        lr = values[0]    if step <= boundaries[0]
             values[i]    if boundaries[i-1] < step <= boundaries[i]
             values[-1]   if step > boundaries[-1]

    Args:
        boundaries: strictly increasing steps (>= 0).
        values: the rates (>= 0), one more than ``boundaries``.

    Example:
        >>> import numpy as np
        >>> from ferroptim.schedules import PiecewiseConstantDecay
        >>> PiecewiseConstantDecay([2, 4], [1.0, 0.5, 0.1])(np.arange(6))
        array([1. , 1. , 1. , 0.5, 0.5, 0.1])
    """

    def __init__(self, boundaries: Sequence[float], values: Sequence[float]):
        self.boundaries = [_real(f"boundaries[{i}]", b, low=0.0) for i, b in enumerate(boundaries)]
        self.values = [_lr(f"values[{i}]", v) for i, v in enumerate(values)]
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError(
                f"values must have one more entry than boundaries, got {len(self.values)} values "
                f"and {len(self.boundaries)} boundaries"
            )
        _check_increasing("boundaries", self.boundaries)

    def _value(self, k):
        return np.asarray(self.values)[np.searchsorted(self.boundaries, k, side="left")]


def _check_increasing(name: str, xs: list) -> None:
    for i in range(1, len(xs)):
        if not xs[i] > xs[i - 1]:
            raise ValueError(
                f"{name} must be strictly increasing, got {xs[i - 1]:g} then {xs[i]:g} at index {i}"
            )


class PolynomialDecay(Schedule):
    r"""A polynomial decay to ``end_lr`` over ``decay_steps`` (Keras ``PolynomialDecay``;
    torch ``PolynomialLR`` with ``end_lr=0``).

    ::

        lr = (initial_lr - end_lr) * (1 - s / d)**power + end_lr

    with ``s = min(step, decay_steps)`` and ``d = decay_steps``, or with ``cycle=True``
    ``s = step`` and ``d = decay_steps * max(1, ceil(step / decay_steps))``, which restarts
    the decay from a lower point at each multiple of ``decay_steps``.

    Args:
        initial_lr: the rate at step 0 (>= 0), in parameter units per gradient unit.
        decay_steps: the number of updates to reach ``end_lr`` (> 0).
        end_lr: the final rate (>= 0).
        power: the exponent (> 0; 1 is linear).
        cycle: restart after ``decay_steps`` instead of staying at ``end_lr``.

    Example:
        >>> import numpy as np
        >>> from ferroptim.schedules import PolynomialDecay
        >>> PolynomialDecay(1.0, decay_steps=4, end_lr=0.0, power=2.0)(np.arange(6))
        array([1.    , 0.5625, 0.25  , 0.0625, 0.    , 0.    ])
    """

    def __init__(
        self,
        initial_lr: float,
        decay_steps: float,
        end_lr: float = 1e-4,
        power: float = 1.0,
        cycle: bool = False,
    ):
        self.initial_lr = _lr("initial_lr", initial_lr)
        self.decay_steps = _steps("decay_steps", decay_steps)
        self.end_lr = _lr("end_lr", end_lr)
        self.power = _real("power", power, low=0.0, low_open=True)
        self.cycle = _flag("cycle", cycle)

    def _value(self, k):
        if self.cycle:
            d = self.decay_steps * np.maximum(1.0, np.ceil(k / self.decay_steps))
        else:
            k, d = np.minimum(k, self.decay_steps), self.decay_steps
        return (self.initial_lr - self.end_lr) * (1 - k / d) ** self.power + self.end_lr


def _cosine(k, decay_steps, alpha, lr):
    """Keras's cosine decay from ``lr`` to ``alpha * lr`` over ``decay_steps``."""
    cosine = 0.5 * (1.0 + np.cos(np.pi * (k / decay_steps)))
    return lr * ((1 - alpha) * cosine + alpha)


class CosineDecay(Schedule):
    r"""A cosine decay, after an optional linear warm-up (Keras ``CosineDecay``; torch
    ``CosineAnnealingLR`` with ``alpha = eta_min / lr``).

    Without warm-up (``warmup_target=None``), with ``s = min(step, decay_steps)``::

        lr = initial_lr * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha)

    With warm-up, the rate rises linearly from ``initial_lr`` to ``warmup_target`` over
    ``warmup_steps`` updates, then decays from ``warmup_target`` as above, with
    ``s = min(step - warmup_steps, decay_steps)``.

    Args:
        initial_lr: the rate at step 0 (>= 0), in parameter units per gradient unit.
        decay_steps: the length of the decay, in updates (> 0).
        alpha: the final rate as a fraction of the peak rate, in [0, 1].
        warmup_steps: the length of the warm-up, in updates (>= 0; needs
            ``warmup_target``).
        warmup_target: the rate reached at the end of the warm-up (>= 0), or None for no
            warm-up.

    Example:
        >>> import numpy as np
        >>> from ferroptim.schedules import CosineDecay
        >>> CosineDecay(1.0, decay_steps=4)(np.arange(5))
        array([1.        , 0.85355339, 0.5       , 0.14644661, 0.        ])
        >>> CosineDecay(0.0, 2, warmup_steps=2, warmup_target=1.0)(np.arange(5))
        array([0. , 0.5, 1. , 0.5, 0. ])
    """

    def __init__(
        self,
        initial_lr: float,
        decay_steps: float,
        alpha: float = 0.0,
        warmup_steps: float = 0,
        warmup_target: float | None = None,
    ):
        self.initial_lr = _lr("initial_lr", initial_lr)
        self.decay_steps = _steps("decay_steps", decay_steps)
        self.alpha = _real("alpha", alpha, low=0.0, high=1.0)
        self.warmup_steps = _real("warmup_steps", warmup_steps, low=0.0)
        self.warmup_target = None if warmup_target is None else _lr("warmup_target", warmup_target)
        if self.warmup_steps > 0 and self.warmup_target is None:
            raise ValueError(
                f"warmup_steps={warmup_steps} needs warmup_target, the rate reached at the end of the warm-up"
            )

    def _value(self, k):
        if self.warmup_target is None:
            return _cosine(np.minimum(k, self.decay_steps), self.decay_steps, self.alpha, self.initial_lr)
        k = np.minimum(k, self.decay_steps + self.warmup_steps)
        decay = _cosine(
            np.maximum(k - self.warmup_steps, 0.0), self.decay_steps, self.alpha, self.warmup_target
        )
        if self.warmup_steps == 0:
            return decay
        warm = (self.warmup_target - self.initial_lr) * (k / self.warmup_steps) + self.initial_lr
        return np.where(k < self.warmup_steps, warm, decay)


class CosineDecayRestarts(Schedule):
    r"""Cosine decays with warm restarts, SGDR (Keras ``CosineDecayRestarts``; torch
    ``CosineAnnealingWarmRestarts`` with ``m_mul=1`` and ``alpha = eta_min / lr``).

    Period ``i`` (from 0) lasts ``first_decay_steps * t_mul**i`` updates and starts at
    ``initial_lr * m_mul**i``; within it, at fraction ``f`` of its length::

        lr = initial_lr * ((1 - alpha) * m_mul**i * 0.5 * (1 + cos(pi * f)) + alpha)

    A restart falls exactly on its step (Keras finds the period with a logarithm, which can
    land one period early in floating point; the period is corrected here).

    Args:
        initial_lr: the rate at step 0 (>= 0), in parameter units per gradient unit.
        first_decay_steps: the length of the first period, in updates (> 0).
        t_mul: the growth of each period's length (>= 1).
        m_mul: the factor on each period's starting rate (>= 0).
        alpha: the floor, as a fraction of ``initial_lr``, in [0, 1].

    Example:
        >>> import numpy as np
        >>> from ferroptim.schedules import CosineDecayRestarts
        >>> CosineDecayRestarts(1.0, first_decay_steps=2, t_mul=2.0, m_mul=0.5)(np.arange(8)).round(3)
        array([1.   , 0.5  , 0.5  , 0.427, 0.25 , 0.073, 0.25 , 0.24 ])
    """

    def __init__(
        self,
        initial_lr: float,
        first_decay_steps: float,
        t_mul: float = 2.0,
        m_mul: float = 1.0,
        alpha: float = 0.0,
    ):
        self.initial_lr = _lr("initial_lr", initial_lr)
        self.first_decay_steps = _steps("first_decay_steps", first_decay_steps)
        self.t_mul = _real("t_mul", t_mul, low=1.0)
        self.m_mul = _real("m_mul", m_mul, low=0.0)
        self.alpha = _real("alpha", alpha, low=0.0, high=1.0)

    def _period_start(self, i):
        """Where period ``i`` starts, in units of ``first_decay_steps``."""
        return i if self.t_mul == 1.0 else (self.t_mul**i - 1.0) / (self.t_mul - 1.0)

    def _value(self, k):
        f = k / self.first_decay_steps
        if self.t_mul == 1.0:
            i = np.floor(f)
        else:
            i = np.floor(np.log1p(f * (self.t_mul - 1.0)) / np.log(self.t_mul))
            i = np.where(self._period_start(i) > f, i - 1, i)
            i = np.where(self._period_start(i + 1) <= f, i + 1, i)
        fraction = (f - self._period_start(i)) / self.t_mul**i
        cosine = 0.5 * self.m_mul**i * (1.0 + np.cos(np.pi * fraction))
        return self.initial_lr * ((1 - self.alpha) * cosine + self.alpha)


class LinearSchedule(Schedule):
    r"""A linear ramp from ``start_lr`` to ``end_lr`` over ``steps`` updates, then constant:
    the usual warm-up (optax ``linear_schedule``; torch ``LinearLR``).

    ::

        lr = start_lr + (end_lr - start_lr) * min(step, steps) / steps

    Args:
        start_lr: the rate at step 0 (>= 0), in parameter units per gradient unit.
        end_lr: the rate from step ``steps`` on (>= 0).
        steps: the length of the ramp, in updates (> 0).

    Example:
        >>> import numpy as np
        >>> from ferroptim.schedules import LinearSchedule
        >>> LinearSchedule(0.0, 1.0, steps=4)(np.arange(6))
        array([0.  , 0.25, 0.5 , 0.75, 1.  , 1.  ])
    """

    def __init__(self, start_lr: float, end_lr: float, steps: float):
        self.start_lr = _lr("start_lr", start_lr)
        self.end_lr = _lr("end_lr", end_lr)
        self.steps = _steps("steps", steps)

    def _value(self, k):
        return self.start_lr + (self.end_lr - self.start_lr) * (np.minimum(k, self.steps) / self.steps)


class OneCycle(Schedule):
    r"""The 1cycle policy, torch ``OneCycleLR``'s formula (cosine annealing, two phases).

    With ``initial = max_lr / div_factor``, ``final = initial / final_div_factor`` and
    ``p = pct_start * total_steps - 1`` (the step of the peak)::

        anneal(a, b, x) = b + (a - b) / 2 * (cos(pi * x) + 1)
        lr = anneal(initial, max_lr, step / p)                            if step <= p
             anneal(max_lr, final, (step - p) / (total_steps - 1 - p))    otherwise

    The rate reaches ``final`` at step ``total_steps - 1`` and stays there (torch raises
    past ``total_steps``). torch's momentum cycling is not part of a learning-rate schedule.

    Args:
        max_lr: the peak rate (> 0), in parameter units per gradient unit.
        total_steps: the length of the cycle, in updates (an integer >= 2).
        pct_start: the fraction of the cycle spent rising, in (0, 1), with
            ``pct_start * total_steps > 1``.
        div_factor: ``max_lr / initial`` (> 0).
        final_div_factor: ``initial / final`` (> 0).

    Example:
        >>> import numpy as np
        >>> from ferroptim.schedules import OneCycle
        >>> OneCycle(1.0, total_steps=5, pct_start=0.6, div_factor=10.0, final_div_factor=10.0)(np.arange(6))
        array([0.1  , 0.55 , 1.   , 0.505, 0.01 , 0.01 ])
    """

    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ):
        self.max_lr = _real("max_lr", max_lr, low=0.0, low_open=True)
        self.total_steps = _count("total_steps", total_steps)
        if self.total_steps < 2:
            raise ValueError(f"total_steps must be >= 2, got {total_steps}")
        self.pct_start = _real("pct_start", pct_start, low=0.0, high=1.0, low_open=True, high_open=True)
        if self.pct_start * self.total_steps <= 1:
            raise ValueError(
                f"pct_start * total_steps must be > 1 so that the rise lasts at least one update, "
                f"got {self.pct_start} * {self.total_steps}"
            )
        self.div_factor = _real("div_factor", div_factor, low=0.0, low_open=True)
        self.final_div_factor = _real("final_div_factor", final_div_factor, low=0.0, low_open=True)

    def _value(self, k):
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        peak = self.pct_start * self.total_steps - 1
        last = self.total_steps - 1
        k = np.minimum(k, last)
        rising = k <= peak
        x = np.where(rising, k / peak, (k - peak) / (last - peak))
        a = np.where(rising, initial, self.max_lr)
        b = np.where(rising, self.max_lr, final)
        return b + (a - b) / 2.0 * (np.cos(np.pi * x) + 1)


class JoinSchedules(Schedule):
    r"""Schedules one after another: ``schedules[i]`` runs from ``boundaries[i-1]`` on, and
    restarts its count there (optax ``join_schedules``; torch ``SequentialLR``).

    ::

        lr = schedules[i](step - boundaries[i-1])    if boundaries[i-1] <= step < boundaries[i]

    with ``boundaries[-1] = 0`` for the first schedule.

    Args:
        schedules: the schedules, in order. Any callable ``step -> lr`` works; those that
            are not :class:`Schedule` are called once per step, with an int.
        boundaries: strictly increasing steps (> 0) where the next schedule takes over,
            one fewer than ``schedules``.

    Example:
        >>> import numpy as np
        >>> from ferroptim.schedules import ExponentialDecay, JoinSchedules, LinearSchedule
        >>> warmup = LinearSchedule(0.0, 1.0, steps=2)
        >>> JoinSchedules([warmup, ExponentialDecay(1.0, 0.5)], boundaries=[2])(np.arange(5))
        array([0.  , 0.5 , 1.  , 0.5 , 0.25])
    """

    def __init__(self, schedules: Sequence[Callable[[int], float]], boundaries: Sequence[float]):
        self.schedules = list(schedules)
        if not self.schedules:
            raise ValueError("schedules must not be empty")
        for i, s in enumerate(self.schedules):
            if not callable(s):
                raise TypeError(f"schedules[{i}] must be callable (step -> lr), got {type(s).__name__}")
        self.boundaries = [
            _real(f"boundaries[{i}]", b, low=0.0, low_open=True) for i, b in enumerate(boundaries)
        ]
        if len(self.boundaries) != len(self.schedules) - 1:
            raise ValueError(
                f"boundaries must have one entry fewer than schedules, got {len(self.boundaries)} "
                f"boundaries and {len(self.schedules)} schedules"
            )
        _check_increasing("boundaries", self.boundaries)

    def _value(self, k):
        which = np.searchsorted(self.boundaries, k, side="right")
        starts = [0.0] + self.boundaries
        if np.ndim(k) == 0:
            return _call(self.schedules[which], k - starts[which])
        out = np.empty_like(k)
        for i, schedule in enumerate(self.schedules):
            here = which == i
            if np.any(here):
                out[here] = _call(schedule, k[here] - starts[i])
        return out


def _call(schedule: Callable, k: Any) -> Any:
    """``schedule`` at the valid steps ``k``; a plain callable gets one int (or float) at a time."""
    if isinstance(schedule, Schedule):
        return schedule(k)

    def one(s: float) -> float:
        return float(schedule(int(s) if s.is_integer() else float(s)))

    return one(k) if np.ndim(k) == 0 else np.array([one(s) for s in k])


class ReduceLROnPlateau:
    r"""Divides the learning rate when a metric stops improving (torch ``ReduceLROnPlateau``).

    It owns the optimizer, as torch's does: each ``step(metric)`` (say once per epoch, with
    the validation loss) compares the metric, optionally smoothed by an :class:`EWA`, with
    the best so far. After more than ``patience`` steps without improvement it sets every
    param group's ``lr`` to ``max(lr * factor, min_lr)`` (skipping changes smaller than
    ``eps``), then waits ``cooldown`` steps before counting again. "Improvement" in mode
    ``"min"`` is ``metric < best * (1 - threshold)`` (``threshold_mode="rel"``) or
    ``metric < best - threshold`` (``"abs"``); mode ``"max"`` mirrors it.

    The param groups' ``lr`` must be numbers (a schedule cannot also be divided).

    Args:
        optimizer: a ferroptim optimizer.
        mode: ``"min"`` (a loss) or ``"max"`` (an accuracy).
        factor: the factor on the rate at each reduction, in [0, 1).
        patience: steps without improvement tolerated before a reduction (integer >= 0).
        threshold: the margin an improvement must beat (>= 0; relative or in the metric's
            units, see ``threshold_mode``).
        threshold_mode: ``"rel"`` or ``"abs"``.
        cooldown: steps after a reduction during which no improvement is needed
            (integer >= 0).
        min_lr: the floor of the rate (>= 0), or one floor per param group.
        eps: the smallest change of the rate applied (>= 0).
        smoothing: None, a beta in [0, 1) for a bias-corrected :class:`EWA` of the metric,
            or an :class:`EWA`; noisy mini-batch metrics then trigger fewer reductions.

    Attributes:
        best: the best (smoothed) metric so far.
        num_bad_epochs: steps since the last improvement.
        last_epoch: the number of ``step`` calls.

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> from ferroptim.schedules import ReduceLROnPlateau
        >>> opt = fo.SGD([np.zeros(1)], lr=1.0)
        >>> plateau = ReduceLROnPlateau(opt, factor=0.5, patience=1)
        >>> rates = []
        >>> for loss in [3.0, 2.0, 2.0, 2.0, 2.0, 2.0]:
        ...     plateau.step(loss)
        ...     rates.append(opt.lr)
        >>> rates     # two steps without improvement exceed patience=1: halve, start again
        [1.0, 1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(
        self,
        optimizer: Any,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0.0,
        eps: float = 1e-8,
        smoothing: float | EWA | None = None,
    ):
        if not hasattr(optimizer, "param_groups"):
            raise TypeError(f"optimizer must be a ferroptim optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.mode, self.threshold_mode = mode, threshold_mode
        self.factor = _real("factor", factor, low=0.0, high=1.0, high_open=True)
        self.patience = _count("patience", patience)
        self.threshold = _real("threshold", threshold, low=0.0)
        self.cooldown = _count("cooldown", cooldown)
        self.eps = _real("eps", eps, low=0.0)
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError(f"min_lr has {len(min_lr)} entries, the optimizer {n} param groups")
            self.min_lrs = [_lr(f"min_lr[{i}]", m) for i, m in enumerate(min_lr)]
        else:
            self.min_lrs = [_lr("min_lr", min_lr)] * n
        if smoothing is not None and not isinstance(smoothing, (EWA, int, float, np.floating)):
            raise TypeError(
                f"smoothing must be None, a beta in [0, 1) or an EWA, got {type(smoothing).__name__}"
            )
        self.smoothing = EWA(smoothing) if isinstance(smoothing, (int, float, np.floating)) else smoothing
        self._lrs()
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0

    def _lrs(self) -> list:
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        for i, lr in enumerate(lrs):
            if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, (int, float, np.number)):
                raise TypeError(
                    f"param_groups[{i}]['lr'] is {type(lr).__name__}; ReduceLROnPlateau sets the rate "
                    f"and needs a number there, not a schedule"
                )
        if len(lrs) != len(self.min_lrs):
            raise ValueError(f"the optimizer has {len(lrs)} param groups, min_lr covers {len(self.min_lrs)}")
        return [float(lr) for lr in lrs]

    def _is_better(self, a: float) -> bool:
        rel = self.threshold_mode == "rel"
        if self.mode == "min":
            return a < (self.best * (1.0 - self.threshold) if rel else self.best - self.threshold)
        return a > (self.best * (1.0 + self.threshold) if rel else self.best + self.threshold)

    def step(self, metric: float) -> None:
        """Records ``metric`` (a number) and reduces the rates if it has stopped improving."""
        value = float(metric)
        if self.smoothing is not None:
            value = float(self.smoothing.update(value))
        self.last_epoch += 1
        if self._is_better(value):
            self.best, self.num_bad_epochs = value, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, lr, floor in zip(self.optimizer.param_groups, self._lrs(), self.min_lrs):
                new = max(lr * self.factor, floor)
                if lr - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def get_last_lr(self) -> list:
        """The rate of each param group now."""
        return self._lrs()

    _STATE = (
        "mode",
        "factor",
        "patience",
        "threshold",
        "threshold_mode",
        "cooldown",
        "min_lrs",
        "eps",
        "best",
        "num_bad_epochs",
        "cooldown_counter",
        "last_epoch",
    )

    def state_dict(self) -> dict:
        """Every setting and counter (plain Python objects), and the smoothing EWA's state."""
        sd = {k: getattr(self, k) for k in self._STATE}
        sd["min_lrs"] = list(self.min_lrs)
        sd["smoothing"] = None if self.smoothing is None else self.smoothing.state_dict()
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores what :meth:`state_dict` returned (the rates are the optimizer's)."""
        missing = [k for k in self._STATE + ("smoothing",) if k not in state_dict]
        if missing:
            raise ValueError(f"state_dict lacks {missing}")
        saved = state_dict["smoothing"]
        if (saved is None) != (self.smoothing is None):
            raise ValueError("state_dict and this ReduceLROnPlateau differ in whether the metric is smoothed")
        settings = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "eps")
        checked = ReduceLROnPlateau(
            self.optimizer, **{k: state_dict[k] for k in settings}, min_lr=list(state_dict["min_lrs"])
        )
        if saved is not None and self.smoothing is not None:
            self.smoothing.load_state_dict(saved)
        for k in self._STATE:
            setattr(self, k, state_dict[k])
        self.min_lrs = checked.min_lrs

    def __repr__(self) -> str:
        return (
            f"ReduceLROnPlateau(mode={self.mode!r}, factor={self.factor}, patience={self.patience}, "
            f"best={self.best}, num_bad_epochs={self.num_bad_epochs})"
        )
