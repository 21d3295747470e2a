"""Optimizer wrappers: gradient accumulation and Lookahead. The per-element work (adding,
averaging, interpolating) runs in Rust; the wrappers keep the training loop unchanged."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from . import _core
from ._checks import count as _count
from ._checks import real
from .optim import LR, GradsLike, Optimizer

__all__ = ["GradientAccumulation", "Lookahead"]


class _Wrapper:
    """Forwards the hyper-parameter surface of the wrapped optimizer, and the internal
    protocol that lets wrappers nest in any order (each layer checks the gradients with
    the innermost optimizer, brings its own per-parameter buffers up to date after an
    ``add_param_group``, then passes the step on)."""

    optimizer: Optimizer
    _seen_version: int

    @property
    def param_groups(self) -> list[dict]:
        """The wrapped optimizer's param groups (hyper-parameters live there)."""
        return self.optimizer.param_groups

    @property
    def lr(self) -> LR:
        """The wrapped optimizer's learning rate (settable)."""
        return self.optimizer.lr

    @lr.setter
    def lr(self, value: LR) -> None:
        self.optimizer.lr = value

    def add_param_group(self, param_group: dict) -> None:
        """Adds a param group to the wrapped optimizer (see ``Optimizer.add_param_group``);
        this wrapper takes the new parameters in at its next step."""
        self.optimizer.add_param_group(param_group)

    @property
    def _keys(self):
        return self.optimizer._keys

    @property
    def _version(self) -> int:
        return self.optimizer._version

    def _arrays(self) -> list[np.ndarray]:
        return self.optimizer._arrays()

    def _check_grads(self, grads: GradsLike) -> list[np.ndarray]:
        return self.optimizer._check_grads(grads)

    def _check_groups(self) -> None:
        self.optimizer._check_groups()

    def _sync_arrays(self) -> list[np.ndarray]:
        return self.optimizer._sync_arrays()

    def _sync_layout(self) -> None:
        """Brings every layer up to date with the parameters, innermost first."""
        self.optimizer._sync_layout()
        self._follow_layout()

    def _follow_layout(self) -> None:
        """Extends this wrapper's per-parameter buffers after ``add_param_group``."""
        if self._seen_version != self.optimizer._version:
            arrays = self.optimizer._arrays()
            self._extend(arrays[self._num_buffers() :])
            self._seen_version = self.optimizer._version

    def _num_buffers(self) -> int:
        return len(self._arrays())

    def _extend(self, new: list[np.ndarray]) -> None:
        pass

    def _step(self, grads: GradsLike) -> bool:
        checked = self._check_grads(grads)
        self._sync_layout()
        return self._step_checked(checked, 1.0)

    def _step_checked(self, grads: list[np.ndarray], grad_scale: float = 1.0) -> bool:
        raise NotImplementedError

    def _copies_from(self, saved, name: str) -> list[np.ndarray]:
        """Checked copies of saved buffers, one per parameter, cast like the parameters."""
        arrays = self.optimizer._arrays()
        saved = list(saved)
        if len(saved) != len(arrays):
            raise ValueError(f"state_dict has {len(saved)} {name} buffers, expected {len(arrays)}")
        out = []
        for i, (a, p) in enumerate(zip(saved, arrays)):
            a = np.asarray(a)
            if a.shape != p.shape or a.dtype.kind != "f":
                raise ValueError(
                    f"{name}[{i}] must be a float array of shape {p.shape}, got {a.dtype} {a.shape}"
                )
            out.append(np.array(a, dtype=p.dtype, order="C"))
        return out


def _positive_int(name: str, value) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


