"""Param groups: splitting ``params`` into groups, and the group dicts whose ``"params"``
cannot be edited."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Callable

import numpy as np


def _parse_params(params: Any) -> tuple[list[dict], list[str], list | None]:
    """Splits ``params`` into param groups.

    Returns the groups (each with ``"params"`` a list of arrays and its own options), a
    display name per parameter for error messages, and the parameter keys when every
    parameter came from a dict (so gradients may be passed as a dict).
    """
    if isinstance(params, np.ndarray):
        raise TypeError(
            "params must be a list or dict of arrays, or a list of param-group dicts; "
            "got a single ndarray (wrap it in a list)"
        )
    if isinstance(params, Mapping):
        if not params:
            raise ValueError("optimizer got an empty parameter dict")
        raw_groups: list = [{"params": params}]
        single = True
    elif isinstance(params, Iterable) and not isinstance(params, (str, bytes)):
        items = list(params)
        if not items:
            raise ValueError("optimizer got an empty parameter list")
        is_group = [isinstance(x, Mapping) for x in items]
        if all(is_group):
            raw_groups, single = [dict(x) for x in items], False
        elif not any(is_group):
            raw_groups, single = [{"params": items}], True
        else:
            raise TypeError("params mixes arrays and param-group dicts; use one or the other")
    else:
        raise TypeError(
            f"params must be a list or dict of arrays, or a list of param-group dicts; "
            f"got {type(params).__name__}"
        )

    groups, names, keys = [], [], []
    all_keyed = True
    for gi, group in enumerate(raw_groups):
        if "params" not in group:
            raise ValueError(f"param group {gi} has no 'params' entry")
        ps = group["params"]
        where = "params" if single else f"param_groups[{gi}]['params']"
        if isinstance(ps, np.ndarray):
            ps = [ps]
        if isinstance(ps, Mapping):
            group_keys = list(ps.keys())
            arrays = list(ps.values())
            names += [repr(k) for k in group_keys]
            keys += group_keys
        else:
            arrays = list(ps)
            names += [f"{where}[{j}]" for j in range(len(arrays))]
            all_keyed = False
        group = dict(group)
        group["params"] = arrays
        groups.append(group)
    if all_keyed:
        seen: set = set()
        for k in keys:
            if k in seen:
                raise ValueError(f"parameter name {k!r} appears more than once")
            seen.add(k)
    return groups, names, (keys if all_keyed else None)


def _parse_new_group(param_group: Any, keys: list | None, gi: int) -> tuple[dict, list[str], list | None]:
    """``add_param_group``'s argument parsed as group ``gi`` of an optimizer whose parameters
    have ``keys`` (None: given unnamed): the group (its ``"params"`` a list of arrays), its
    parameters' display names and keys. Raises when it is not a dict, when it names its
    parameters and the others are not (or the reverse), or reuses a name."""
    if not isinstance(param_group, Mapping):
        raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
    groups, names, new_keys = _parse_params([param_group])
    if (keys is None) != (new_keys is None):
        raise TypeError("a new param group must name its parameters iff the existing ones are named")
    if new_keys is not None and keys is not None and set(new_keys) & set(keys):
        raise ValueError("a parameter name of the new group is already in use")
    if new_keys is None:
        names = [n.replace("param_groups[0]", f"param_groups[{gi}]", 1) for n in names]
    return groups[0], names, new_keys


def _betas(betas) -> tuple[float, float]:
    """A list of two betas becomes a tuple, so param groups compare and print like torch's."""
    return tuple(betas) if isinstance(betas, list) else betas


_ADD_GROUP_HINT = "add parameters with optimizer.add_param_group({'params': [...]})"


class _ParamList(tuple):
    """The arrays of one param group: a tuple whose list-style edits raise a clear error.

    An optimizer's parameters are fixed when it is built (their state lives in Rust, laid
    out for exactly those arrays), so ``param_groups[i]["params"]`` cannot change in place;
    :meth:`Optimizer.add_param_group` adds parameters.
    """

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"param_groups[i]['params'] cannot be changed; {_ADD_GROUP_HINT}")

    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse


