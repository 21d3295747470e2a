"""The base of ``ferroptim.torch``'s optimizers: torch's ``Optimizer`` protocol (param groups,
``step(closure)``, hooks, ``state_dict`` in torch's format) over ferroptim's Rust engine,
which updates the parameters' memory through NumPy views of it."""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
from collections import OrderedDict, defaultdict
from collections.abc import Iterator, Mapping
from itertools import chain
from typing import Any, Callable, NamedTuple

import numpy as np
import torch

from .. import _core
from ..optim.base import OPTIMIZERS
from ..optim.base import Optimizer as _FoOptimizer
from ..optim.state_dtypes import _ml_bfloat16, _state_dtype_name, _state_dtype_of

# torch's choices of kernel (for-loop, foreach, fused, CUDA graphs): the result is the same
# whichever is chosen, so these options are kept in the param groups and otherwise ignored.
_KERNEL_OPTIONS = ("foreach", "fused", "capturable")
# Steps of fewer elements run on the calling thread. In a torch training loop torch's own
# threads run right before and after each step; a step that gains nothing from a second
# pool should not wake one: W4's (85K parameters, 2 threads, benches/torch_adapter.py
# --what loops) took 150 µs threaded and 149 µs on the calling thread.
_PARALLEL_MIN_ELEMENTS = 1 << 18

_PARAM_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
_TORCH_STATE_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


class _Twin(NamedTuple):
    """What the adapter copies from torch's optimizer of the same name, if torch has one."""

    cls: type | None
    # torch's defaults that ferroptim's class has no argument for (foreach, fused, ...)
    options: dict
    # whether torch keeps a "step" in each parameter's state (SGD does not)
    keeps_step: bool
    # whether torch creates each parameter's state in its constructor (Adagrad does)
    eager_state: bool


@functools.cache
def _twin(kind: str) -> _Twin:
    """torch's optimizer of the name of ferroptim's optimizer ``kind``, probed once on a
    one-element tensor."""
    fo_class = OPTIMIZERS[kind]
    tcls = getattr(torch.optim, fo_class.__name__, None)
    if not (isinstance(tcls, type) and issubclass(tcls, torch.optim.Optimizer)):
        return _Twin(None, {}, True, False)
    ours = set(inspect.signature(fo_class).parameters)
    t = torch.zeros(1, requires_grad=True)
    probe = tcls([t], lr=1e-3)
    eager = bool(probe.state)
    t.grad = torch.ones(1)
    step = type(probe).step
    getattr(step, "__wrapped__", step)(probe)  # without the step hooks: users' global hooks see no probe
    options = {k: v for k, v in probe.defaults.items() if k not in ours}
    return _Twin(tcls, options, "step" in probe.state[t], eager)


@functools.cache
def _fixed_options(kind: str) -> tuple:
    """torch's options that change the result, with the only values ferroptim computes."""
    return tuple((k, v) for k, v in _twin(kind).options.items() if k not in _KERNEL_OPTIONS)


@functools.cache
def _scalar_state_names(kind: str) -> list[str]:
    """The names of the per-tensor scalar state of optimizer ``kind`` (NAdam's mu_product,
    ASGD's eta and mu)."""
    return _core.Engine(kind, [], [], [], 1).scalar_state_names


def _scalar_dtype() -> torch.dtype:
    """The dtype of torch's scalar state tensors ("step"): float32, or float64 when that is
    torch's default dtype (``torch.optim.optimizer._get_scalar_dtype``)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of CPU tensor ``t``'s memory (bfloat16 as ``ml_dtypes.bfloat16``)."""
    if t.requires_grad:
        t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(_ml_bfloat16())
    return t.numpy()


