r"""Exponentially weighted averages: of a whole series, streaming, and of model parameters.

The lecture's building block, with ``v_0 = 0`` and ``t = 1, 2, ...``::

    v_t = beta * v_{t-1} + (1 - beta) * x_t        # averages about the last 1/(1-beta) values
    v_t / (1 - beta**t)                            # bias-corrected: no start-up lag at 0

``beta=0.9`` averages roughly the last 10 values, ``0.98`` the last 50 (smooth, lagging),
``0.5`` the last 2 (noisy). Unlike a moving average it keeps one number of memory per lane.
Every average here uses the same Rust primitive as the optimizers' moments.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Iterator, Union

import numpy as np

from . import _core
from ._checks import flag, number_type, real
from .optim import ParamsLike, _parse_params

__all__ = ["ewa", "moving_average", "EWA", "ParameterEMA"]

Number = Union[int, float, np.number]


def _float_array(x: Any, name: str = "x") -> np.ndarray:
    """``x`` as a C-contiguous, aligned array the kernels take (a copy only when needed):
    float32 and float64 as they are, other floats of up to 4 bytes (float16, big-endian
    float32) as float32, other floats, integers and booleans as float64 (as ``np.mean``
    treats integers)."""
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.dtype == np.float32 or a.dtype == np.float64:
        dtype = a.dtype
    else:
        dtype = np.dtype(np.float32 if a.dtype.kind == "f" and a.dtype.itemsize <= 4 else np.float64)
    return np.require(a, dtype, ["C_CONTIGUOUS", "ALIGNED"])


def _axis(axis: Any, x: np.ndarray) -> int:
    """``axis`` as an int small enough for the core, which checks it against ``x.ndim``."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {type(axis).__name__}")
    if not -(2**62) <= axis < 2**62:
        raise ValueError(f"axis {axis} is out of bounds for an array of {x.ndim} dimensions")
    return int(axis)


def _unit_interval(name: str, value: Any) -> float:
    return real(name, value, low=0.0, high=1.0, high_open=True)


def ewa(x: Any, beta: float, bias_correction: bool = True, axis: int = 0) -> np.ndarray:
    r"""The exponentially weighted average of ``x`` along ``axis``, computed in Rust.

    With ``v_0 = 0`` and ``t = 1, ..., n`` along the axis::

        v_t   = beta * v_{t-1} + (1 - beta) * x_t
        out_t = v_t / (1 - beta**t)       if bias_correction else v_t

    Every other axis is an independent series (computed in parallel for large arrays).
    ``beta``, ``1 - beta`` and ``1 - beta**t`` are computed in double precision and rounded
    once to the array's dtype, so the result equals a NumPy loop over this formula bit for
    bit, whatever the thread count or SIMD level.

    Args:
        x: the series, any shape with at least one dimension, in its own units (the output
            has the same units and shape). float32 and float16 give float32; float64,
            integers and booleans give float64.
        beta: the decay per step, in [0, 1); the average spans about ``1 / (1 - beta)``
            steps.
        bias_correction: divide by ``1 - beta**t``, which removes the pull towards 0 of the
            first ~``1 / (1 - beta)`` values.
        axis: the time axis (negative counts from the end).

    Example:
        >>> import ferroptim as fo
        >>> fo.ewa([10.0, 10.0, 10.0], beta=0.5, bias_correction=False)
        array([5.  , 7.5 , 8.75])
        >>> fo.ewa([10.0, 10.0, 10.0], beta=0.5)
        array([10., 10., 10.])
    """
    x = _float_array(x)
    return _core.ewa(x, number_type("beta", beta), flag("bias_correction", bias_correction), _axis(axis, x))


def moving_average(x: Any, window: int, axis: int = 0) -> np.ndarray:
    r"""The trailing moving average of ``x`` along ``axis``, computed in Rust.

    The output has the shape of ``x``; step ``t`` averages the last ``window`` values, or
    all values so far while fewer are available::

        out_t = mean(x[max(0, t - window + 1) : t + 1])

    This is pandas' ``rolling(window, min_periods=1).mean()``; ``out[window - 1:]`` is
    NumPy's ``np.convolve(x, np.ones(window) / window, "valid")``. Sums are kept in double
    precision with compensation, so each mean is within a few units in the last place of
    the exact mean of its window however long the series, and a NaN or infinity only
    affects the windows that contain it.

    It keeps ``window`` values of memory per series where :func:`ewa` keeps one, and weighs
    them equally.

    Args:
        x: the series, any shape with at least one dimension (dtypes as in :func:`ewa`).
        window: the number of steps averaged, an int in [1, 2**63 - 1] (one longer than
            the series averages everything so far).
        axis: the time axis (negative counts from the end).

    Example:
        >>> import ferroptim as fo
        >>> fo.moving_average([1.0, 2.0, 3.0, 4.0], window=2)
        array([1. , 1.5, 2.5, 3.5])
    """
    if isinstance(window, (bool, np.bool_)) or not isinstance(window, (int, np.integer)):
        raise TypeError(f"window must be an integer >= 1, got {type(window).__name__}")
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    if window > 2**63 - 1:
        raise ValueError(f"window must be at most 2**63 - 1 (a 64-bit count), got {window}")
    x = _float_array(x)
    # A window longer than the series averages all of it so far, however much longer.
    return _core.moving_average(x, min(int(window), 2**62), _axis(axis, x))