class _ParamGroup(dict):
    """One param group: a dict whose hyper-parameters may change but whose ``"params"``
    entry may not (see :class:`_ParamList`)."""

    __slots__ = ()

    def _check_key(self, key: Any) -> None:
        if key == "params":
            raise TypeError(f"param_groups[i]['params'] cannot be replaced or removed; {_ADD_GROUP_HINT}")

    def __setitem__(self, key: Any, value: Any) -> None:
        self._check_key(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: Any) -> None:
        self._check_key(key)
        dict.__delitem__(self, key)

    def pop(self, key: Any, *default: Any) -> Any:
        self._check_key(key)
        return dict.pop(self, key, *default)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self._check_key(key)
        return dict.setdefault(self, key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        other = dict(*args, **kwargs)
        if "params" in other:
            self._check_key("params")
        dict.update(self, other)

    # mypy holds `|=` to dict's `|`, which returns a new plain dict; `|=` updates in place,
    # as dict's own does, through the check on "params" in `update`.
    def __ior__(self, other: Any) -> _ParamGroup:  # type: ignore[misc]
        self.update(other)
        return self

    def popitem(self) -> tuple:
        raise TypeError(f"param_groups[i]['params'] cannot be removed; {_ADD_GROUP_HINT}")

    def clear(self) -> None:
        self.popitem()

    def __reduce__(self) -> tuple:
        return (_ParamGroup, (dict(self),))


def _param_group(group: Mapping) -> _ParamGroup:
    g = dict(group)
    g["params"] = _ParamList(g["params"])
    return _ParamGroup(g)


_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_param_arrays(
    arrays: list, names: list[str], check: Callable[[np.ndarray, str], None] = lambda a, name: None
) -> None:
    """The parameters of an optimizer outside the engine (LBFGS, Muon): each a writeable
    C-contiguous float32 or float64 NumPy array (``check(a, name)`` first adds the
    optimizer's own rule), none overlapping another."""
    for a, name in zip(arrays, names):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"parameter {name} must be a numpy array, got {type(a).__name__}")
        check(a, name)
        if a.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"parameter {name} must be float32 or float64, got {a.dtype}")
        if not a.flags.c_contiguous or not a.flags.writeable:
            raise ValueError(f"parameter {name} must be a writeable C-contiguous array")
    for i, a in enumerate(arrays):
        for j in range(i):
            if np.may_share_memory(a, arrays[j]):
                raise ValueError(f"parameters {names[j]} and {names[i]} share memory")


def _ordered_grads(grads: Any, keys: list | None, n: int) -> list:
    """``grads`` as a list in parameter order: a dict keyed like the parameters (``keys``),
    or a list or tuple of ``n``; the arrays themselves are not checked here."""
    if type(grads) is list and len(grads) == n:
        return grads
    if isinstance(grads, Mapping):
        if keys is None:
            raise TypeError("grads is a dict, but the parameters were not given by name")
        if set(grads) != set(keys):
            raise ValueError(
                f"grads' keys {sorted(map(repr, grads))} differ from the parameters' {sorted(map(repr, keys))}"
            )
        return [grads[k] for k in keys]
    if not isinstance(grads, (list, tuple)):
        raise TypeError(f"grads must be a list or a dict of arrays, got {type(grads).__name__}")
    if len(grads) != n:
        raise ValueError(f"got {len(grads)} gradients for {n} parameters")
    return list(grads)


def _check_grads(
    grads: Any, keys: list | None, arrays: list[np.ndarray], names: list[str]
) -> list[np.ndarray]:
    """The gradients of an optimizer outside the engine (Muon, Adafactor), checked: a list in
    parameter order or a dict keyed like the parameters, each a NumPy array of its
    parameter's dtype and shape that shares no memory with it; returned C-contiguous."""
    grads = _ordered_grads(grads, keys, len(arrays))
    checked = []
    for g, p, name in zip(grads, arrays, names):
        if not isinstance(g, np.ndarray) or g.dtype != p.dtype or g.shape != p.shape:
            what = f"{g.dtype} {g.shape}" if isinstance(g, np.ndarray) else type(g).__name__
            raise ValueError(
                f"the gradient of {name} must be a {p.dtype} array of shape {p.shape}, got {what}"
            )
        if np.may_share_memory(g, p):
            raise ValueError(f"the gradient of {name} shares memory with the parameter")
        # (np.ascontiguousarray would make a 0-d gradient 1-d)
        checked.append(g if g.flags.c_contiguous else np.ascontiguousarray(g))
    return checked