class GradientAccumulation(_Wrapper):
    r"""Steps the wrapped optimizer every ``steps`` calls, with the mean of their gradients.

    With micro-batch gradients ``g_1 ... g_k`` (``k = steps``), the k-th call updates the
    parameters with ``(g_1 + ... + g_k) / k`` -- the mean, as Keras's
    ``gradient_accumulation_steps`` and optax's ``MultiSteps`` use -- so k micro-batches of
    size b act like one batch of size k*b without its memory. The other calls only add
    their gradients to the accumulators (one Rust pass each).

    Args:
        optimizer: the optimizer to step; its ``nan_policy`` and ``max_grad_norm`` apply to
            the mean gradient.
        steps: micro-batches per update (an int >= 1).

    ``step(grads)`` takes gradients as the optimizer does and returns True when it updated
    the parameters. Each gradient is checked (shape, dtype) before anything is added. If the
    optimizer refuses the mean gradient (``nan_policy="raise"`` or ``"skip"``), the
    accumulated micro-batches are discarded.

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> w = np.zeros(2)
        >>> acc = fo.GradientAccumulation(fo.SGD([w], lr=1.0), steps=2)
        >>> acc.step([np.array([1.0, 2.0])]), acc.step([np.array([3.0, 4.0])])
        (False, True)
        >>> w
        array([-2., -3.])
    """

    def __init__(self, optimizer: Optimizer, steps: int):
        self.steps = _positive_int("steps", steps)
        self.optimizer = optimizer
        self.count = 0
        self._acc = [np.zeros_like(p) for p in optimizer._arrays()]
        self._seen_version = optimizer._version

    def _num_buffers(self) -> int:
        return len(self._acc)

    def _extend(self, new: list[np.ndarray]) -> None:
        # Parameters added mid-accumulation count the earlier micro-batches as zero gradients.
        self._acc = self._acc + [np.zeros_like(p) for p in new]

    def step(self, grads: GradsLike) -> bool:
        """Adds ``grads`` (a list, or a mapping keyed like the parameters); on every
        ``steps``-th call, steps the optimizer with the mean. Returns True when it did."""
        return self._step(grads)

    def _step_checked(self, grads: list[np.ndarray], grad_scale: float = 1.0) -> bool:
        self.optimizer._check_groups()
        if grad_scale != 1.0:
            _core.scale_(grads, grad_scale)
        _core.accumulate_(self._acc, grads, self.count == 0)
        self.count += 1
        if self.count < self.steps:
            return False
        self.count = 0
        return self.optimizer._step_checked(self._acc, 1.0 / self.steps)

    def state_dict(self) -> dict:
        """The optimizer's state_dict, plus the micro-batches accumulated so far."""
        self._follow_layout()
        return {
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
            "count": self.count,
            "accumulated": [a.copy() for a in self._acc],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores what ``state_dict`` returned (all checked before anything changes)."""
        self._follow_layout()
        count = state_dict["count"]
        if (
            not isinstance(count, numbers.Integral)
            or isinstance(count, bool)
            or not 0 <= int(count) < self.steps
            or state_dict["steps"] != self.steps
        ):
            raise ValueError(
                f"state_dict is for steps={state_dict['steps']!r} with count={count!r}; this "
                f"wrapper has steps={self.steps} (count must be in [0, steps))"
            )
        acc = self._copies_from(state_dict["accumulated"], "accumulated")
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self._acc, self.count = acc, int(count)


class Lookahead(_Wrapper):
    r"""Lookahead (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back"),
    as optax defines it.

    The wrapped ("fast") optimizer updates the parameters every step; every
    ``sync_period`` steps the slow weights move toward them and the fast weights restart
    from there::

        slow = slow + slow_step_size * (fast - slow)
        fast = slow

    The slow weights start as a copy of the parameters. The parameters you passed to the
    optimizer are the fast weights; ``slow_params`` holds the slow ones (often the better
    ones to evaluate between synchronisations).

    Args:
        optimizer: the fast optimizer.
        sync_period: fast steps between synchronisations (an int >= 1; optax's k).
        slow_step_size: the interpolation factor alpha, in [0, 1].

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> w = np.zeros(1)
        >>> la = fo.Lookahead(fo.SGD([w], lr=1.0), sync_period=2, slow_step_size=0.5)
        >>> la.step([np.ones(1)]); la.step([np.ones(1)])
        >>> w, la.slow_params[0]      # fast went to -2, slow halfway: -1, fast restarts there
        (array([-1.]), array([-1.]))
    """

    def __init__(self, optimizer: Optimizer, sync_period: int = 5, slow_step_size: float = 0.5):
        self.sync_period = _positive_int("sync_period", sync_period)
        self.slow_step_size = real("slow_step_size", slow_step_size, low=0.0, high=1.0)
        self.optimizer = optimizer
        self.count = 0
        self._slow = [p.copy() for p in optimizer._arrays()]
        self._seen_version = optimizer._version

    def _num_buffers(self) -> int:
        return len(self._slow)

    def _extend(self, new: list[np.ndarray]) -> None:
        # Slow weights of added parameters start, as all do, as a copy of the parameters.
        self._slow = self._slow + [p.copy() for p in new]

    def _sync_arrays(self) -> list[np.ndarray]:
        return self.optimizer._sync_arrays() + self._slow

    def step(self, grads: GradsLike) -> None:
        """One fast step; every ``sync_period``-th one also synchronises."""
        self._step(grads)

    def _step_checked(self, grads: list[np.ndarray], grad_scale: float = 1.0) -> bool:
        stepped = self.optimizer._step_checked(grads, grad_scale)
        self.count += 1
        if self.count % self.sync_period == 0:
            _core.lookahead_sync_(self._slow, self.optimizer._arrays(), self.slow_step_size)
        return stepped

    @property
    def slow_params(self) -> list[np.ndarray] | dict[Any, np.ndarray]:
        """Read-only views of the slow weights, keyed like the parameters (list or dict)."""
        self._follow_layout()
        views = []
        for s in self._slow:
            v = s.view()
            v.flags.writeable = False
            views.append(v)
        keys = self.optimizer._keys
        return views if keys is None else dict(zip(keys, views))

    def state_dict(self) -> dict:
        """The optimizer's state_dict, plus the slow weights and the step count."""
        self._follow_layout()
        return {
            "optimizer": self.optimizer.state_dict(),
            "sync_period": self.sync_period,
            "slow_step_size": self.slow_step_size,
            "count": self.count,
            "slow": [s.copy() for s in self._slow],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores what ``state_dict`` returned (all checked before anything changes)."""
        self._follow_layout()
        sync_period = _positive_int(
            "state_dict's sync_period", state_dict.get("sync_period", self.sync_period)
        )
        slow_step_size = real(
            "state_dict's slow_step_size",
            state_dict.get("slow_step_size", self.slow_step_size),
            low=0.0,
            high=1.0,
        )
        count = _count("state_dict's count", state_dict["count"])
        slow = self._copies_from(state_dict["slow"], "slow")
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self._slow, self.count = slow, count
        self.sync_period, self.slow_step_size = sync_period, slow_step_size