class EWA:
    r"""A streaming exponentially weighted average, e.g. a smoothed loss printed in training.

    Each ``update(x)`` applies, with ``v`` starting at 0 and ``t`` the number of updates::

        v = beta * v + (1 - beta) * x
        value = v / (1 - beta**t)         if bias_correction else v

    ``x`` may be a number (``value`` is then a Python float, computed in double precision)
    or an array (``value`` is an array shaped like the first ``x``, in the dtype
    :func:`ewa` would give it; each update is one Rust call). The values equal those of
    :func:`ewa` over the same series bit for bit.

    Args:
        beta: the decay per update, in [0, 1); see :attr:`window`.
        bias_correction: divide by ``1 - beta**t``, so the first values are not pulled
            towards 0.

    Attributes:
        t: the number of updates so far.

    Example:
        >>> import ferroptim as fo
        >>> loss = fo.EWA(beta=0.9)
        >>> loss.update(2.0), loss.update(4.0)
        (2.0, 3.0526315789473686)
        >>> loss.window
        10.000000000000002
    """

    def __init__(self, beta: float, bias_correction: bool = True):
        self.beta = _unit_interval("beta", beta)
        self.bias_correction = flag("bias_correction", bias_correction)
        self.reset()

    def reset(self) -> None:
        """Forgets every update (``value`` becomes None, ``t`` 0)."""
        self.t = 0
        self._v: float | np.ndarray | None = None

    @property
    def window(self) -> float:
        """The effective number of updates averaged, ``1 / (1 - beta)``."""
        return 1.0 / (1.0 - self.beta)

    def update(self, x: Number | np.ndarray) -> float | np.ndarray:
        """Adds ``x`` to the average and returns the new :attr:`value`.

        Raises:
            TypeError: ``x`` is not real-valued.
            ValueError: ``x`` does not have the shape of the earlier updates (a number
                after arrays or an array after numbers included).
        """
        if np.ndim(x) == 0 and not isinstance(self._v, np.ndarray):
            if isinstance(x, (bool, np.bool_)) or np.asarray(x).dtype.kind not in "iuf":
                raise TypeError(f"x must be a real number or an array, got {type(x).__name__}")
            v = 0.0 if self._v is None else self._v
            self._v = self.beta * v + (1.0 - self.beta) * float(x)
        else:
            a = _float_array(x)
            if self._v is None:
                self._v = np.zeros(a.shape, a.dtype)
            elif not isinstance(self._v, np.ndarray):
                raise ValueError(f"x has shape {a.shape}, expected a number like the earlier updates")
            elif a.shape != self._v.shape:
                raise ValueError(
                    f"x has shape {a.shape}, expected shape {self._v.shape} like the earlier updates"
                )
            _core.ema_update([self._v], [np.require(a, self._v.dtype, "C")], self.beta, ["x"])
        self.t += 1
        value = self.value
        assert value is not None  # set by this update
        return value

    @property
    def value(self) -> float | np.ndarray | None:
        """The current average (a new array each time for arrays), None before any update."""
        if self._v is None:
            return None
        correction = 1.0 - self.beta**self.t if self.bias_correction else 1.0
        if isinstance(self._v, np.ndarray):
            return self._v / self._v.dtype.type(correction)
        return self._v / correction

    def state_dict(self) -> dict:
        """``beta``, ``bias_correction``, ``t`` and the uncorrected average ``v`` (a copy)."""
        v = self._v.copy() if isinstance(self._v, np.ndarray) else self._v
        return {"beta": self.beta, "bias_correction": self.bias_correction, "t": self.t, "v": v}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores what :meth:`state_dict` returned (checked before anything changes)."""
        try:
            beta, corrected, t, v = (state_dict[k] for k in ("beta", "bias_correction", "t", "v"))
        except (KeyError, TypeError):
            raise ValueError("state_dict must have 'beta', 'bias_correction', 't' and 'v' entries") from None
        restored = EWA(beta, corrected)
        t = int(t)
        if t < 0 or (v is None) != (t == 0):
            raise ValueError(f"state_dict has t={t} and v={v!r}: v is None exactly when t is 0")
        if v is not None:
            v = float(v) if np.ndim(v) == 0 else np.array(_float_array(v, "v"), order="C")
        self.beta, self.bias_correction, self.t, self._v = restored.beta, restored.bias_correction, t, v

    def __repr__(self) -> str:
        return f"EWA(beta={self.beta}, bias_correction={self.bias_correction}, t={self.t})"


try:
    from numpy.lib.array_utils import byte_bounds as _byte_bounds
except ImportError:  # numpy < 2
    _byte_bounds = np.byte_bounds  # type: ignore[attr-defined]  # NumPy 1 only, type-checked with NumPy 2


def _check_distinct(arrays: list, names: list) -> None:
    """Refuses, as the optimizers do, an array given twice or two that share memory (tied
    weights, overlapping views): swapping the averages in and out of them could not restore
    both."""
    for i, a in enumerate(arrays):
        for j in range(i):
            if arrays[j] is a:
                raise ValueError(
                    f"parameter {names[i]} is the same array as {names[j]}; pass each parameter once"
                )
    extents = sorted((*_byte_bounds(a), i) for i, a in enumerate(arrays) if a.size)
    for k, (_, end, i) in enumerate(extents):
        for start2, _, j in extents[k + 1 :]:
            if start2 >= end:
                break
            if np.shares_memory(arrays[i], arrays[j]):
                first, second = sorted((i, j))
                raise ValueError(
                    f"parameters {names[first]} and {names[second]} share memory; each element "
                    "may belong to one of them only"
                )


class ParameterEMA:
    r"""An exponential moving average of model parameters (Polyak averaging), for evaluation.

    Call :meth:`update` after each optimizer step. For every parameter ``p`` and its average
    ``a`` (all in one Rust call)::

        a = d * a + (1 - d) * p

    The averages start as copies of the parameters. With ``debias=False`` (torch's
    ``AveragedModel`` with an EMA, timm's ``ModelEmaV2``) ``d`` is ``decay``, so the
    starting values keep the weight ``decay**t``. With ``debias=True`` update ``t`` (1-based)
    uses ``d = decay * (1 - decay**(t-1)) / (1 - decay**t)``, which makes ``a`` exactly the
    lecture's bias-corrected average of the parameters seen by the updates,
    ``sum_i (1 - decay) decay**(t-i) p_i / (1 - decay**t)`` (optax ``ema(debias=True)``):
    the first update copies ``p``, and the starting values carry no weight.

    Args:
        params: the parameters, as given to an optimizer: a list of arrays, a dict
            ``name -> array`` or param-group dicts (only their ``"params"`` are read).
            float32 or float64 arrays of any shape; each average has its parameter's dtype
            and shape.
        decay: in [0, 1); the average spans about ``1 / (1 - decay)`` updates (0.999:
            the last ~1000).
        debias: see above.

    Attributes:
        num_updates: the number of updates so far.

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> w = np.zeros(2)
        >>> opt = fo.SGD([w], lr=1.0)
        >>> ema = fo.ParameterEMA([w], decay=0.5)
        >>> for g in ([1.0, 1.0], [1.0, -1.0]):
        ...     opt.step([np.array(g)])
        ...     ema.update()
        >>> w, ema.averages[0]
        (array([-2.,  0.]), array([-1.25, -0.25]))
        >>> with ema.swap():      # w holds the averages inside the block, e.g. to evaluate
        ...     print(w)
        [-1.25 -0.25]
        >>> w
        array([-2.,  0.])
    """

    def __init__(self, params: ParamsLike, decay: float = 0.999, *, debias: bool = False):
        self.decay = _unit_interval("decay", decay)
        self.debias = flag("debias", debias)
        groups, self._names, self._keys = _parse_params(params)
        self._params = [p for g in groups for p in g["params"]]
        for p, name in zip(self._params, self._names):
            if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
                what = f"dtype {p.dtype}" if isinstance(p, np.ndarray) else type(p).__name__
                raise TypeError(f"parameter {name} must be a float32 or float64 ndarray, got {what}")
        _check_distinct(self._params, self._names)
        self._averages = [np.array(p, order="C", copy=True) for p in self._params]
        self.num_updates = 0

    @property
    def averages(self) -> dict | list:
        """The average arrays themselves (updated in place; treat them as read-only),
        keyed like the parameters: a dict if they were named, else a list."""
        if self._keys is None:
            return list(self._averages)
        return dict(zip(self._keys, self._averages))

    def _decay_at(self, t: int) -> float:
        if not self.debias:
            return self.decay
        return self.decay * (1.0 - self.decay ** (t - 1)) / (1.0 - self.decay**t)

    def _arrays(self, params: Any) -> list:
        """``params`` (None: those given at construction) as a list in parameter order."""
        if params is None:
            return self._params
        if isinstance(params, np.ndarray):
            raise TypeError(
                "params must be a list or dict of arrays; got a single ndarray (wrap it in a list)"
            )
        if not isinstance(params, Mapping):
            arrays = list(params)
        elif self._keys is None:
            raise TypeError("params is a dict but the parameters were given as a list; pass a list")
        else:
            missing = [k for k in self._keys if k not in params]
            extra = [k for k in params if k not in set(self._keys)]
            if missing or extra:
                raise ValueError(
                    f"params does not match the averaged parameters: missing {missing}, unknown {extra}"
                )
            arrays = [params[k] for k in self._keys]
        if len(arrays) != len(self._averages):
            raise ValueError(f"expected {len(self._averages)} parameters, got {len(arrays)}")
        return arrays

    def update(self, params: Any = None) -> None:
        """Moves every average towards its parameter (formula in the class docstring).

        Args:
            params: the current parameters, keyed or ordered like those given at
                construction; None (the usual case) reads the arrays given at construction,
                which the optimizer updates in place.
        """
        arrays = self._arrays(params)
        t = self.num_updates + 1
        _core.ema_update(self._averages, arrays, self._decay_at(t), self._names)
        self.num_updates = t

    def _targets(self, params: Any) -> list:
        targets = self._arrays(params)
        for a, p, name in zip(self._averages, targets, self._names):
            if not isinstance(p, np.ndarray) or p.shape != a.shape or p.dtype != a.dtype:
                raise ValueError(f"parameter {name} must be a {a.dtype} array of shape {a.shape}")
            if not p.flags.writeable:
                raise ValueError(f"parameter {name} is read-only")
        return targets

    def copy_to(self, params: Any = None) -> None:
        """Writes the averages into ``params`` (None: the arrays given at construction),
        e.g. to keep the averaged model at the end of training."""
        for p, a in zip(self._targets(params), self._averages):
            np.copyto(p, a)

    @contextlib.contextmanager
    def swap(self, params: Any = None) -> Iterator[ParameterEMA]:
        """A context in which ``params`` (None: the arrays given at construction) hold the
        averages, and the averages the parameters; both are swapped back on exit, even on
        an exception. For evaluating with the averaged weights in the middle of training;
        do not call :meth:`update` or step the optimizer inside it."""
        targets = self._targets(params)
        self._exchange(targets)
        try:
            yield self
        finally:
            self._exchange(targets)

    def _exchange(self, targets: list) -> None:
        for p, a in zip(targets, self._averages):
            saved = p.copy()
            np.copyto(p, a)
            np.copyto(a, saved)

    def state_dict(self) -> dict:
        """``decay``, ``debias``, ``num_updates``, copies of the ``averages`` (a list in
        parameter order) and ``param_names`` (None if the parameters were not named)."""
        return {
            "decay": self.decay,
            "debias": self.debias,
            "num_updates": self.num_updates,
            "averages": [a.copy() for a in self._averages],
            "param_names": None if self._keys is None else list(self._keys),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores what :meth:`state_dict` returned, into the existing average arrays
        (cast to their dtype). Everything is checked before anything changes."""
        try:
            decay, debias, n, saved = (state_dict[k] for k in ("decay", "debias", "num_updates", "averages"))
        except (KeyError, TypeError):
            raise ValueError(
                "state_dict must have 'decay', 'debias', 'num_updates' and 'averages' entries"
            ) from None
        decay = _unit_interval("decay", decay)
        if int(n) < 0:
            raise ValueError(f"num_updates must be >= 0, got {n}")
        names = state_dict.get("param_names")
        if names is not None and self._keys is not None and list(names) != list(self._keys):
            raise ValueError("state_dict averages different parameters (param_names differ)")
        saved = [np.asarray(s) for s in saved]
        if len(saved) != len(self._averages):
            raise ValueError(f"state_dict has {len(saved)} averages, expected {len(self._averages)}")
        for s, a, name in zip(saved, self._averages, self._names):
            if s.shape != a.shape or s.dtype.kind != "f":
                raise ValueError(
                    f"the average of {name} must be a float array of shape {a.shape}, got {s.dtype} {s.shape}"
                )
        for s, a in zip(saved, self._averages):
            np.copyto(a, s, casting="unsafe")
        self.decay, self.debias, self.num_updates = decay, bool(debias), int(n)

    def __repr__(self) -> str:
        return (
            f"ParameterEMA({len(self._averages)} parameters, decay={self.decay}, "
            f"debias={self.debias}, num_updates={self.num_updates})"
        )