def _state_dict_parts(state_dict: Any, n_groups: int) -> tuple[list, dict]:
    """``state_dict``'s ``param_groups`` and ``state``, checked to be there and to hold
    ``n_groups`` groups."""
    try:
        saved_groups = list(state_dict["param_groups"])
        saved_state = dict(state_dict["state"])
    except (KeyError, TypeError):
        raise ValueError("state_dict must have 'state' and 'param_groups' entries") from None
    if len(saved_groups) != n_groups:
        raise ValueError(f"state_dict has {len(saved_groups)} param groups, this optimizer has {n_groups}")
    return saved_groups, saved_state


def _load_per_tensor(
    state_dict: Any,
    param_lists: list,
    keys: list | None,
    check_group: Callable[[dict, int], Any],
    load_one: Callable[[Any, int], Any],
) -> tuple[list[dict], dict[int, Any]]:
    """The checked ``(param_groups, state)`` of a per-tensor optimizer's ``load_state_dict``
    (Adafactor, Muon, the schedule-free ones): each saved group matched to this optimizer's
    parameters (count, and names where both have them), normalized and checked in place by
    ``check_group(group, index)``, and each saved state read by ``load_one(state, i)`` for
    the parameter at flat index ``i``. Raises ValueError before anything is kept."""
    saved_groups, saved_state = _state_dict_parts(state_dict, len(param_lists))
    new_groups: list[dict] = []
    index_of: dict[Any, int] = {}
    start = 0
    for gi, (saved, ps) in enumerate(zip(saved_groups, param_lists)):
        g = dict(saved)
        ids = list(g.pop("params", []))
        names = g.pop("param_names", None)
        if len(ids) != len(ps):
            raise ValueError(
                f"param group {gi} of state_dict has {len(ids)} parameters, this optimizer's has {len(ps)}"
            )
        if names is not None and keys is not None and list(names) != list(keys[start : start + len(ps)]):
            raise ValueError(f"param group {gi} of state_dict names different parameters")
        check_group(g, gi)
        for j, pid in enumerate(ids):
            index_of[pid] = start + j
        g["params"] = ps
        new_groups.append(_ParamGroup(g))
        start += len(ps)
    states: dict[int, Any] = {}
    for pid, s in saved_state.items():
        if pid not in index_of:
            raise ValueError(f"state_dict has state for unknown parameter {pid!r}")
        states[index_of[pid]] = load_one(s, index_of[pid])
    return new_groups, states


def _groups_repr(name: str, param_groups: list) -> str:
    """torch's optimizer ``repr``: the name, then each group's hyper-parameters."""
    lines = [f"{name} ("]
    for i, g in enumerate(param_groups):
        lines.append(f"Parameter Group {i}")
        lines += [f"    {k}: {g[k]}" for k in sorted(g) if k != "params"]
    return "\n".join([*lines, ")"])


def _saved_groups(param_groups: Iterable[Mapping], keys: list | None) -> list[dict]:
    """torch's ``state_dict()["param_groups"]``: each group's options, its parameters as
    flat indices (``"params"``) and, for named parameters, their names (``"param_names"``)."""
    groups, start = [], 0
    for group in param_groups:
        g = {k: v for k, v in group.items() if k != "params"}
        n = len(group["params"])
        g["params"] = list(range(start, start + n))
        if keys is not None:
            g["param_names"] = list(keys[start : start + n])
        groups.append(g)
        start += n
    return groups


def _fixed_arrays(name: str, param_groups: list, param_lists: list) -> list[np.ndarray]:
    """Every parameter in order, after checking that ``param_groups`` still holds the groups
    and parameter lists it was built with (a per-tensor optimizer's are fixed)."""
    if len(param_groups) != len(param_lists) or any(
        not isinstance(g, _ParamGroup) or g.get("params") is not ps
        for g, ps in zip(param_groups, param_lists)
    ):
        raise ValueError(f"{name}'s param groups and their parameters are fixed; param_groups was edited")
    return [a for ps in param_lists for a in ps]
