"""``ferroptim.torch.Adafactor`` and ``ferroptim.torch.Muon``: ferroptim's per-tensor
optimizers (outside the element-wise engine) as ``torch.optim.Optimizer`` subclasses.

The state lives in torch's own ``self.state`` as torch tensors of torch's names, shapes and
dtypes, so torch's ``state_dict`` / ``load_state_dict`` are the format; each step hands NumPy
views of the parameter, gradient and state tensors to the same Rust kernel as
:class:`ferroptim.Adafactor` / :class:`ferroptim.Muon`, which updates them in place."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import chain
from typing import Any, Callable

import numpy as np
import torch

from .. import _core
from ..optim import adafactor as _fo_adafactor
from ..optim import muon as _fo_muon
from ._optimizer import _bump_versions, _check_cpu_tensor, _hooks_off, _run_load_pre_hooks

_DTYPES = (torch.float32, torch.float64)


def _view(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


class _PerTensor(torch.optim.Optimizer):
    """What ``Adafactor`` and ``Muon`` share: the checks of parameters, gradients, groups
    and loaded state; ``step`` loops over the parameters that have a gradient."""

    _check_hyper: Callable[[Mapping, int], dict]

    def __init__(self, params: Any, defaults: dict):
        type(self)._check_hyper(defaults, 0)
        super().__init__(params, defaults)
        self._check_groups(self.param_groups)

    def _check_groups(self, groups: list) -> None:
        for gi, g in enumerate(groups):
            type(self)._check_hyper(g, gi)
            for j, p in enumerate(g["params"]):
                self._check_param(p, f"param_groups[{gi}]['params'][{j}]")

    def add_param_group(self, param_group: dict) -> None:
        """torch's ``add_param_group``, then the checks of the constructor (undone if one fails)."""
        super().add_param_group(param_group)
        try:
            self._check_groups(self.param_groups[-1:])
        except Exception:
            self.param_groups.pop()
            raise

    def _check_param(self, p: torch.Tensor, name: str) -> None:
        _check_cpu_tensor(p, f"{type(self).__name__}: parameter {name}", _DTYPES, "float32 or float64")

    def _grad_view(self, p: torch.Tensor, name: str) -> np.ndarray:
        self._check_param(p, name)
        g = p.grad
        assert g is not None
        where = f"{type(self).__name__}: the gradient of parameter {name}"
        if g.layout != torch.strided or g.device.type != "cpu":
            raise ValueError(f"{where} must be a dense CPU tensor, got {g.layout} on {g.device}")
        if g.dtype != p.dtype or g.shape != p.shape:
            raise ValueError(f"{where} has {g.dtype} {tuple(g.shape)}, expected {p.dtype} {tuple(p.shape)}")
        return _view(g.contiguous())

    def _state_views(self, p: torch.Tensor) -> dict:
        """Parameter ``p``'s state tensors as C-contiguous tensors of its dtype (loaded
        state may be neither), written back into ``self.state``."""
        s = self.state[p]
        for k, v in s.items():
            if k != "step" and isinstance(v, torch.Tensor) and (v.dtype != p.dtype or not v.is_contiguous()):
                s[k] = v.to(p.dtype).contiguous()
        return s

    def _check_state(self, s: Any, p: torch.Tensor, name: str) -> None:
        raise NotImplementedError

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's ``load_state_dict`` (this class's state dict, or that of torch's optimizer
        of the same name), after checking everything: the groups' hyper-parameters and each
        parameter's state names and shapes; a refused one changes nothing. torch's
        load-state-dict pre-hooks run first (the checks see what they return), the post-hooks
        last, as in torch."""
        state_dict = _run_load_pre_hooks(self, state_dict)
        try:
            # ferroptim's options that torch's optimizer does not save take the defaults
            saved_groups = [{**self.defaults, **g} for g in state_dict["param_groups"]]
            saved_state = dict(state_dict["state"])
        except (KeyError, TypeError):
            raise ValueError("state_dict must have 'state' and 'param_groups' entries") from None
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter groups, "
                f"this optimizer has {len(self.param_groups)}"
            )
        id_map = {}
        for gi, (g, sg) in enumerate(zip(self.param_groups, saved_groups)):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError(
                    f"loaded state dict's parameter group {gi} has {len(sg['params'])} parameters, "
                    f"this optimizer's has {len(g['params'])}"
                )
            h = dict(sg)
            if isinstance(h.get("eps"), list):
                h["eps"] = tuple(h["eps"])
            type(self)._check_hyper(h, gi)
            for j, (pid, p) in enumerate(zip(sg["params"], g["params"])):
                id_map[pid] = (p, f"param_groups[{gi}]['params'][{j}]")
        for k, v in saved_state.items():
            if k not in id_map:
                raise ValueError(f"loaded state dict has state for unknown parameter id {k!r}")
            p, name = id_map[k]
            self._check_state(v, p, name)
        state_dict = {**state_dict, "param_groups": saved_groups}
        with _hooks_off(self, "_optimizer_load_state_dict_pre_hooks"):  # they ran above
            super().load_state_dict(state_dict)

    def _params_with_grad(self) -> list:
        return [p for p in chain.from_iterable(g["params"] for g in self.param_groups) if p.grad is not None]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a ``.grad`` (the others and their state
        untouched, as torch does).

        Args:
            closure: optional; re-evaluates the model and returns the loss (called with
                gradients enabled before the update, as torch does).

        Returns:
            The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        hypers = [type(self)._check_hyper(g, gi) for gi, g in enumerate(self.param_groups)]
        work = []
        for gi, (g, h) in enumerate(zip(self.param_groups, hypers)):
            for j, p in enumerate(g["params"]):
                if p.grad is not None:
                    work.append((h, p, self._grad_view(p, f"param_groups[{gi}]['params'][{j}]")))
        self._update(work)
        _bump_versions([p for _, p, _ in work])
        return loss

    def _update(self, work: list) -> None:
        raise NotImplementedError


class Adafactor(_PerTensor):
    """ferroptim's :class:`~ferroptim.Adafactor` as a ``torch.optim.Optimizer`` over CPU
    tensors: torch.optim.Adafactor's arguments, defaults, formula and state.

    Args:
        params: as torch's (parameters, named parameters or param-group dicts): dense,
            contiguous, non-empty CPU tensors of float32 or float64, updated in place.
        lr: the cap of the relative step size ``rho = min(lr, 1/sqrt(t))`` and the
            weight-decay coefficient (default 1e-2), >= 0.
        beta2_decay: the exponent of the step ``t`` giving the EWAs' weight ``t**beta2_decay``
            (default -0.8), <= 0.
        eps: ``(eps1, eps2)`` (default ``(None, 1e-3)``): ``eps1`` floors the row mean and
            ``sqrt(V)`` (None: the machine epsilon of the group's first parameter with a
            gradient, as torch picks it); ``eps2`` floors the parameter RMS scaling the step.
        d: the update's RMS clipping threshold (default 1.0), >= 1.
        weight_decay: decoupled weight decay (default 0.0), >= 0.
        foreach: None or False: torch's single-tensor path; True: torch's foreach path (the
            scaled update rounded before it is added).
        maximize: ascend instead of descend (default False).

    The formula is :class:`ferroptim.Adafactor`'s (torch's), bit for bit with torch on an
    AVX2 machine. State per parameter: ``step`` (torch's scalar float tensor), ``row_var``
    and ``col_var`` (parameters of 2 or more dimensions) or ``variance``; ``state_dict`` is
    torch's, so ``torch.optim.Adafactor`` loads it and this class loads torch's.
    """

    _check_hyper = staticmethod(_fo_adafactor._check_hyper)

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
    ):
        defaults = {
            "lr": lr,
            "beta2_decay": beta2_decay,
            "eps": eps,
            "d": d,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _check_param(self, p: torch.Tensor, name: str) -> None:
        super()._check_param(p, name)
        if p.numel() == 0:
            raise ValueError(
                f"Adafactor: parameter {name} is empty; Adafactor divides by its size, as torch's does"
            )

    def _check_state(self, s: Any, p: torch.Tensor, name: str) -> None:
        arrays = {
            k: (v.detach().cpu().float().numpy() if isinstance(v, torch.Tensor) else v)
            for k, v in (s.items() if isinstance(s, Mapping) else ())
        }
        _fo_adafactor._load_state(arrays if isinstance(s, Mapping) else s, np.empty(tuple(p.shape)), name)

    def _update(self, work: list) -> None:
        eps1_of: dict[int, float] = {}
        for h, p, g in work:
            s = self._state_views(p)
            if not s:
                s["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
                for k, shape in _fo_adafactor._state_shapes(tuple(p.shape)).items():
                    s[k] = torch.zeros(shape, dtype=p.dtype)
            # torch resolves eps1=None at the group's first parameter with a gradient
            eps1 = h["eps1"]
            if eps1 is None:
                eps1 = eps1_of.setdefault(id(h), float(torch.finfo(p.dtype).eps))
            s["step"] += 1
            _core.adafactor_step(
                _view(p),
                g,
                float(s["step"]),
                _view(s["variance"]) if "variance" in s else None,
                _view(s["row_var"]) if "row_var" in s else None,
                _view(s["col_var"]) if "col_var" in s else None,
                lr=h["lr"],
                beta2_decay=h["beta2_decay"],
                eps1=eps1,
                eps2=h["eps2"],
                d=h["d"],
                weight_decay=h["weight_decay"],
                maximize=h["maximize"],
                foreach=h["foreach"],
            )


class Muon(_PerTensor):
    """ferroptim's :class:`~ferroptim.Muon` as a ``torch.optim.Optimizer`` over CPU tensors:
    torch.optim.Muon's arguments, defaults, formula and state, for 2-D parameters only (the
    hidden layers' weight matrices; give biases and embeddings to ``AdamW``), as torch's.

    Args:
        params: as torch's: dense, contiguous 2-D CPU tensors of float32 or float64, updated
            in place; other shapes are refused, as torch refuses them.
        lr: learning rate (default 1e-3), >= 0.
        weight_decay: decoupled weight decay (default 0.1), >= 0.
        momentum: decay of the momentum buffer (default 0.95), >= 0.
        nesterov: Nesterov momentum (default True).
        ns_coefficients: the Newton–Schulz quintic's ``(a, b, c)`` (default
            (3.4445, -4.7750, 2.0315)).
        eps: floor of the Frobenius norm the momentum is divided by (default 1e-7), > 0.
        ns_steps: Newton–Schulz iterations (default 5), in [0, 100).
        adjust_lr_fn: None / ``"original"`` (``lr sqrt(max(1, A/B))``), ``"match_rms_adamw"``
            (``0.2 lr sqrt(max(A, B))``) or ``"spectral_unclamped"`` (``lr sqrt(A/B)``).
        ns_dtype: ferroptim's option (not torch's): ``"bfloat16"`` (default: torch's
            rounding of the iteration) or ``"float32"``.

    Per step: ``buf.lerp_(g, 1 - momentum)``; ``u = g.lerp(buf, momentum)`` if nesterov
    else ``buf``; ``p = p (1 - lr weight_decay) - adjusted_lr NS(u)`` (see
    :class:`ferroptim.Muon`). Equal to torch's where torch's float32 sums round to the same
    bfloat16 values (small matrices: bit for bit), else within a bfloat16 rounding carried
    through the iteration (tests/test_muon.py). State: ``momentum_buffer`` per parameter;
    ``state_dict`` is torch's, so ``torch.optim.Muon`` loads it and this class loads torch's.
    """

    _check_hyper = staticmethod(_fo_muon._check_hyper)

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (3.4445, -4.7750, 2.0315),
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        *,
        ns_dtype: str = "bfloat16",
    ):
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_coefficients": ns_coefficients,
            "eps": eps,
            "ns_steps": ns_steps,
            "adjust_lr_fn": adjust_lr_fn,
            "ns_dtype": ns_dtype,
        }
        super().__init__(params, defaults)

    def _check_param(self, p: torch.Tensor, name: str) -> None:
        if p.ndim != 2:
            raise ValueError(
                f"Muon only supports 2D parameters whereas we found a parameter with size: {p.size()} ({name})"
            )
        super()._check_param(p, name)

    def _check_state(self, s: Any, p: torch.Tensor, name: str) -> None:
        if not isinstance(s, Mapping) or set(s) != {"momentum_buffer"}:
            raise ValueError(f"the state of {name} must be {{'momentum_buffer': tensor}}")
        b = s["momentum_buffer"]
        if not isinstance(b, torch.Tensor) or tuple(b.shape) != tuple(p.shape) or not b.is_floating_point():
            raise ValueError(f"momentum_buffer of {name} must be a float tensor of shape {tuple(p.shape)}")

    def _update(self, work: list) -> None:
        for h, p, g in work:
            s = self._state_views(p)
            if not s:
                s["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            _core.muon_step(_view(p), g, _view(s["momentum_buffer"]), **h)


def _scalar_dtype() -> torch.dtype:
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


__all__ = ["Adafactor", "Muon"]
