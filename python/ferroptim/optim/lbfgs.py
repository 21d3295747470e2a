"""L-BFGS with torch.optim.LBFGS's algorithm, names and state, over NumPy arrays and a
closure that returns ``(loss, grads)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import numpy as np

from .. import _core
from .._checks import count, flag, real
from .groups import _FLOAT_DTYPES, _check_param_arrays, _param_group, _ParamGroup, _parse_params

_LINE_SEARCHES = (None, "strong_wolfe")


def _positive_int(name: str, value: Any) -> int:
    n = count(name, value)
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return n


def _check_hyper(g: Mapping) -> dict:
    """The step's hyper-parameters of group ``g``, checked (a TypeError or ValueError naming
    the entry)."""
    missing = [
        k
        for k in ("lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change", "history_size")
        if k not in g
    ]
    if missing:
        raise ValueError(f"LBFGS's param group lacks {missing}")
    line_search = g.get("line_search_fn")
    if line_search not in _LINE_SEARCHES:
        raise ValueError(f"line_search_fn must be None or 'strong_wolfe', got {line_search!r}")
    return {
        "lr": real("lr", g["lr"], low=0.0),
        "max_iter": _positive_int("max_iter", g["max_iter"]),
        "max_eval": _positive_int("max_eval", g["max_eval"]),
        "tolerance_grad": real("tolerance_grad", g["tolerance_grad"], low=0.0),
        "tolerance_change": real("tolerance_change", g["tolerance_change"], low=0.0),
        "history_size": _positive_int("history_size", g["history_size"]),
        "strong_wolfe": line_search == "strong_wolfe",
        "maximize": flag("maximize", g.get("maximize", False)),
    }


class LBFGS:
    """L-BFGS (torch.optim.LBFGS): quasi-Newton steps from a limited history, each ``step``
    running up to ``max_iter`` iterations of the closure.

    Each iteration takes the direction ``d = -H g``, with ``H`` the inverse-Hessian estimate
    of the last ``history_size`` pairs ``s = t d`` (the step) and ``y = g_new - g_old``
    (the gradient change), applied by the two-loop recursion with initial scale
    ``(y . s) / (y . y)``; pairs with ``y . s <= 1e-10`` are skipped. The parameters move
    by ``t d``: ``t = lr`` (the first iteration ever: ``min(1, 1 / |g|_1) lr``), or, with
    ``line_search_fn="strong_wolfe"``, the ``t`` of a line search satisfying the strong
    Wolfe conditions (``c1 = 1e-4``, ``c2 = 0.9``; bracketing, then cubic interpolation).
    A step ends after ``max_iter`` iterations or ``max_eval`` evaluations, or when
    ``max |g| <= tolerance_grad``, ``g . d > -tolerance_change``,
    ``max |t d| <= tolerance_change`` or the loss changes by less than ``tolerance_change``.

    Args:
        params: the arrays to optimize, updated in place: a list or a dict of writeable,
            C-contiguous arrays, all float32 or all float64 (computed in that dtype, as
            torch does). One param group only (torch refuses more).
        lr: the step length (default 1), >= 0.
        max_iter: iterations per ``step`` (default 20), >= 1.
        max_eval: closure evaluations per ``step`` (default ``max_iter * 5 // 4``), >= 1.
        tolerance_grad: first-order optimality tolerance on ``max |g|`` (default 1e-7).
        tolerance_change: tolerance on the change of the loss or of the parameters
            (default 1e-9).
        history_size: the number of ``(s, y)`` pairs kept (default 100), >= 1. Memory:
            ``2 history_size + 2`` copies of the parameters (the pairs, ``d`` and
            ``prev_flat_grad``), and up to 6 more kept from step to step for reuse (a
            step then allocates nothing).
        line_search_fn: None (fixed steps of ``lr``) or ``"strong_wolfe"``.
        maximize: maximize the objective (the loss and gradients are negated).

    ``step(closure)``: ``closure()`` computes the objective at the current parameters and
    returns ``(loss, grads)`` -- the loss a number, ``grads`` one gradient per parameter
    (a list in parameter order, or a dict keyed like the parameters), each of its
    parameter's shape and dtype. It is the NumPy form of torch's closure, which sets
    ``.grad`` and returns the loss. The iterations run in Rust; the closure is called back
    with the GIL held, and nothing else holds it.

    Unlike torch, a step is all or nothing: if the closure raises (or returns something
    that is not ``(loss, grads)``), the parameters are restored to their values before the
    step (where the step had moved them; what the closure itself writes into them is
    its own) and the state is unchanged, then the exception propagates. (torch leaves the
    parameters wherever the failing evaluation put them.)

    Numerics: the vectors and their dot products are in the parameters' dtype, as in
    torch; the dot products are summed in float64 and rounded once (torch sums in the
    parameters' dtype, in its own order), and the line search's scalars are float64 (torch
    mixes Python floats and 0-d tensors). float64 trajectories therefore match torch's to
    about 1e-12 relative; float32 ones to float32 rounding amplified by the iterations.

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> x = np.array([-1.5, 2.0])
        >>> def rosenbrock():
        ...     a, b = x
        ...     loss = (1 - a) ** 2 + 100 * (b - a * a) ** 2
        ...     return loss, [np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])]
        >>> opt = fo.LBFGS([x], line_search_fn="strong_wolfe")
        >>> for _ in range(5):
        ...     loss = opt.step(rosenbrock)
        >>> np.allclose(x, [1.0, 1.0])
        True
    """

    needs_closure = True

    def __init__(
        self,
        params: Any,
        lr: float = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
        *,
        maximize: bool = False,
    ):
        if max_eval is None:
            max_eval = _positive_int("max_iter", max_iter) * 5 // 4
        self.defaults: dict[str, Any] = {
            "lr": lr,
            "max_iter": max_iter,
            "max_eval": max_eval,
            "tolerance_grad": tolerance_grad,
            "tolerance_change": tolerance_change,
            "history_size": history_size,
            "line_search_fn": line_search_fn,
            "maximize": maximize,
        }
        _check_hyper(self.defaults)
        groups, names, keys = _parse_params(params)
        if len(groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        group = dict(self.defaults)
        group.update(groups[0])
        _check_hyper(group)
        arrays: list[np.ndarray] = list(group["params"])
        self._dtype = _check_params(arrays, names)
        self._names, self._keys = names, keys
        self.param_groups: list[dict] = [_param_group(group)]
        self._params = self.param_groups[0]["params"]
        self._numel = sum(a.size for a in arrays)
        self._core = _core.Lbfgs(self._dtype.name, self._numel)

    def _group(self) -> dict:
        if len(self.param_groups) != 1 or not isinstance(self.param_groups[0], _ParamGroup):
            raise ValueError("LBFGS has exactly one param group; param_groups was replaced")
        if self.param_groups[0].get("params") is not self._params:
            raise ValueError("LBFGS's parameters are fixed; param_groups[0]['params'] was replaced")
        return self.param_groups[0]

    def _grads(self, grads: Any) -> list[np.ndarray]:
        """The closure's gradients as C-contiguous arrays in parameter order, checked."""
        if isinstance(grads, Mapping):
            if self._keys is None:
                raise TypeError(
                    "the closure returned gradients as a dict, but the parameters were not given by name"
                )
            if set(grads) != set(self._keys):
                raise ValueError(
                    f"the closure's gradient keys {sorted(map(repr, grads))} differ from the "
                    f"parameters' {sorted(map(repr, self._keys))}"
                )
            grads = [grads[k] for k in self._keys]
        elif isinstance(grads, (list, tuple)):
            grads = list(grads)
        else:
            raise TypeError(
                f"the closure's gradients must be a list or a dict of arrays, got {type(grads).__name__}"
            )
        if len(grads) != len(self._params):
            raise ValueError(
                f"the closure returned {len(grads)} gradients for {len(self._params)} parameters"
            )
        out = []
        for g, p, name in zip(grads, self._params, self._names):
            if not isinstance(g, np.ndarray) or g.dtype != p.dtype or g.shape != p.shape:
                what = f"{g.dtype} {g.shape}" if isinstance(g, np.ndarray) else type(g).__name__
                raise ValueError(
                    f"the gradient of {name} must be a {p.dtype} array of shape {p.shape}, got {what}"
                )
            out.append(np.ascontiguousarray(g))
        return out

    def step(self, closure: Callable[[], Any]) -> Any:
        """Runs up to ``max_iter`` L-BFGS iterations; returns the loss the first call of
        ``closure`` returned (as torch does), the object itself.

        Raises:
            TypeError / ValueError: a bad hyper-parameter in ``param_groups`` (before the
                closure is called), or a bad ``(loss, grads)`` from the closure (the step
                is then undone, as for any exception the closure raises).
        """
        if not callable(closure):
            raise TypeError(
                f"LBFGS.step needs a closure returning (loss, grads), got {type(closure).__name__}"
            )
        h = _check_hyper(self._group())
        first: list = []

        def evaluate() -> tuple[float, list[np.ndarray]]:
            out = closure()
            if not isinstance(out, tuple) or len(out) != 2:
                raise TypeError(f"the closure must return (loss, grads), got {type(out).__name__}")
            loss, grads = out
            value = float(real("the closure's loss", np.asarray(loss).item() if np.ndim(loss) == 0 else loss))
            if not first:
                first.append(loss)
            return value, self._grads(grads)

        self._core.step(list(self._params), evaluate, **h)
        return first[0]

    @property
    def state(self) -> dict:
        """The state (copies), under the first parameter's key as torch keeps it:
        ``func_evals``, ``n_iter``, and after an iteration ``d``, ``t``, ``old_dirs``,
        ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``, ``prev_loss``."""
        s = self._state()
        if not s:
            return {}
        key = self._keys[0] if self._keys is not None else 0
        return {key: s}

    def _state(self) -> dict:
        s = self._core.state()
        if s["func_evals"] == 0 and s["n_iter"] == 0 and "d" not in s:
            return {}
        if "ro" in s:
            s["ro"] = [np.asarray(v) for v in s["ro"]]
        if "H_diag" in s:
            s["H_diag"] = np.asarray(s["H_diag"], dtype=self._dtype)
        return s

    def state_dict(self) -> dict:
        """torch's layout: ``{"state": {0: {...}}, "param_groups": [{options, "params":
        [0, 1, ...]}]}`` (plus ``"param_names"`` when the parameters are named); copies."""
        g = {k: v for k, v in self._group().items() if k != "params"}
        g["params"] = list(range(len(self._params)))
        if self._keys is not None:
            g["param_names"] = list(self._keys)
        s = self._state()
        return {"state": {0: s} if s else {}, "param_groups": [g]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores what :meth:`state_dict` returned (or torch's, with its tensors turned
        into arrays); resuming continues exactly as never stopping. Everything is checked
        first; a refused one changes nothing."""
        try:
            groups = list(state_dict["param_groups"])
            saved_state = dict(state_dict["state"])
        except (KeyError, TypeError):
            raise ValueError("state_dict must have 'state' and 'param_groups' entries") from None
        if len(groups) != 1:
            raise ValueError(f"state_dict has {len(groups)} param groups, LBFGS has 1")
        saved = dict(groups[0])
        ids = list(saved.pop("params", []))
        if len(ids) != len(self._params):
            raise ValueError(
                f"state_dict's param group has {len(ids)} parameters, this optimizer's has {len(self._params)}"
            )
        names = saved.pop("param_names", None)
        if names is not None and self._keys is not None and list(names) != list(self._keys):
            raise ValueError("state_dict's param group names different parameters")
        _check_hyper(saved)
        if len(saved_state) > 1:
            raise ValueError(f"LBFGS keeps its state under one parameter; state_dict has {len(saved_state)}")
        s = dict(next(iter(saved_state.values()))) if saved_state else {}
        state = _core.Lbfgs(self._dtype.name, self._numel)
        state.set_state(self._state_for_core(s))
        g = dict(saved)
        g["params"] = self._params
        self._core = state
        self.param_groups = [_ParamGroup(g)]

    def _state_for_core(self, s: dict) -> dict:
        out: dict[str, Any] = {}
        for k in ("func_evals", "n_iter"):
            if k in s:
                out[k] = count(f"state {k!r}", int(np.asarray(s[k])) if np.ndim(s[k]) == 0 else s[k])
        for k in ("t", "prev_loss", "H_diag"):
            if k in s:
                out[k] = (
                    real(f"state {k!r}", np.asarray(s[k]).item()) if np.ndim(s[k]) == 0 else _bad(k, s[k])
                )
        vec = lambda k, v: np.ascontiguousarray(np.asarray(v, dtype=self._dtype).reshape(-1))  # noqa: E731
        for k in ("d", "prev_flat_grad"):
            if k in s:
                out[k] = vec(k, s[k])
        for k in ("old_dirs", "old_stps"):
            if k in s:
                out[k] = [vec(k, v) for v in s[k]]
        if "ro" in s:
            out["ro"] = np.array([np.asarray(v).item() for v in s["ro"]], dtype=self._dtype)
        unknown = set(s) - set(out) - {"al"}  # torch's scratch list of the two-loop recursion
        if unknown:
            raise ValueError(f"state_dict has unknown LBFGS state {sorted(unknown)}")
        return out

    # -- pickle and copy.deepcopy, through the state_dict ---------------------------------

    def __getstate__(self) -> dict:
        params = list(self._params) if self._keys is None else dict(zip(self._keys, self._params))
        return {"params": params, "defaults": self.defaults, "state_dict": self.state_dict()}

    def __setstate__(self, st: dict) -> None:
        self.__init__(st["params"], **st["defaults"])  # type: ignore[misc]
        self.load_state_dict(st["state_dict"])

    def __repr__(self) -> str:
        opts = "\n".join(f"    {k}: {v}" for k, v in sorted(self._group().items()) if k != "params")
        return f"LBFGS (\nParameter Group 0\n{opts}\n)"


def _bad(k: str, v: Any) -> Any:
    raise ValueError(f"state {k!r} must be a number, got {type(v).__name__} of shape {np.shape(v)}")


def _check_params(arrays: list, names: list[str]) -> np.dtype:
    """The one dtype of ``arrays``, after checking each is a writeable C-contiguous float32
    or float64 array and that none overlaps another."""
    dtypes: list[np.dtype] = []

    def one_dtype(a: np.ndarray, name: str) -> None:
        if dtypes and a.dtype != dtypes[0] and a.dtype in _FLOAT_DTYPES:
            raise TypeError(
                f"LBFGS's parameters must share one dtype: {name} is {a.dtype}, the first is {dtypes[0]}"
            )
        dtypes.append(a.dtype)

    _check_param_arrays(arrays, names, one_dtype)
    return dtypes[0]