def _check_cpu_tensor(p: torch.Tensor, where: str, dtypes: Any, expected: str) -> None:
    """Refuses a parameter ferroptim cannot update in place: sparse, not on the CPU, of a
    dtype outside ``dtypes`` (``expected`` names them) or not contiguous."""
    if p.layout != torch.strided:
        raise ValueError(f"{where} is a sparse ({p.layout}) tensor; only dense tensors are supported")
    if p.device.type != "cpu":
        raise ValueError(
            f"{where} is on device {p.device}; ferroptim.torch updates CPU tensors (use torch.optim for other devices)"
        )
    if p.dtype not in dtypes:
        raise TypeError(f"{where} has dtype {p.dtype}, expected {expected}")
    if not p.is_contiguous():
        raise ValueError(
            f"{where} is not contiguous (strides {p.stride()}); ferroptim.torch updates contiguous memory"
        )


def _bump_versions(tensors: list) -> None:
    """Tells autograd that ``tensors`` were modified in place (as ``add_`` would), so a
    backward pass through a graph that saved one of them raises torch's error."""
    try:
        torch.autograd.graph.increment_version(tensors)
    except (TypeError, AttributeError):  # torch < 2.4: one tensor at a time
        for t in tensors:
            torch._C._increment_version(t)


def _run_load_pre_hooks(opt: torch.optim.Optimizer, state_dict: Any) -> Any:
    """torch's first act in ``load_state_dict``: a shallow copy of ``state_dict`` through the
    optimizer's load-state-dict pre-hooks (each may edit it or return a new one)."""
    state_dict = state_dict.copy()
    for pre_hook in opt._optimizer_load_state_dict_pre_hooks.values():
        result = pre_hook(opt, state_dict)
        if result is not None:
            state_dict = result
    return state_dict


def _run_load_post_hooks(opt: torch.optim.Optimizer) -> None:
    """torch's last act in ``load_state_dict``: the load-state-dict post-hooks."""
    for post_hook in opt._optimizer_load_state_dict_post_hooks.values():
        post_hook(opt)


@contextlib.contextmanager
def _hooks_off(opt: torch.optim.Optimizer, *names: str) -> Iterator[None]:
    """The optimizer's hook tables ``names`` empty for the duration: torch's own
    ``state_dict`` / ``load_state_dict`` called where the hooks have run already, or must not
    run (pickling)."""
    saved = {name: getattr(opt, name) for name in names}
    try:
        for name in names:
            setattr(opt, name, OrderedDict())
        yield
    finally:
        for name, table in saved.items():
            setattr(opt, name, table)


def _with_hooks(step: Callable) -> Callable:
    """``step`` wrapped as torch wraps every optimizer's ``step`` (its global and per-optimizer
    step hooks around it, and a profiler range named as torch names it), but entering the
    profiler range only while a profiler runs: the range costs more than a small step."""
    full = torch.optim.Optimizer.profile_hook_step(step)
    from torch.optim import optimizer as _opt

    global_pre = getattr(_opt, "_global_optimizer_pre_hooks", None)
    global_post = getattr(_opt, "_global_optimizer_post_hooks", None)
    profiling = getattr(torch._C._autograd, "_profiler_enabled", None)
    if global_pre is None or global_post is None or profiling is None:
        return full  # a torch whose internals differ: its own wrapper

    @functools.wraps(step)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if profiling():
            return full(self, *args, **kwargs)
        for pre_hook in chain(global_pre.values(), self._optimizer_step_pre_hooks.values()):
            result = pre_hook(self, args, kwargs)
            if result is not None:
                if isinstance(result, tuple) and len(result) == 2:
                    args, kwargs = result
                else:
                    raise RuntimeError(
                        f"{step} must return None or a tuple of (new_args, new_kwargs), but got {result}."
                    )
        out = step(self, *args, **kwargs)
        self._optimizer_step_code()
        for post_hook in chain(self._optimizer_step_post_hooks.values(), global_post.values()):
            post_hook(self, args, kwargs)
        return out

    return wrapper


