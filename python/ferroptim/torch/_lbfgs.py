"""``ferroptim.torch.LBFGS``: ferroptim's :class:`~ferroptim.LBFGS` (its iterations in Rust)
as a ``torch.optim.Optimizer`` whose ``step`` takes torch's closure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Callable

import numpy as np
import torch

from ..optim.lbfgs import LBFGS as _FoLBFGS
from ..optim.lbfgs import _check_hyper
from ._optimizer import (
    _as_numpy,
    _bump_versions,
    _check_cpu_tensor,
    _hooks_off,
    _run_load_post_hooks,
    _run_load_pre_hooks,
)

_DTYPES = (torch.float32, torch.float64)
_GROUPS_REFUSED = "LBFGS doesn't support per-parameter options (parameter groups)"


class LBFGS(torch.optim.Optimizer):
    """ferroptim's :class:`~ferroptim.LBFGS` as a ``torch.optim.Optimizer`` over CPU tensors:
    torch.optim.LBFGS's arguments, defaults, algorithm and state, the iterations in Rust.

    Each iteration moves the parameters ``x`` (all of them, flattened into one vector) by
    ``t d``, where ``g`` is the gradient, ``d = -H g`` and ``H`` the inverse-Hessian estimate
    of the last ``history_size`` pairs ``s_i = t d`` (the steps taken) and
    ``y_i = g_new - g_old`` (the gradients' changes), ``rho_i = 1 / (y_i . s_i)``; a pair
    with ``y . s <= 1e-10`` is not kept. ``H g`` is the two-loop recursion::

        q = -g
        for i = newest .. oldest:  a_i = rho_i (s_i . q);   q -= a_i y_i
        r = gamma q,   gamma = (y . s) / (y . y) of the newest pair kept (1 at first)
        for i = oldest .. newest:  b_i = rho_i (y_i . r);   r += (a_i - b_i) s_i
        d = r

    The first iteration ever takes ``d = -g``. The step length is ``t = lr`` (on the first
    iteration ever ``min(1, 1 / sum|g|) lr``) or, with ``line_search_fn="strong_wolfe"``, a
    ``t`` satisfying the strong Wolfe conditions (``c1 = 1e-4``, ``c2 = 0.9``; bracketing,
    then cubic interpolation), starting from that value. A ``step`` ends after
    ``max_iter`` iterations or ``max_eval`` closure evaluations, or when
    ``max|g| <= tolerance_grad``, ``g . d > -tolerance_change``,
    ``max|t d| <= tolerance_change`` or the loss changes by less than ``tolerance_change``.

    Args:
        params: as torch's (parameters or named parameters, or one param-group dict); one
            param group only, as torch: dense, contiguous CPU tensors, all float32 or all
            float64, updated in place (their memory is fixed: do not replace ``.data``).
        lr: the step length's scale (default 1), >= 0, in the parameters' units per unit of
            ``d``; a float or a one-element tensor (read at every step, so torch's schedulers
            drive it).
        max_iter: iterations per ``step`` (default 20), >= 1.
        max_eval: closure evaluations per ``step`` (default ``max_iter * 5 // 4``), >= 1.
        tolerance_grad: the first-order optimality tolerance on ``max|g|`` (default 1e-7),
            in the loss's units per parameter unit, >= 0.
        tolerance_change: the tolerance on the loss's change (loss units) and on the
            parameters' change ``max|t d|`` (parameter units) (default 1e-9), >= 0.
        history_size: the number of ``(s, y)`` pairs kept (default 100), >= 1; memory
            ``(2 history_size + 4)`` copies of the parameters.
        line_search_fn: None (fixed steps ``t``) or ``"strong_wolfe"``.
        maximize: maximize the objective (the loss and gradients are negated; default False).

    ``step(closure)`` takes torch's closure: it zeroes the gradients, runs the forward and
    backward passes and returns the loss (a number or a one-element tensor). It is called
    with gradients enabled; after each call the parameters' ``.grad`` are read (None counts
    as zeros, as in torch). ``step`` returns what the first call returned, as torch does.
    Unlike torch, a step whose closure raises restores the parameters and the state to
    what they were before the step, then the exception propagates.

    Numerics: the vectors are in the parameters' dtype, as in torch; dot products are
    summed in float64 and rounded once (torch sums in the parameters' dtype) and the line
    search's scalars are float64. float64 trajectories match torch's to about 1e-12
    relative; float32 ones to float32 rounding, amplified by the iterations
    (tests/test_lbfgs.py).

    ``state`` and ``state_dict()`` are torch's (under the first parameter: ``func_evals``,
    ``n_iter``, and after an iteration ``d``, ``t``, ``old_dirs``, ``old_stps``, ``ro``,
    ``H_diag``, ``prev_flat_grad``, ``prev_loss``), so ``torch.optim.LBFGS`` loads ours and
    this class loads torch's; ``state`` is a snapshot (copies): change it through
    ``load_state_dict``.
    """

    param_groups: list[dict]

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
        *,
        maximize: bool = False,
    ):
        self._ready = False
        defaults = {
            "lr": lr,
            "max_iter": max_iter,
            "max_eval": max_eval,
            "tolerance_grad": tolerance_grad,
            "tolerance_change": tolerance_change,
            "history_size": history_size,
            "line_search_fn": line_search_fn,
            "maximize": maximize,
        }
        # the arguments checked (and max_eval resolved) by ferroptim's class, before torch's
        # Optimizer takes the parameters
        probe = _FoLBFGS([np.zeros(1)], **_for_fo(defaults))
        defaults["max_eval"] = probe.defaults["max_eval"]
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(_GROUPS_REFUSED)
        group = self.param_groups[0]
        _check_hyper(_for_fo(group))  # a param-group dict's own options
        self._params: list = list(group["params"])
        for j, p in enumerate(self._params):
            _check_param(p, j)
        if len({p.dtype for p in self._params}) > 1:
            raise TypeError(
                f"LBFGS's parameters must share one dtype, got {sorted({str(p.dtype) for p in self._params})}"
            )
        self._ptrs = [p.data_ptr() for p in self._params]
        fo_group = {k: v for k, v in _for_fo(group).items() if k not in ("params", "param_names")}
        self._fo = _FoLBFGS([_as_numpy(p) for p in self._params], **fo_group)
        self._ready = True

    def add_param_group(self, param_group: dict) -> None:
        """Refused after construction: torch's LBFGS has one param group."""
        if getattr(self, "_ready", False):
            raise ValueError(_GROUPS_REFUSED)
        super().add_param_group(param_group)

    def _sync_group(self) -> None:
        """torch's param group (a scheduler may have changed ``lr``) into ferroptim's, checked
        before anything changes."""
        if len(self.param_groups) != 1 or list(self.param_groups[0]["params"]) != self._params:
            raise ValueError("LBFGS's parameters are fixed; param_groups was edited")
        if any(p.data_ptr() != q for p, q in zip(self._params, self._ptrs)):
            raise ValueError("LBFGS: a parameter's .data was replaced; create a new optimizer for it")
        g = _for_fo(self.param_groups[0])
        _check_hyper(g)
        fo_group = self._fo.param_groups[0]
        for k, v in g.items():
            if k not in ("params", "param_names"):
                fo_group[k] = v

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:
        """Runs up to ``max_iter`` L-BFGS iterations (see the class).

        Args:
            closure: torch's: clears the gradients, computes the loss, calls ``backward``
                and returns the loss (a number or a one-element tensor); called with
                gradients enabled, at most ``max_eval`` times.

        Returns:
            What the first call of ``closure`` returned.

        Raises:
            TypeError / ValueError: a bad closure or hyper-parameter (before the closure is
                called); a closure that returns no loss, or a gradient on another device or
                sparse (the step is then undone, as for any exception the closure raises).
        """
        if not callable(closure):
            raise TypeError(f"LBFGS.step needs a closure returning the loss, got {type(closure).__name__}")
        self._sync_group()
        first: list = []

        def evaluate() -> tuple[float, list[np.ndarray]]:
            with torch.enable_grad():
                loss = closure()
            if not first:
                first.append(loss)
            if isinstance(loss, torch.Tensor):
                if loss.numel() != 1:
                    raise ValueError(
                        f"the closure must return a one-element loss, got shape {tuple(loss.shape)}"
                    )
                loss_value: Any = loss.detach()
            else:
                loss_value = loss
            try:
                value = float(loss_value)
            except (TypeError, ValueError):
                raise TypeError(f"the closure must return the loss, got {type(loss).__name__}") from None
            return value, [_grad(p, j) for j, p in enumerate(self._params)]

        try:
            self._fo.step(evaluate)
        finally:
            _bump_versions(self._params)
        return first[0]

    # -- state, in torch's format -----------------------------------------------------------

    @property
    def state(self) -> Any:
        """The state as torch's LBFGS keeps it, under the first parameter (copies)."""
        out: defaultdict = defaultdict(dict)
        if not getattr(self, "_ready", False):
            return out
        s = self._fo.state
        if s:
            (fs,) = s.values()
            out[self._params[0]] = {k: _to_torch(v) for k, v in fs.items()}
        return out

    @state.setter
    def state(self, value: Any) -> None:
        # torch's Optimizer.__init__ assigns an empty state; later assignments are refused
        if getattr(self, "_ready", False):
            raise AttributeError("LBFGS: change the state through load_state_dict")

    def load_state_dict(self, state_dict: dict) -> None:
        """Loads this class's state dict or torch.optim.LBFGS's (its tensors as arrays);
        resuming continues as never stopping. Everything is checked first; a refused one
        changes nothing. torch's load-state-dict pre-hooks run first (the checks see what
        they return), the post-hooks last, as in torch."""
        state_dict = _run_load_pre_hooks(self, state_dict)
        try:
            groups = [dict(g) for g in state_dict["param_groups"]]
            saved_state = dict(state_dict["state"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("state_dict must have 'state' and 'param_groups' entries") from None
        if len(groups) != 1:
            raise ValueError(f"state_dict has {len(groups)} param groups, LBFGS has 1")
        g = groups[0]
        for k, v in self.defaults.items():
            g.setdefault(k, v)  # options an older torch did not save (maximize)
        fo_group = {k: v for k, v in _for_fo(g).items() if k != "param_names"}
        state = {k: _to_numpy(v) for k, v in saved_state.items()}
        self._fo.load_state_dict({"state": state, "param_groups": [fo_group]})
        g["params"] = self.param_groups[0]["params"]
        if "param_names" in self.param_groups[0]:
            g["param_names"] = self.param_groups[0]["param_names"]
        else:
            g.pop("param_names", None)
        self.param_groups = [g]
        _run_load_post_hooks(self)

    # -- pickle and copy.deepcopy, through the state_dict -----------------------------------

    def __getstate__(self) -> dict:
        names = self.param_groups[0].get("param_names")
        params = list(zip(names, self._params)) if names is not None else list(self._params)
        # the state as it is: the user's state-dict hooks are for checkpoints, not copies
        with _hooks_off(self, "_optimizer_state_dict_pre_hooks", "_optimizer_state_dict_post_hooks"):
            state_dict = self.state_dict()
        return {"params": params, "defaults": dict(self.defaults), "state_dict": state_dict}

    def __setstate__(self, st: dict) -> None:
        self.__init__(st["params"], **st["defaults"])  # type: ignore[misc]
        self.load_state_dict(st["state_dict"])


def _check_param(p: torch.Tensor, j: int) -> None:
    _check_cpu_tensor(p, f"LBFGS: parameter param_groups[0]['params'][{j}]", _DTYPES, "float32 or float64")


def _grad(p: torch.Tensor, j: int) -> np.ndarray:
    """Parameter ``p``'s ``.grad`` as an array of its dtype and shape (zeros if None); the
    Rust side copies it before the closure runs again."""
    g = p.grad
    if g is None:
        return np.zeros(tuple(p.shape), _as_numpy(p).dtype)
    if g.layout != torch.strided or g.device.type != "cpu":
        raise ValueError(
            f"LBFGS: the gradient of param_groups[0]['params'][{j}] must be a dense CPU tensor, "
            f"got {g.layout} on {g.device}"
        )
    return g.detach().to(p.dtype).contiguous().numpy()


def _for_fo(group: Mapping) -> dict:
    """A param group's options as ferroptim's LBFGS reads them: a tensor ``lr`` as a float
    (torch's rule: one element)."""
    out = dict(group)
    lr = out.get("lr")
    if isinstance(lr, torch.Tensor):
        if lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        out["lr"] = lr.item()
    return out


def _to_torch(v: Any) -> Any:
    if isinstance(v, list):
        return [_to_torch(x) for x in v]
    if isinstance(v, np.ndarray):
        return torch.from_numpy(np.array(v))
    return v


def _to_numpy(s: Any) -> Any:
    """torch's LBFGS state as ferroptim's: tensors as arrays (0-d ones as numbers), torch's
    scratch list ``al`` of the two-loop recursion dropped."""
    if isinstance(s, torch.Tensor):
        s = s.detach().cpu()
        return s.item() if s.dim() == 0 else s.numpy()
    if isinstance(s, Mapping):
        return {k: _to_numpy(v) for k, v in s.items() if k != "al"}
    if isinstance(s, (list, tuple)):
        return [_to_numpy(v) for v in s]
    return s


__all__ = ["LBFGS"]
