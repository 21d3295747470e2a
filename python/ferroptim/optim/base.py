"""The base class of the optimizers: param groups, ``step``, ``state_dict`` and pickling,
over one Rust engine per optimizer; and ``OPTIMIZERS``, every optimizer class by name."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable, Sequence, Union

import numpy as np

from .. import _core
from .._checks import count, real
from .groups import (
    _param_group,
    _ParamGroup,
    _parse_new_group,
    _parse_params,
    _saved_groups,
    _state_dict_parts,
)
from .state_dtypes import _ml_bfloat16, _state_dtype_name, _state_dtype_of, _to_state_array

ParamsLike = Union[Sequence[np.ndarray], Mapping[Any, np.ndarray], Sequence[dict]]
GradsLike = Union[Sequence[np.ndarray], Mapping[Any, np.ndarray]]
LR = Union[float, Callable[[int], float]]
DtypeLike = Any

_MAX_STEP = 2**64 - 2

# Every optimizer class by its engine name ("adam", "adamw", ...): filled as each class is
# defined (``Optimizer.__init_subclass__``), so a name is written once, on its class.
OPTIMIZERS: dict[str, type[Optimizer]] = {}


def _step_count(value: Any, name: str) -> int:
    """A saved step count as an int in [0, 2**64 - 2]: an integer, or an integral float (torch
    saves steps as float tensors); never truncated, and one below the counter's maximum so
    the next step cannot wrap."""
    expected = f"state 'step' of {name} must be an integer in [0, 2**64 - 2]"
    if type(value) is int:
        step = value
    else:
        a = np.asarray(value)
        if a.shape != () or a.dtype.kind not in "iuf":
            raise TypeError(f"{expected}, got {type(value).__name__} {value!r}")
        f = float(a)
        if a.dtype.kind == "f" and not (math.isfinite(f) and f == math.floor(f)):
            raise ValueError(f"{expected}, got {f!r}")
        step = int(a)
    if not 0 <= step <= _MAX_STEP:
        raise ValueError(f"{expected}, got {step}")
    return step


_NAN_POLICIES = ("propagate", "raise", "skip")
_U64_MAX = 2**64 - 1


class Optimizer:
    """Base class of the optimizers: param groups, ``step``, ``state_dict``.

    Args:
        params: the arrays to optimize, updated in place. A list of arrays, a dict
            ``name -> array``, or a list of param-group dicts ``{"params": ..., "lr": ...}``
            whose other entries override the defaults for that group. Arrays must be
            writeable, C-contiguous ``float32``, ``float64``, ``float16`` or bfloat16
            (``ml_dtypes.bfloat16``) arrays of any shape (including 0-d and empty); each
            keeps its dtype, and so does its state unless ``state_dtype`` says otherwise.
            Gradients have their parameter's dtype.
        defaults: the default hyper-parameters of every group.
        nan_policy: what a step does when a gradient holds NaN or infinity:
            ``"propagate"`` (default, like torch: the update is applied and the NaN spreads),
            ``"raise"`` (``FloatingPointError``; nothing is modified) or ``"skip"`` (nothing
            is modified; ``skipped_steps`` counts it). The check reads every gradient once
            more, so it costs about one extra pass over the gradients.
        max_grad_norm: if set, each step first scales the gradients (inside the step; your
            arrays are not modified) so that their global 2-norm is at most this, with
            ``torch.nn.utils.clip_grad_norm_``'s rule: ``g *= min(1, max_norm / (norm +
            1e-6))``. The norm before clipping is ``last_grad_norm``. Costs one extra read of
            the gradients.
        state_dtype: the element type of the state buffers (moments, momentum): None (the
            parameter's dtype; float32 for 16-bit parameters), ``"float32"``,
            ``"float64"`` (float64 parameters only), ``"bfloat16"`` or ``"float16"`` (a name
            or a dtype). 16-bit state is widened to float32 inside the fused kernel and
            rounded once per step on store (to nearest, ties to even): half the state's
            memory and about 30% fewer bytes per Adam step. ``"float16"`` is refused for
            second moments (Adam's ``exp_avg_sq``, RMSprop's ``square_avg``, ...): squared
            gradients below 6e-8 round to zero in float16 and above 65504 to infinity;
            bfloat16 has float32's range.
        master_weights: for float16 / bfloat16 parameters (default True): keep a float32
            copy of each, update that copy and write its rounding to your array every step,
            so updates smaller than half a 16-bit unit in the last place are not lost. The
            copy is made from your array at its first step and is in ``state_dict``
            (``"master_param"``); between steps, edit it through ``load_state_dict``, not
            the 16-bit array (which the next step overwrites). False: update the 16-bit
            array itself (computed in float32, rounded once). Ignored for float32/float64.

    Hyper-parameters live in ``param_groups`` (a list of dicts, as in torch) and may be
    changed between steps; they are checked again at every step. ``lr`` may also be a
    schedule: any callable ``k -> lr`` evaluated at the group's update number ``k``
    (0 for the first update). The parameters themselves are fixed: each group's
    ``"params"`` is a tuple that cannot be edited or replaced (a TypeError says so); add
    parameters with :meth:`add_param_group`.

    Optimizers can be pickled and deep-copied (with their parameters: pickle the
    parameters and the optimizer together to keep them linked); a schedule given as a
    lambda or local function makes pickling fail, as pickle stores functions by name.
    """

    _kind = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("_kind"):
            OPTIMIZERS[cls._kind] = cls

    def __init__(
        self,
        params: ParamsLike,
        defaults: dict,
        *,
        nan_policy: str = "propagate",
        max_grad_norm: float | None = None,
        state_dtype: DtypeLike = None,
        master_weights: bool | None = None,
    ):
        self.defaults = dict(defaults)
        groups, names, keys = _parse_params(params)
        self.param_groups: list[dict] = []
        for group in groups:
            full = dict(self.defaults)
            full.update(group)
            self.param_groups.append(_param_group(full))
        self._param_lists = [g["params"] for g in self.param_groups]
        self._version = 0  # bumped by add_param_group, so wrappers can follow
        self._names = names
        self._keys = keys
        if master_weights is not None and not isinstance(master_weights, (bool, np.bool_)):
            raise TypeError(
                f"master_weights must be None, True or False, got {type(master_weights).__name__}"
            )
        self._state_dtype = _state_dtype_name(state_dtype)
        self._master_weights = None if master_weights is None else bool(master_weights)
        self._engine = self._build_engine(nan_policy, max_grad_norm)
        self._engine.check_groups(self.param_groups)

    def _build_engine(self, nan_policy: str, max_grad_norm: float | None) -> _core.Engine:
        arrays, group_of = [], []
        for gi, ps in enumerate(self._param_lists):
            arrays += ps
            group_of += [gi] * len(ps)
        return _core.Engine(
            self._kind,
            arrays,
            self._names,
            group_of,
            len(self._param_lists),
            nan_policy,
            self._keys,
            max_grad_norm,
            self._state_dtype,
            self._master_weights,
            self._param_lists,
        )

    def _state_of(self, i: int, view: bool = True) -> dict:
        """Parameter ``i``'s state from the engine, 16-bit buffers viewed as their dtype
        (bfloat16 through ml_dtypes when it is installed; else, or without ``view``, uint16
        bit patterns)."""
        s = self._engine.state(i)
        dtype = self._engine.state_dtypes[i]
        if view and dtype in ("bfloat16", "float16"):
            as16 = np.dtype(np.float16) if dtype == "float16" else _ml_bfloat16()
            if as16 is not None:
                for k, v in s.items():
                    if isinstance(v, np.ndarray) and v.dtype == np.uint16:
                        s[k] = v.view(as16)
        return s

    def _groups(self) -> list[dict]:
        """``param_groups``, after confirming that its groups still hold the parameters the
        optimizer was built for (a group appended by hand, or a ``"params"`` entry
        replaced behind the dict's back, would otherwise be silently ignored). ``step``
        leaves this check to the engine, which makes it while reading the groups."""
        self._engine.check_param_groups(self.param_groups)
        return self.param_groups

    def _arrays(self) -> list[np.ndarray]:
        """The parameter arrays in parameter order."""
        self._groups()
        return [a for ps in self._param_lists for a in ps]

    # -- the protocol the wrappers (GradientAccumulation, Lookahead, Distributed) share --

    def _check_grads(self, grads: GradsLike) -> list[np.ndarray]:
        """The gradients ``step`` would use, checked, as a list in parameter order."""
        if not isinstance(grads, (dict, list, tuple)) and isinstance(grads, Mapping):
            grads = dict(grads)
        return self._engine.check_grads(grads)

    def _check_groups(self) -> None:
        """Raises as ``step`` would on a bad hyper-parameter, without stepping."""
        self._engine.check_groups(self.param_groups)

    def _step_checked(self, grads: list[np.ndarray], grad_scale: float = 1.0) -> bool:
        """One step with ``grads * grad_scale``; False when it was skipped (``nan_policy``)."""
        return self._engine.step(grads, self.param_groups, grad_scale)

    def _sync_layout(self) -> None:
        """Wrappers bring their per-parameter buffers up to date here; nothing to do."""

    def _sync_arrays(self) -> list[np.ndarray]:
        """The arrays that must be equal on every rank of a data-parallel job."""
        return self._arrays()

    # -- the step ------------------------------------------------------------------------

    def step(self, grads: GradsLike) -> None:
        """Updates every parameter in place from its gradient.

        Args:
            grads: one gradient per parameter, same shape and dtype as the parameter: a list
                in parameter order, or (when the parameters were given by name) a dict with
                the same keys. Gradients are only read.

        Raises:
            TypeError / ValueError: a gradient is missing, extra, of the wrong type, dtype or
                shape, or shares memory with a parameter; or a hyper-parameter is out of
                range. Nothing is modified.
            FloatingPointError: a gradient is not finite and ``nan_policy="raise"``.
        """
        if not isinstance(grads, (dict, list, tuple)) and isinstance(grads, Mapping):
            grads = dict(grads)
        self._engine.step(grads, self.param_groups)

    # -- hyper-parameters ---------------------------------------------------------------

    @property
    def lr(self) -> LR:
        """The learning rate of every param group (an error if the groups differ)."""
        first = self.param_groups[0]["lr"]
        if any(g["lr"] is not first and g["lr"] != first for g in self.param_groups[1:]):
            raise ValueError("param groups have different learning rates; use param_groups[i]['lr']")
        return first

    @lr.setter
    def lr(self, value: LR) -> None:
        old = [g["lr"] for g in self.param_groups]
        for g in self.param_groups:
            g["lr"] = value
        try:
            self._engine.check_groups(self.param_groups)
        except Exception:
            for g, v in zip(self.param_groups, old):
                g["lr"] = v
            raise

    @property
    def nan_policy(self) -> str:
        """``"propagate"``, ``"raise"`` or ``"skip"`` (see the class docstring)."""
        return self._engine.nan_policy

    @property
    def max_grad_norm(self) -> float | None:
        """The gradient-norm limit applied inside each step, or None (settable)."""
        return self._engine.max_grad_norm

    @max_grad_norm.setter
    def max_grad_norm(self, value: float | None) -> None:
        self._engine.max_grad_norm = value

    @property
    def last_grad_norm(self) -> float | None:
        """Global 2-norm of the last step's gradients before clipping (with max_grad_norm)."""
        return self._engine.last_grad_norm

    @property
    def skipped_steps(self) -> int:
        """Steps skipped because a gradient was not finite (``nan_policy="skip"``)."""
        return self._engine.skipped_steps

    def add_param_group(self, param_group: dict) -> None:
        """Adds a param group (as in torch); its state starts empty.

        Wrappers (:class:`~ferroptim.GradientAccumulation`, :class:`~ferroptim.Lookahead`,
        ``DistributedOptimizer``) around this optimizer take the new parameters in at
        their next step.
        """
        self._groups()
        new, names, keys = _parse_new_group(param_group, self._keys, len(self.param_groups))
        group = dict(self.defaults)
        group.update(new)
        group = _param_group(group)
        n_old = len(self._names)
        states = [self._engine.state(i) for i in range(n_old)]
        old = (self.param_groups, self._param_lists, self._names, self._keys, self._engine)
        self.param_groups = self.param_groups + [group]
        self._param_lists = self._param_lists + [group["params"]]
        self._names = self._names + names
        if keys is not None and self._keys is not None:
            self._keys = self._keys + keys
        try:
            engine = self._build_engine(self.nan_policy, self.max_grad_norm)
            engine.check_groups(self.param_groups)
            engine.set_states(states + [{} for _ in names])
            engine.skipped_steps = old[4].skipped_steps
        except Exception:
            self.param_groups, self._param_lists, self._names, self._keys, self._engine = old
            raise
        self._engine = engine
        self._version += 1

    # -- state ----------------------------------------------------------------------------

    @property
    def state(self) -> dict:
        """Each parameter's state, keyed like the parameters: copies of the step count and
        buffers (e.g. ``{"step": 3, "exp_avg": ..., "exp_avg_sq": ...}``)."""
        keys = self._keys if self._keys is not None else range(len(self._names))
        return {k: self._state_of(i) for i, k in enumerate(keys)}

    def state_dict(self) -> dict:
        """Everything needed to resume: step counts, buffers and hyper-parameters.

        Plain Python and NumPy objects (copies), in torch's layout: ``"state"`` maps the
        parameter index to its state, ``"param_groups"`` holds each group's options with
        ``"params"`` the indices of its parameters (and ``"param_names"`` when named), plus
        ``"nan_policy"``, ``"max_grad_norm"``, ``"skipped_steps"``, ``"state_dtype"`` and
        ``"master_weights"``. 16-bit state is in its dtype (bfloat16 as
        ``ml_dtypes.bfloat16`` when ml_dtypes is installed, else as uint16 bit patterns,
        which ``"state_dtype"`` names); master weights are float32 ``"master_param"``.
        """
        return self._state_dict(view=True)

    def _state_dict(self, view: bool) -> dict:
        """:meth:`state_dict`; without ``view``, 16-bit state as uint16 bit patterns (what a
        pickle holds, so that it loads without ml_dtypes)."""
        groups = _saved_groups(self._groups(), self._keys)
        state = {}
        for i in range(len(self._names)):
            s = self._state_of(i, view)
            if s["step"] or len(s) > 1:
                state[i] = s
        return {
            "state": state,
            "param_groups": groups,
            "nan_policy": self.nan_policy,
            "max_grad_norm": self.max_grad_norm,
            "skipped_steps": self.skipped_steps,
            "state_dtype": self._state_dtype,
            "master_weights": self._master_weights,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores what ``state_dict`` returned; continuing is bit-identical to never stopping.

        Everything is checked before anything changes: the number of groups and of
        parameters per group, parameter names (when both sides have them), each buffer's
        shape, the hyper-parameters, ``nan_policy``, ``max_grad_norm`` and
        ``skipped_steps`` (each restored when present). Buffers are cast to their
        parameter's dtype. ``last_grad_norm`` starts again at None.
        """
        self._groups()
        saved_groups, saved_state = _state_dict_parts(state_dict, len(self.param_groups))
        new_groups: list[dict] = []
        index_of: dict[Any, int] = {}
        start = 0
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            ids = list(saved.get("params", []))
            n = len(group["params"])
            if len(ids) != n:
                raise ValueError(
                    f"param group {gi} of state_dict has {len(ids)} parameters, this optimizer's has {n}"
                )
            names = saved.get("param_names")
            if names is not None and self._keys is not None:
                if list(names) != list(self._keys[start : start + n]):
                    raise ValueError(f"param group {gi} of state_dict names different parameters")
            for j, pid in enumerate(ids):
                index_of[pid] = start + j
            g = {k: v for k, v in saved.items() if k not in ("params", "param_names")}
            g["params"] = group["params"]
            new_groups.append(_ParamGroup(g))
            start += n
        states: list[dict] = [{} for _ in self._names]
        arrays = self._arrays()
        saved_option = _state_dtype_name(state_dict.get("state_dtype", self._state_dtype))
        for pid, s in saved_state.items():
            if pid not in index_of:
                raise ValueError(f"state_dict has state for unknown parameter {pid!r}")
            i = index_of[pid]
            if not isinstance(s, Mapping):
                raise TypeError(
                    f"state_dict['state'][{pid!r}] must be a dict of the state of {self._names[i]}, "
                    f"got {type(s).__name__}"
                )
            saved = _state_dtype_of(saved_option, arrays[i])
            target = self._engine.state_dtypes[i]
            states[i] = self._coerce_state(
                dict(s), arrays[i], self._names[i], self._engine.scalar_state_names, target, saved
            )
        nan_policy = state_dict.get("nan_policy", self.nan_policy)
        if not isinstance(nan_policy, str) or nan_policy not in _NAN_POLICIES:
            raise ValueError(f"state_dict's nan_policy must be one of {_NAN_POLICIES}, got {nan_policy!r}")
        max_grad_norm = state_dict.get("max_grad_norm", self.max_grad_norm)
        if max_grad_norm is not None:
            max_grad_norm = real("state_dict's max_grad_norm", max_grad_norm, low=0.0)
        skipped = state_dict.get("skipped_steps", self.skipped_steps)
        skipped = count("state_dict's skipped_steps", skipped)
        if skipped > _U64_MAX:
            raise ValueError(f"state_dict's skipped_steps must be < 2**64, got {skipped}")
        # A new engine holds everything restored; it replaces the old one only once every
        # part has been accepted, so a failure leaves this optimizer as it was.
        engine = self._build_engine(nan_policy, max_grad_norm)
        engine.check_groups(new_groups)
        engine.set_states(states)
        engine.skipped_steps = skipped
        self._engine = engine
        self.param_groups = new_groups

    # -- pickle and copy.deepcopy, through the state_dict ---------------------------------

    _PICKLED = (
        "defaults",
        "param_groups",
        "_param_lists",
        "_version",
        "_names",
        "_keys",
        "_engine",
        "_state_dtype",
        "_master_weights",
    )

    def __getstate__(self) -> dict:
        groups = [dict(g, params=list(g["params"])) for g in self._groups()]
        extra = {k: v for k, v in self.__dict__.items() if k not in self._PICKLED}
        return {
            "defaults": self.defaults,
            "groups": groups,
            "names": self._names,
            "keys": self._keys,
            # 16-bit state as uint16 bits and its dtype's name: loads with or without ml_dtypes.
            "state_dict": self._state_dict(view=False),
            "version": self._version,
            "extra": extra,
        }

    def __setstate__(self, st: dict) -> None:
        self.__dict__.update(st["extra"])
        self.defaults = st["defaults"]
        self.param_groups = [_param_group(g) for g in st["groups"]]
        self._param_lists = [g["params"] for g in self.param_groups]
        self._version = st["version"]
        self._names, self._keys = st["names"], st["keys"]
        sd = st["state_dict"]
        self._state_dtype = sd.get("state_dtype")
        self._master_weights = sd.get("master_weights")
        self._engine = self._build_engine(sd["nan_policy"], sd["max_grad_norm"])
        self.load_state_dict(sd)

    @staticmethod
    def _coerce_state(
        s: dict, param: np.ndarray, name: str, scalar_names: list[str], target: str, saved: str
    ) -> dict:
        """A saved state as the engine takes it: buffers in ``target`` (the state dtype here),
        read as ``saved`` (the state dtype they were saved with) when they are bit patterns."""
        out: dict[str, Any] = {}
        for k, v in s.items():
            if k == "step":
                out[k] = _step_count(v, name)
                continue
            if k in scalar_names:
                out[k] = float(np.asarray(v))
                continue
            a = np.asarray(v)
            if a.shape != param.shape or not (a.dtype.kind in "fuV" and a.dtype.itemsize in (2, 4, 8)):
                raise ValueError(
                    f"state {k!r} of {name} must be a float array of shape {param.shape}, "
                    f"got {a.dtype} {a.shape}"
                )
            where = f"state {k!r} of {name}"
            if k == "master_param":
                out[k] = _to_state_array(a, "float32", "float32", where)
            else:
                out[k] = _to_state_array(a, target, saved, where)
        return out

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        lines.append(")")
        return "\n".join(lines)
