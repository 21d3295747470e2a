"""Optimizer wrappers: gradient accumulation and Lookahead. The per-element work (adding,
averaging, interpolating) runs in Rust; the wrappers keep the training loop unchanged."""

from __future__ import annotations

import numbers

import numpy as np

from . import _core
from .optim import GradsLike, Optimizer

__all__ = ["GradientAccumulation", "Lookahead"]


class _Wrapper:
    """Forwards the hyper-parameter surface of the wrapped optimizer."""

    optimizer: Optimizer

    @property
    def param_groups(self) -> list[dict]:
        """The wrapped optimizer's param groups (hyper-parameters live there)."""
        return self.optimizer.param_groups

    @property
    def lr(self):
        """The wrapped optimizer's learning rate (settable)."""
        return self.optimizer.lr

    @lr.setter
    def lr(self, value) -> None:
        self.optimizer.lr = value

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
        if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        self.optimizer = optimizer
        self.steps = int(steps)
        self.count = 0
        self._acc = [np.zeros_like(p) for p in optimizer._arrays()]

    def step(self, grads: GradsLike) -> bool:
        """Adds ``grads``; on every ``steps``-th call, steps the optimizer with the mean."""
        checked = self.optimizer._engine.check_grads(grads)
        self.optimizer._engine.check_groups(self.optimizer.param_groups)
        _core.accumulate_(self._acc, checked, self.count == 0)
        self.count += 1
        if self.count < self.steps:
            return False
        self.count = 0
        return self.optimizer._engine.step(self._acc, self.optimizer.param_groups, 1.0 / self.steps)

    def state_dict(self) -> dict:
        """The optimizer's state_dict, plus the micro-batches accumulated so far."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
            "count": self.count,
            "accumulated": [a.copy() for a in self._acc],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores what ``state_dict`` returned (all checked before anything changes)."""
        count = int(state_dict["count"])
        if not 0 <= count < self.steps or int(state_dict["steps"]) != self.steps:
            raise ValueError(
                f"state_dict is for steps={state_dict['steps']} with count={count}; this "
                f"wrapper has steps={self.steps}"
            )
        acc = self._copies_from(state_dict["accumulated"], "accumulated")
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self._acc, self.count = acc, count


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
        if not isinstance(sync_period, numbers.Integral) or isinstance(sync_period, bool) or sync_period < 1:
            raise ValueError(f"sync_period must be an integer >= 1, got {sync_period!r}")
        if not 0.0 <= slow_step_size <= 1.0:
            raise ValueError(f"slow_step_size must be in [0, 1], got {slow_step_size!r}")
        self.optimizer = optimizer
        self.sync_period = int(sync_period)
        self.slow_step_size = float(slow_step_size)
        self.count = 0
        self._slow = [p.copy() for p in optimizer._arrays()]

    def step(self, grads: GradsLike) -> None:
        """One fast step; every ``sync_period``-th one also synchronises."""
        self.optimizer.step(grads)
        self.count += 1
        if self.count % self.sync_period == 0:
            _core.lookahead_sync_(self._slow, self.optimizer._arrays(), self.slow_step_size)

    @property
    def slow_params(self):
        """Read-only views of the slow weights, keyed like the parameters (list or dict)."""
        views = []
        for s in self._slow:
            v = s.view()
            v.flags.writeable = False
            views.append(v)
        keys = self.optimizer._keys
        return views if keys is None else dict(zip(keys, views))

    def state_dict(self) -> dict:
        """The optimizer's state_dict, plus the slow weights and the step count."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "sync_period": self.sync_period,
            "slow_step_size": self.slow_step_size,
            "count": self.count,
            "slow": [s.copy() for s in self._slow],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores what ``state_dict`` returned (all checked before anything changes)."""
        slow = self._copies_from(state_dict["slow"], "slow")
        count = int(state_dict["count"])
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self._slow, self.count = slow, count
        self.sync_period = int(state_dict.get("sync_period", self.sync_period))
        self.slow_step_size = float(state_dict.get("slow_step_size", self.slow_step_size))