class TorchOptimizer(torch.optim.Optimizer):
    r"""A ferroptim optimizer as a ``torch.optim.Optimizer``: the base of ``ferroptim.torch``'s
    classes, one per ferroptim optimizer (``ferroptim.torch.Adam`` is ferroptim's
    :class:`~ferroptim.Adam`, and so on), each with that optimizer's arguments, defaults
    and formulas.

    Args:
        params: as torch's: ``model.parameters()``, ``model.named_parameters()``, or a list
            of param-group dicts ``{"params": ..., "lr": ...}`` whose other entries override
            the defaults for that group. Parameters must be dense, contiguous CPU tensors of
            dtype float32, float64, bfloat16 (needs ``ml_dtypes``: ``pip install
            ferroptim[bfloat16]``) or float16; their memory is updated in place.
        *args, **kwargs: the hyper-parameters of ferroptim's class of the same name (e.g.
            ``lr``, ``betas``, ``eps``, ``weight_decay``, ``amsgrad`` for ``Adam``). torch's
            kernel options (``foreach``, ``fused``, ``capturable``) are accepted and kept in
            the param groups, where torch keeps them; they change nothing. torch's other
            options (``differentiable``, Adam's ``decoupled_weight_decay``) must keep
            torch's defaults (use ``AdamW`` for decoupled decay).
        state_dtype: the element type of the state buffers (None: the parameter's dtype,
            float32 for 16-bit parameters; ``"bfloat16"`` halves the state's memory): see
            :class:`ferroptim.optim.Optimizer`.
        master_weights: for bfloat16 / float16 parameters: keep a float32 copy of each,
            updated every step and rounded into the parameter (default True); see
            :class:`ferroptim.optim.Optimizer`.

    ``step(closure=None)`` reads each parameter's ``.grad`` (parameters whose ``.grad`` is
    None are skipped, their state untouched, as torch does) and runs one fused Rust pass over
    the others; hyper-parameters are read from ``param_groups`` at every step, so torch's
    learning-rate schedulers drive it unchanged. The parameters' autograd version counters
    are bumped as torch's in-place updates bump them. ``zero_grad``, ``add_param_group`` and
    the step and state-dict hooks are torch's.

    ``state_dict()`` is in torch's format (state tensors under torch's names, ``step`` as
    torch keeps it, the param groups with torch's options), so torch's optimizer of the
    same name loads it, and ``load_state_dict`` loads torch's. ``state`` is a snapshot
    (copies of the engine's buffers, as torch tensors); change state through
    ``load_state_dict``.
    """

    _fo_class: type[_FoOptimizer] = _FoOptimizer
    param_groups: list[dict]

    def __init__(
        self,
        params: Any,
        *args: Any,
        state_dtype: Any = None,
        master_weights: bool | None = None,
        **kwargs: Any,
    ):
        twin = _twin(self._fo_class._kind)
        torch_options = {k: kwargs.pop(k) for k in list(kwargs) if k in twin.options}
        # ferroptim's class checks the hyper-parameters as it always does (on a stand-in
        # parameter) and gives the defaults of every group.
        probe = self._fo_class([np.zeros(1, np.float32)], *args, **kwargs)
        defaults = dict(probe.defaults)
        defaults.update(twin.options)
        defaults.update(torch_options)
        if master_weights is not None and not isinstance(master_weights, (bool, np.bool_)):
            raise TypeError(
                f"master_weights must be None, True or False, got {type(master_weights).__name__}"
            )
        self._state_dtype = _state_dtype_name(state_dtype)
        self._master_weights = None if master_weights is None else bool(master_weights)
        self._check_options([defaults], "the arguments")
        self._ready = False
        self._engine: Any = None
        self._active: tuple = ()
        self._parked: dict[int, dict] = {}
        super().__init__(params, defaults)
        self._relayout([{} for _ in self._all_params()])
        self._ready = True

    # -- layout: the parameters, their NumPy views and the engine over those with gradients

    def _all_params(self) -> list:
        return [p for g in self.param_groups for p in g["params"]]

    def _check_param(self, p: Any, name: str) -> None:
        if not isinstance(p, torch.Tensor):
            return  # torch's add_param_group says what it expected
        where = f"{type(self).__name__}: parameter {name}"
        _check_cpu_tensor(p, where, _PARAM_DTYPES, "float32, float64, bfloat16 or float16")
        if p.dtype == torch.bfloat16 and _ml_bfloat16() is None:
            raise ImportError(f"{where} is bfloat16, which needs ml_dtypes: pip install ferroptim[bfloat16]")

    def _check_options(self, groups: list, where: str) -> None:
        """torch's options other than its kernel choices must keep torch's defaults."""
        for gi, g in enumerate(groups):
            for k, default in _fixed_options(self._fo_class._kind):
                if g.get(k, default) != default:
                    raise ValueError(
                        f"{type(self).__name__} does not support {k}={g[k]!r} (in {where}"
                        f"{'' if where == 'the arguments' else f', group {gi}'}); "
                        f"torch's default {default!r} is the one ferroptim computes"
                    )

    def _names_of(self, groups: list) -> list[str]:
        names = []
        for gi, g in enumerate(groups):
            pn = g.get("param_names")
            for j in range(len(g["params"])):
                names.append(repr(pn[j]) if pn is not None else f"param_groups[{gi}]['params'][{j}]")
        return names

    def _relayout(self, states: list[dict]) -> None:
        """Takes in ``param_groups`` as they are, with ``states`` (one engine-format dict per
        parameter, in order); every parameter active."""
        flat = self._all_params()
        self._flat = flat
        self._names = self._names_of(self.param_groups)
        self._group_of = [gi for gi, g in enumerate(self.param_groups) for _ in g["params"]]
        self._views = [_as_numpy(p) for p in flat]
        self._ptrs = [p.data_ptr() for p in flat]
        self._bf16 = [p.dtype == torch.bfloat16 for p in flat]
        self._install(list(range(len(flat))), states, self.param_groups)

    def _build_engine(self, active: list[int], groups: list) -> Any:
        if not active:
            return None
        engine = _core.Engine(
            self._fo_class._kind,
            [self._views[i] for i in active],
            [self._names[i] for i in active],
            [self._group_of[i] for i in active],
            len(groups),
            "propagate",
            None,
            None,
            self._state_dtype,
            self._master_weights,
        )
        engine.check_groups(groups)
        engine.parallel_min_elements = max(engine.parallel_min_elements, _PARALLEL_MIN_ELEMENTS)
        return engine

    def _install(self, active: list[int], states: list[dict], groups: list) -> None:
        """An engine over the parameters ``active`` (flat indices) with their ``states``; the
        others' states are kept aside. Nothing changes if this raises."""
        engine = self._build_engine(active, groups)
        if engine is not None:
            engine.set_states([states[i] for i in active])
        on = set(active)
        self._engine = engine
        self._active = tuple(active)
        self._active_params = [self._flat[i] for i in active]
        self._parked = {i: s for i, s in enumerate(states) if i not in on and s}

    def _engine_states(self) -> list[dict]:
        """Every parameter's state in the engine's format (16-bit buffers as uint16 bits)."""
        out = [self._parked.get(i, {}) for i in range(len(self._flat))]
        if self._engine is not None:
            for j, i in enumerate(self._active):
                out[i] = self._engine.state(j)
        return out

    def _state_dtype_name(self, i: int) -> str:
        return _state_dtype_of(self._state_dtype, self._views[i])

    # -- the step -------------------------------------------------------------------------

    def _changed_params(self) -> ValueError:
        return ValueError(
            f"{type(self).__name__}: the parameters in param_groups changed since the optimizer "
            "was built; add parameters with add_param_group()"
        )

    def _step(self) -> None:
        flat, ptrs, bf16 = self._flat, self._ptrs, self._bf16
        grads, active = [], []
        moved = False
        i = 0
        n = len(flat)
        for group in self.param_groups:
            for p in group["params"]:
                if i >= n or p is not flat[i]:
                    raise self._changed_params()
                g = p.grad
                if g is not None:
                    if p.data_ptr() != ptrs[i]:
                        self._follow_data(i)
                        moved = True
                    try:
                        grads.append(_as_numpy(g) if bf16[i] else g.numpy())
                    except (TypeError, RuntimeError) as e:
                        grads.append(self._grad_array(i, g, e))
                    active.append(i)
                i += 1
        if i != n:
            raise self._changed_params()
        self._check_options(self.param_groups, "param_groups")
        if not active:
            return
        if moved or tuple(active) != self._active:
            self._install(active, self._engine_states(), self.param_groups)
        self._engine.step(grads, self.param_groups)
        _bump_versions(self._active_params)

    def _grad_array(self, i: int, g: torch.Tensor, e: Exception) -> np.ndarray:
        """The NumPy view of a gradient that ``.numpy()`` refused: one that requires grad
        (``backward(create_graph=True)``), else a clear error."""
        if g.requires_grad and g.layout == torch.strided and g.device.type == "cpu":
            return _as_numpy(g)
        raise self._bad_grad(i, g, e) from None

    def _bad_grad(self, i: int, g: torch.Tensor, e: Exception) -> Exception:
        where = f"{type(self).__name__}: the gradient of parameter {self._names[i]}"
        if g.layout != torch.strided:
            return ValueError(f"{where} is sparse ({g.layout}); only dense gradients are supported")
        if g.device.type != "cpu":
            return ValueError(f"{where} is on device {g.device}; ferroptim.torch updates CPU tensors")
        return TypeError(f"{where} cannot be read as a NumPy array: {e}")

    def _follow_data(self, i: int) -> None:
        """Parameter ``i``'s ``.data`` was replaced: its view follows, its state stays."""
        p = self._flat[i]
        self._check_param(p, self._names[i])
        view = _as_numpy(p)
        old = self._views[i]
        if view.shape != old.shape or view.dtype != old.dtype:
            raise ValueError(
                f"{type(self).__name__}: parameter {self._names[i]} changed from {old.dtype} "
                f"{old.shape} to {view.dtype} {view.shape} since the optimizer was built; "
                "create a new optimizer for it"
            )
        states = self._engine_states()
        self._views[i] = view
        self._ptrs[i] = p.data_ptr()
        self._active = ()  # the engine holds the old view: rebuilt before the step
        self._parked = {j: s for j, s in enumerate(states) if s}
        self._engine = None

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient, from its ``.grad``.

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
        self._step()
        return loss

    def _patch_step_function(self) -> None:
        self._zero_grad_profile_name = f"Optimizer.zero_grad#{type(self).__name__}.zero_grad"
        cls = type(self)
        if not getattr(cls.step, "hooked", False):
            cls.step = _with_hooks(cls.step)  # type: ignore[method-assign]
            cls.step.hooked = True  # type: ignore[attr-defined]

    # -- param groups ---------------------------------------------------------------------

    def add_param_group(self, param_group: dict) -> None:
        """Adds a param group (as torch's ``add_param_group``); its state starts empty.

        The group's parameters are checked as the constructor's are, its hyper-parameters
        at once; nothing changes if a check fails.
        """
        if isinstance(param_group, dict) and "params" in param_group:
            ps = param_group["params"]
            if isinstance(ps, torch.Tensor):
                ps = [ps]
            elif not isinstance(ps, (set, list)):
                ps = list(ps)
            param_group["params"] = ps
            if isinstance(ps, list):
                base = len(self.param_groups)
                for j, p in enumerate(ps):
                    name = repr(p[0]) if isinstance(p, tuple) else f"param_groups[{base}]['params'][{j}]"
                    self._check_param(p[1] if isinstance(p, tuple) else p, name)
        if not getattr(self, "_ready", False):
            super().add_param_group(param_group)
            return
        states = self._engine_states()
        super().add_param_group(param_group)
        n_new = len(self.param_groups[-1]["params"])
        try:
            self._check_options(self.param_groups, "param_groups")
            self._relayout(states + [{} for _ in range(n_new)])
        except Exception:
            self.param_groups.pop()
            self._relayout(states)
            raise

    # -- state, in torch's format -----------------------------------------------------------

    def _to_torch(self, i: int, s: dict) -> dict:
        """Parameter ``i``'s engine-format state as torch keeps it."""
        twin = _twin(self._fo_class._kind)
        scalars = _scalar_state_names(self._fo_class._kind)
        if not s.get("step") and not any(isinstance(v, np.ndarray) for v in s.values()):
            return self._initial_torch_state(i) if twin.eager_state else {}
        out: dict[str, Any] = {}
        dtype16 = self._state_dtype_name(i)
        for k, v in s.items():
            if k == "step":
                if twin.keeps_step:
                    out[k] = torch.tensor(float(v), dtype=_scalar_dtype())
            elif k in scalars:
                out[k] = torch.tensor(float(v), dtype=_scalar_dtype())
            elif isinstance(v, np.ndarray) and v.dtype == np.uint16:
                out[k] = torch.from_numpy(v.view(np.int16)).view(_TORCH_STATE_DTYPES[dtype16])
            else:
                out[k] = torch.from_numpy(np.asarray(v))
        return out

    def _initial_torch_state(self, i: int) -> dict:
        """The state torch's twin gives parameter ``i`` in its constructor (Adagrad's
        ``sum``), in this optimizer's state dtype."""
        twin = _twin(self._fo_class._kind)
        assert twin.cls is not None
        group = self.param_groups[self._group_of[i]]
        names = set(inspect.signature(twin.cls).parameters) - {"params", "lr"}
        t = torch.zeros_like(self._flat[i])
        init = twin.cls([t], **{k: group[k] for k in names if k in group}).state[t]
        dtype = _TORCH_STATE_DTYPES[self._state_dtype_name(i)]
        return {k: (v if k == "step" else v.to(dtype)) for k, v in init.items()}

    def _from_torch(self, i: int, saved: Any, where: str) -> dict:
        """A torch-format state of parameter ``i`` in the engine's format, checked."""
        if not isinstance(saved, Mapping):
            raise TypeError(
                f"{where} must be a dict of the state of {self._names[i]}, got {type(saved).__name__}"
            )
        s: dict[str, Any] = {}
        for k, v in saved.items():
            if v is None:
                continue  # torch < 2.0 saved momentum_buffer=None for plain SGD
            if isinstance(v, torch.Tensor):
                v = v.detach().cpu()
                if v.dtype == torch.bfloat16:
                    v = v.float()  # exact: bfloat16 is float32's top half
                v = v.item() if v.dim() == 0 else v.numpy()
            s[k] = v
        target = self._state_dtype_name(i)
        scalars = _scalar_state_names(self._fo_class._kind)
        return _FoOptimizer._coerce_state(s, self._views[i], self._names[i], scalars, target, target)

    @property
    def state(self) -> defaultdict:
        """Each parameter's state as torch keeps it (copies), keyed by the parameter."""
        out: defaultdict = defaultdict(dict)
        if not getattr(self, "_ready", False):
            return out
        for i, s in enumerate(self._engine_states()):
            t = self._to_torch(i, s)
            if t:
                out[self._flat[i]] = t
        return out

    @state.setter
    def state(self, value: Any) -> None:
        if not getattr(self, "_ready", False):
            return  # torch's constructor sets an empty state
        self._load_states({p: v for p, v in value.items()}, self.param_groups)

    def _load_states(self, by_param: dict, groups: list) -> None:
        index = {id(p): i for i, p in enumerate(self._flat)}
        states: list[dict] = [{} for _ in self._flat]
        for p, v in by_param.items():
            if id(p) not in index:
                raise ValueError(
                    f"{type(self).__name__}: state for a tensor that is not one of the parameters"
                )
            i = index[id(p)]
            states[i] = self._from_torch(i, v, f"the state of {self._names[i]}")
        self._install(list(range(len(self._flat))), states, groups)

    def load_state_dict(self, state_dict: dict) -> None:
        """Loads a state dict in torch's format: this class's, or that of torch's optimizer
        of the same name. Runs torch's load-state-dict hooks.

        Everything is checked before anything changes: the number of groups and of
        parameters in each, each state tensor's shape, the hyper-parameters. State is
        converted to this optimizer's state dtype (bfloat16 state loads exactly into float32
        and back).
        """
        state_dict = _run_load_pre_hooks(self, state_dict)
        try:
            saved_groups = copy.deepcopy(list(state_dict["param_groups"]))
            saved_state = dict(state_dict["state"])
        except (KeyError, TypeError):
            raise ValueError("state_dict must have 'state' and 'param_groups' entries") from None
        groups = self.param_groups
        if len(groups) != len(saved_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter groups, this optimizer has {len(groups)}"
            )
        for gi, (g, sg) in enumerate(zip(groups, saved_groups)):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError(
                    f"loaded state dict's parameter group {gi} has {len(sg['params'])} parameters, "
                    f"this optimizer's has {len(g['params'])}"
                )
        id_map = dict(
            zip(
                chain.from_iterable(g["params"] for g in saved_groups),
                range(len(self._flat)),
            )
        )
        states: list[dict] = [{} for _ in self._flat]
        for k, v in saved_state.items():
            if k not in id_map:
                raise ValueError(f"loaded state dict has state for unknown parameter id {k!r}")
            i = id_map[k]
            states[i] = self._from_torch(i, v, f"state_dict['state'][{k!r}]")
        new_groups = []
        for g, sg in zip(groups, saved_groups):
            sg["params"] = g["params"]
            if "param_names" in g and "param_names" not in sg:
                sg["param_names"] = g["param_names"]
            for k, v in self.defaults.items():
                sg.setdefault(k, v)  # torch's options that an older torch did not save
            new_groups.append(sg)
        self._check_options(new_groups, "the loaded param groups")
        self._install(list(range(len(self._flat))), states, new_groups)
        self.param_groups = new_groups
        _run_load_post_hooks(self)

    # -- pickle and copy.deepcopy -----------------------------------------------------------

    def __getstate__(self) -> dict:
        return {
            "defaults": self.defaults,
            "state": self.state,
            "param_groups": self.param_groups,
            "ferroptim": {"state_dtype": self._state_dtype, "master_weights": self._master_weights},
        }

    def __setstate__(self, st: dict) -> None:
        st = dict(st)
        options = st.pop("ferroptim")
        by_param = st.pop("state")
        self._ready = False
        super().__setstate__(st)
        self._state_dtype = options["state_dtype"]
        self._master_weights = options["master_weights"]
        self._engine, self._active, self._parked = None, (), {}
        self._relayout([{} for _ in self._all_params()])
        self._load_states(dict(by_param), self.param_groups)
        self._ready = True


def adapter(fo_class: type[_FoOptimizer]) -> type[TorchOptimizer]:
    """The ``torch.optim.Optimizer`` subclass of ferroptim optimizer class ``fo_class`` (one
    of :data:`ferroptim.optim.OPTIMIZERS`' values), named like it, with its arguments."""
    if not (isinstance(fo_class, type) and issubclass(fo_class, _FoOptimizer) and fo_class._kind):
        raise TypeError(f"fo_class must be a ferroptim optimizer class, got {fo_class!r}")
    name = fo_class.__name__
    doc = (
        f"ferroptim's :class:`~ferroptim.{name}` as a ``torch.optim.Optimizer`` over CPU "
        f"tensors (see :class:`ferroptim.torch.TorchOptimizer`).\n\n"
        f"Arguments and formula as ferroptim's ``{name}``:\n\n{inspect.getdoc(fo_class) or ''}"
    )
    cls = type(name, (TorchOptimizer,), {"_fo_class": fo_class, "__doc__": doc, "__module__": __package__})
    sig = inspect.signature(fo_class)
    cls.__signature__ = sig  # type: ignore[attr-defined]
    return cls
