"""What the optimizers outside the engine share (Adafactor, Muon and the schedule-free ones):
param groups built from ``defaults`` and checked, ``add_param_group``, ``state``,
``state_dict`` in torch's layout, ``load_state_dict`` and torch's ``repr``; and, for those
whose Rust step takes every tensor in one call, the step's cheap checks: each group's
options re-checked only when an entry changed, the gradients put in parameter order (Rust
checks each), the state's arrays listed once."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Mapping
from typing import Any

import numpy as np

from .groups import (
    _check_param_arrays,
    _fixed_arrays,
    _groups_repr,
    _load_per_tensor,
    _ordered_grads,
    _param_group,
    _parse_new_group,
    _parse_params,
    _saved_groups,
)

_PARAMS = itertools.repeat("params")


class _PerTensor:
    """The base of the per-tensor optimizers. A subclass sets ``_name`` and
    ``_state_keys`` and defines ``_check_hyper`` (a group's checked options) and ``step``;
    it may refine ``_normalize`` (a saved group's lists back to tuples), ``_check_param``
    (its own rule for a parameter), ``_copy_state`` and ``_load_state``."""

    _name = ""
    _state_keys: tuple[str, ...] = ()

    def __init__(self, params: Any, defaults: dict[str, Any]):
        self.defaults = dict(defaults)
        self._check_hyper(self.defaults, 0)
        groups, names, keys = _parse_params(params)
        full = [self._full_group(g, gi) for gi, g in enumerate(groups)]
        _check_param_arrays([a for g in full for a in g["params"]], names, self._check_param)
        self._names, self._keys = names, keys
        self.param_groups: list[dict] = [_param_group(g) for g in full]
        self._param_lists = [g["params"] for g in self.param_groups]
        self._state: dict[int, dict[str, Any]] = {}
        self._step_cache_clear()

    # -- subclass hooks -------------------------------------------------------------------
    def _check_hyper(self, g: Mapping, gi: int) -> dict:
        raise NotImplementedError

    def _normalize(self, g: dict) -> None:
        """Puts a group's options in their canonical form in place (lists to tuples)."""

    def _check_param(self, a: np.ndarray, name: str) -> None:
        """The optimizer's own rule for a parameter (beyond a float32/float64 array)."""

    def _new_state(self, param: np.ndarray) -> dict[str, Any]:
        """A parameter's state before its first step (for the one-call steps)."""
        raise NotImplementedError

    def _copy_state(self, s: dict) -> dict:
        return {k: v.copy() for k, v in s.items()}

    def _load_state(self, s: Any, param: np.ndarray, name: str) -> dict[str, Any]:
        """One parameter's saved state: float arrays of its shape under ``_state_keys``,
        cast to its dtype."""
        if not isinstance(s, Mapping) or set(s) != set(self._state_keys):
            raise ValueError(f"the state of {name} must have the entries {sorted(self._state_keys)}")
        out = {}
        for k in self._state_keys:
            a = np.asarray(s[k])
            if a.shape != param.shape or a.dtype.kind != "f":
                raise ValueError(
                    f"{k} of {name} must be a float array of shape {param.shape}, got {a.dtype} {a.shape}"
                )
            out[k] = np.array(a, dtype=param.dtype, order="C")
        return out

    # -------------------------------------------------------------------------------------
    def _full_group(self, group: Mapping, gi: int) -> dict:
        g = dict(self.defaults)
        g.update(group)
        self._normalize(g)
        self._check_hyper(g, gi)
        return g

    def _arrays(self) -> list[np.ndarray]:
        return _fixed_arrays(self._name, self.param_groups, self._param_lists)

    # -- the one-call step's checks, cheap on every step -----------------------------------
    def _step_cache_clear(self) -> None:
        """Forgets what the step caches (after the groups or the state were replaced)."""
        # per group: (its keys, its values, their checked options, whether to re-check
        # anyway) or None
        self._hyper_cache: list[tuple | None] = []
        self._flat: list[np.ndarray] | None = None
        # the parameters' state dicts in order, once every parameter has one
        self._states: list[dict] | None = None

    def _step_arrays(self) -> list[np.ndarray]:
        """:meth:`_arrays`, the flat list kept between steps (the groups' parameter lists
        are fixed; confirmed each time)."""
        groups, lists = self.param_groups, self._param_lists
        flat = self._flat
        if (
            flat is None
            or len(groups) != len(lists)
            or not all(map(operator.is_, map(dict.get, groups, _PARAMS), lists))
        ):
            flat = self._flat = self._arrays()
        return flat

    def _hypers(self) -> list[dict]:
        """Each group's checked options (:meth:`_check_hyper`), checked again only for a
        group whose entries are not the very objects last checked, or hold a schedule or a
        mutable value. The dicts returned are the cache's: copy one before changing it."""
        cache = self._hyper_cache
        groups = self.param_groups
        if len(cache) != len(groups):
            cache[:] = [None] * len(groups)
        out = []
        for gi, g in enumerate(groups):
            c = cache[gi]
            if c is not None and not c[3] and g.keys() == c[0] and all(map(operator.is_, g.values(), c[1])):
                out.append(c[2])
                continue
            h = self._check_hyper(g, gi)
            values = tuple(g.values())
            again = any(
                callable(v) or isinstance(v, (list, dict, np.ndarray)) for k, v in g.items() if k != "params"
            )
            cache[gi] = (set(g), values, h, again)
            out.append(h)
        return out

    def _hyper_update(self, gi: int, entries: dict, checked: dict | None) -> None:
        """Sets group ``gi``'s ``entries`` (the step's own counters) and their checked
        values ``checked`` in the cache (None: forget the group's, to check it next time)."""
        g = self.param_groups[gi]
        dict.update(g, entries)  # (none is "params", which a group refuses to change)
        c = self._hyper_cache[gi] if gi < len(self._hyper_cache) else None
        if c is not None:
            if checked is None:
                self._hyper_cache[gi] = None
            else:
                self._hyper_cache[gi] = (c[0], tuple(g.values()), {**c[2], **checked}, c[3])

    def _grad_list(self, grads: Any, n: int) -> list:
        """``grads`` as a list in parameter order; each gradient is checked in Rust."""
        return _ordered_grads(grads, self._keys, n)

    def _step_states(self, arrays: list[np.ndarray]) -> tuple[list[dict], dict[int, dict]]:
        """Every parameter's state dict in order, and those made now (not yet in
        ``state``: the step adds them with :meth:`_commit_states` once it succeeded)."""
        states = self._states
        if states is not None:
            return states, {}
        new = {i: self._new_state(p) for i, p in enumerate(arrays) if i not in self._state}
        return [self._state.get(i) or new[i] for i in range(len(arrays))], new

    def _commit_states(self, states: list[dict], new: dict[int, dict]) -> None:
        if new:
            self._state.update(new)
        self._states = states

    def _check_groups(self) -> None:
        """Every group's options checked, and its parameters the ones given (what ``step``
        checks first), without stepping."""
        self._arrays()
        for gi, g in enumerate(self.param_groups):
            self._check_hyper(g, gi)

    def add_param_group(self, param_group: dict) -> None:
        """Adds a param group (as in torch): options missing from it are taken from
        ``defaults``; its parameters' state starts empty. Refused (nothing changes) when an
        option is out of range, a parameter is not one this optimizer can step, or one is
        already in another group (it shares memory)."""
        arrays = self._arrays()
        gi = len(self.param_groups)
        group, names, keys = _parse_new_group(param_group, self._keys, gi)
        g = self._full_group(group, gi)
        _check_param_arrays(arrays + list(g["params"]), self._names + names, self._check_param)
        group = _param_group(g)
        self.param_groups.append(group)
        self._param_lists.append(group["params"])
        self._step_cache_clear()
        self._names = self._names + names
        if keys is not None and self._keys is not None:
            self._keys = self._keys + keys

    @property
    def state(self) -> dict:
        """Each stepped parameter's state (copies), keyed like the parameters."""
        keys = self._keys if self._keys is not None else list(range(len(self._names)))
        return {keys[i]: self._copy_state(s) for i, s in sorted(self._state.items())}

    def state_dict(self) -> dict:
        """torch's layout: ``{"state": {i: {state entries}}, "param_groups": [{options,
        "params": [indices]}]}`` (plus ``"param_names"`` when named); copies. The
        parameters themselves are not in it: save them too."""
        groups = _saved_groups(self.param_groups, self._keys)
        state = {i: self._copy_state(s) for i, s in sorted(self._state.items())}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores what :meth:`state_dict` returned (or torch's optimizer's of the same
        name, its tensors converted to arrays: anything ``np.asarray`` reads); with the
        parameters restored too, resuming is bit-identical to never stopping. Everything is
        checked first; a refused one changes nothing."""
        arrays = self._arrays()

        def check_group(g: dict, gi: int) -> None:
            self._normalize(g)
            self._check_hyper(g, gi)

        self.param_groups, self._state = _load_per_tensor(
            state_dict,
            self._param_lists,
            self._keys,
            check_group,
            lambda s, i: self._load_state(s, arrays[i], self._names[i]),
        )
        self._step_cache_clear()

    def __repr__(self) -> str:
        return _groups_repr(self._name, self.param_groups)
