"""The training loop of :meth:`ferroptim.nn.MLP.fit`, one method per phase: the set-up (every
argument checked before anything is modified), the epochs (Rust calls of at most
``steps_per_execution`` updates), what runs between calls and after each epoch (batch
callbacks, progress bar, validation, epoch callbacks), and the :class:`History` at the end."""

from __future__ import annotations

import itertools
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import numpy as np

from ..batches import MiniBatches
from ..data import _fit as _data
from ..optim import LBFGS, Optimizer
from ..optim.pertensor import _PerTensor
from ..optim.schedulefree import _ScheduleFree
from ..wrappers import _Wrapper
from ._args import _U64_MAX, _callables, _int
from ._interrupt import _DeferredInterrupt
from .model import History

if TYPE_CHECKING:
    from .model import MLP

_HISTORY_KEYS = ("costs", "epoch_costs", "epochs", "updates", "seconds", "val_costs", "val_accuracy", "lr")
_TIMING_PARTS = ("gather", "forward", "backward", "step")


class _Fit:
    """One call of :meth:`MLP.fit` (see its docstring for the arguments): built, it has
    checked every argument and modified nothing; :meth:`run` trains and returns the
    :class:`History`."""

    def __init__(
        self,
        model: MLP,
        X: Any,
        Y: Any,
        optimizer: Any,
        *,
        batch_size: Optional[int],
        epochs: int,
        shuffle: bool,
        seed: Optional[int],
        drop_last: bool,
        axis: int,
        validation_data: Any,
        callbacks: Sequence[Callable[[int, dict], Any]],
        steps_per_execution: Optional[int],
        batch_callbacks: Sequence[Callable[[dict], Any]],
        max_steps: Optional[int],
        progress: bool,
        timing: bool,
        check_input: bool,
        sample_weight: Any = None,
        class_weight: Any = None,
    ) -> None:
        if isinstance(optimizer, (list, tuple)):
            optimizer = _Several(optimizer, model)
        lbfgs = isinstance(optimizer, LBFGS)
        # stepped from Python, one batch at a time: wrappers, the per-tensor optimizers
        # (Adafactor, Muon, schedule-free) and several optimizers together
        python_loop = isinstance(optimizer, (_Wrapper, _PerTensor, _Several))
        if not (isinstance(optimizer, Optimizer) or python_loop or lbfgs):
            raise TypeError(
                "optimizer must be a ferroptim optimizer or a list of them, got " + type(optimizer).__name__
            )
        if lbfgs and _data.is_source(X):
            raise ValueError("optimizer: LBFGS evaluates the whole data at each step; give X and Y as arrays")
        if lbfgs and batch_size is not None:
            raise ValueError(
                "optimizer: LBFGS takes the cost and gradient of the whole data at each step; "
                f"pass batch_size=None (got {batch_size!r})"
            )
        epochs = _int("epochs", epochs, 0)
        if epochs and model.epoch > _U64_MAX:
            raise ValueError(f"model.epoch {model.epoch} is past the last epoch, 2**64 - 1")
        if batch_size is not None:
            batch_size = _int("batch_size", batch_size, 1)
        if steps_per_execution is not None:
            steps_per_execution = _int("steps_per_execution", steps_per_execution, 1)
        if max_steps is not None:
            max_steps = _int("max_steps", max_steps, 0)
        if axis not in (0, 1, -1, -2):
            raise ValueError(f"axis must be 0 or 1, got {axis!r}")
        transposed = axis in (1, -1)
        params = model._param_list()
        seed = model.seed if seed is None else _int("seed", seed, 0)
        batches: Any
        weights: Optional[np.ndarray] = None
        if _data.is_source(X):  # a ferroptim.data source: streamed, labels inside
            if sample_weight is not None or class_weight is not None:
                raise ValueError(
                    "sample_weight and class_weight need arrays X and Y, not a ferroptim.data source"
                )
            batches, labels = _data.fit_batches(
                model, X, Y, axis=axis, check=bool(check_input), batch_size=batch_size,
                shuffle=shuffle, seed=seed, drop_last=drop_last,
            )  # fmt: skip
            y_transposed = False
        else:
            X, Y, labels, y_transposed = model._fit_data(X, Y, transposed, bool(check_input))
            weights = model._fit_weights(Y, labels, transposed and not labels, sample_weight, class_weight)
            batches = MiniBatches(
                X,
                Y,
                *(() if weights is None else (weights,)),
                batch_size=batch_size,
                shuffle=shuffle,
                seed=seed,
                drop_last=drop_last,
                axis=-1 if transposed else 0,
            )
        if model.batch_norm and not _data.is_source(X):
            m = X.shape[1 if transposed else 0]
            bs = m if batch_size is None else min(batch_size, m)
            if bs < 2 or (not drop_last and m % bs == 1):
                raise ValueError(
                    f"batch_norm: a batch of 1 example (m = {m}, batch_size = {batch_size}) cannot "
                    'be normalized in training (torch: "Expected more than 1 value per channel when '
                    'training"); choose another batch_size or drop_last=True'
                )
        if model.position and model.position > batches._num_batches(model.epoch):
            raise ValueError(
                f"model.position {model.position} is past epoch {model.epoch}'s "
                f"{batches._num_batches(model.epoch)} batches at this batch_size"
            )
        self.validation: Optional[tuple] = None
        self.evaluate_source: Optional[Callable[[], tuple]] = None
        if _data.is_source(validation_data):
            self.evaluate_source = _data.evaluator(model, validation_data)
        elif validation_data is not None:
            try:
                Xv, Yv = validation_data
            except (TypeError, ValueError):
                raise TypeError("validation_data must be a pair (X_val, Y_val)") from None
            Xv = np.require(model._check_X(Xv, "validation_data X"), requirements=["C", "A"])
            # The targets as the core reads them (cost) and as given (score).
            self.validation = (Xv, model._check_Y(Yv, Xv.shape[0], "validation_data Y"), Yv)
        self.callbacks = _callables("callbacks", callbacks)
        self.batch_callbacks = _callables("batch_callbacks", batch_callbacks)
        if python_loop or lbfgs:
            ids = {id(a) for a in (optimizer._params if lbfgs else optimizer._arrays())}
            if ids != {id(p) for p in params}:
                some = ids < {id(p) for p in params}
                raise ValueError(
                    "optimizer: it was built on other arrays than model.params; build it on "
                    "model.params (the same arrays, not copies)"
                    + (
                        "; to step some of them with another optimizer (Muon takes only the "
                        "weight matrices), pass a list: optimizer=[fo.Muon(...), fo.AdamW(...)]"
                        if some
                        else ""
                    )
                )
            if lbfgs:
                optimizer._group()
            else:
                optimizer._check_groups()
            # the optimizer whose lr the history records
            inner = optimizer.optimizers[0] if isinstance(optimizer, _Several) else optimizer
            while isinstance(inner, _Wrapper):
                inner = inner.optimizer
        else:
            inner = optimizer
            optimizer._engine.check_groups(optimizer.param_groups)

        self.model, self.optimizer, self.inner, self.params = model, optimizer, inner, params
        self.batches, self.bs, self.drop_last = batches, batches._batch_size_at(0), drop_last
        self.transposed, self.y_transposed, self.labels = transposed, y_transposed, labels
        self.weighted = weights is not None
        self.epochs, self.steps_per_execution, self.max_steps = epochs, steps_per_execution, max_steps
        self.progress, self.timing = progress, bool(timing)
        self.updates: Callable[[int], tuple] = self._rust_updates
        if lbfgs:
            self.updates = self._lbfgs_updates
        elif python_loop:
            self.updates = self._python_updates
        # Schedule-free: trained in train mode (the parameters hold y), evaluated and left in
        # eval mode (they hold x), as the schedulefree package asks.
        members = optimizer.optimizers if isinstance(optimizer, _Several) else [optimizer]
        self.schedule_free = _Modes([o for o in members if isinstance(o, _ScheduleFree)])
        self.h: dict[str, list] = {k: [] for k in _HISTORY_KEYS}
        self.t_parts: dict[str, list[float]] = {k: [] for k in _TIMING_PARTS}
        self.total_updates, self.train_seconds, self.stop = 0, 0.0, False
        self.bar: Any = None

    def run(self) -> History:
        """Trains ``epochs`` epochs (fewer when stopped) and returns what was recorded.

        Ctrl-C: inside each Rust call (and each update of the Python path) it stops after the
        current update, the model's counters consistent (see ``_DeferredInterrupt``);
        elsewhere (callbacks, validation, the progress bar) it acts as in any Python code."""
        planned = self._planned_updates()
        self.bar = _progress_bar(self.progress, planned)
        sf = self.schedule_free if planned else _Modes([])
        sf.train()
        try:
            for _ in range(self.epochs):
                if not self._epoch():
                    break
        finally:
            if self.bar is not None:
                self.bar.close()
            sf.eval()
        return self._history()

    def _planned_updates(self) -> int:
        """The updates this fit makes if nothing stops it (the progress bar's total): the
        current epoch's rest, then ``epochs - 1`` more of the current epoch's batch count,
        at most ``max_steps``."""
        if self.epochs == 0:
            return 0
        per_epoch = self.batches._num_batches(self.model.epoch)
        total = per_epoch * self.epochs - self.model.position
        return total if self.max_steps is None else min(total, self.max_steps)

    def _epoch(self) -> bool:
        """The model's current epoch from its position on, as calls of at most
        ``steps_per_execution`` updates; False when training stops (inside the epoch or by
        a callback at its end)."""
        model = self.model
        n_batches = self.batches._num_batches(model.epoch)
        epoch_costs: list[np.ndarray] = []
        seconds, parts, ended = 0.0, np.zeros(4), False
        while not (ended or self.stop):
            count = n_batches - model.position
            if self.steps_per_execution is not None:
                count = min(count, self.steps_per_execution)
            if self.max_steps is not None:
                self.stop = self.total_updates >= self.max_steps
                count = min(count, self.max_steps - self.total_updates)
            if count > 0:
                t0 = time.perf_counter()
                costs, part = self.updates(count)
                spent = time.perf_counter() - t0
                seconds, self.train_seconds = seconds + spent, self.train_seconds + spent
                self.total_updates += len(costs)
                self.h["costs"].append(costs)
                epoch_costs.append(costs)
                if part is not None:
                    parts += part
            ended = model.position == n_batches
            if ended:
                model._epoch, model._position = model._epoch + 1, 0
            if count == 0:
                continue
            self._after_call(costs, spent, epoch_costs, n_batches)
        if not ended:  # stopped inside the epoch
            return False
        self._after_epoch(epoch_costs, seconds, parts)
        return not self.stop

    def _after_call(self, costs: np.ndarray, spent: float, epoch_costs: list, n_batches: int) -> None:
        """The batch callbacks and the progress bar, after a call of ``len(costs)`` updates
        that took ``spent`` seconds."""
        model = self.model
        logs = {
            "epoch": model.epoch,
            "position": model.position,
            "updates": self.total_updates,
            "cost": float(np.mean(costs)) if len(costs) else float("nan"),
            "lr": _current_lr(self.inner),
            "seconds": self.train_seconds,
        }
        for cb in self.batch_callbacks:
            self.stop = bool(cb(logs)) or self.stop
        if self.bar is not None:
            self.bar.set_postfix(
                epoch=model.epoch,
                cost=f"{_ewa_cost(np.concatenate(epoch_costs)):.4g}",
                updates_per_s=f"{len(costs) / max(spent, 1e-12):.3g}",
            )
            self.bar.update(len(costs))

    def _after_epoch(self, epoch_costs: list, seconds: float, parts: np.ndarray) -> None:
        """An ended epoch's entries of the history, its validation and the epoch callbacks."""
        model = self.model
        costs = np.concatenate(epoch_costs) if epoch_costs else np.empty(0)
        if self.timing:
            for k, v in zip(self.t_parts, parts):
                self.t_parts[k].append(float(v))
        epoch_cost = float(np.mean(costs)) if len(costs) else float("nan")
        logs = {"epoch": model.epoch - 1, "cost": epoch_cost, "seconds": seconds}
        logs["lr"] = _current_lr(self.inner)
        evaluates = self.validation is not None or self.evaluate_source is not None or self.callbacks
        sf = self.schedule_free if evaluates else _Modes([])
        sf.eval()  # validation and callbacks (checkpoints, early stopping) see x
        if self.evaluate_source is not None:
            logs["val_cost"], val_accuracy = self.evaluate_source()
            if val_accuracy is not None:
                logs["val_accuracy"] = val_accuracy
        elif self.validation is not None:
            Xv, Yv, Yv_raw = self.validation
            logs["val_cost"] = model._core.cost(self.params, Xv, Yv)
            if model._classifier:
                logs["val_accuracy"] = model.score(Xv, Yv_raw)
        h = self.h
        for k in ("epoch_costs", "epochs", "updates", "seconds", "lr"):
            key = {"epoch_costs": "cost", "epochs": "epoch", "updates": None}.get(k, k)
            h[k].append(self.total_updates if key is None else logs[key])
        if "val_cost" in logs:
            h["val_costs"].append(logs["val_cost"])
        if "val_accuracy" in logs:
            h["val_accuracy"].append(logs["val_accuracy"])
        for cb in self.callbacks:
            self.stop = bool(cb(model.epoch - 1, logs)) or self.stop
        if not self.stop:
            sf.train()

    def _history(self) -> History:
        """What this fit recorded, as arrays."""
        h = self.h
        return History(
            costs=np.concatenate(h["costs"]) if h["costs"] else np.empty(0),
            epoch_costs=np.asarray(h["epoch_costs"], dtype=np.float64),
            epochs=np.asarray(h["epochs"], dtype=np.int64),
            updates=np.asarray(h["updates"], dtype=np.int64),
            seconds=np.asarray(h["seconds"], dtype=np.float64),
            val_costs=np.asarray(h["val_costs"], dtype=np.float64),
            val_accuracy=np.asarray(h["val_accuracy"], dtype=np.float64),
            lr=np.asarray(h["lr"], dtype=np.float64),
            timing={k: np.asarray(v) for k, v in self.t_parts.items()} if self.timing else {},
        )

    # -- the updates: one Rust call, or the Python path for optimizer wrappers ---------------

    def _rust_updates(self, count: int) -> tuple:
        """``count`` updates from ``model.position`` of epoch ``model.epoch`` in one Rust
        call; advances ``model.position`` (also when it raises: by the updates applied).
        Returns the batch costs and the timing parts."""
        model, optimizer, batches = self.model, self.optimizer, self.batches
        if _data.is_source(getattr(batches, "source", None)):
            return _data.source_updates(
                model, optimizer, self.params, count, batches=batches, labels=self.labels,
                timing=self.timing, learning_rates=_learning_rates, deferred_interrupt=_DeferredInterrupt,
            )  # fmt: skip
        start = model.position
        lrs = _learning_rates(optimizer, count)
        with _DeferredInterrupt() as interrupt:
            try:
                costs, done, _, parts, err = model._core.fit_epoch(
                    self.params,
                    optimizer._engine,
                    optimizer.param_groups,
                    batches._core,
                    batches._order_args(model.epoch),
                    batch_size=self.bs,
                    drop_last=self.drop_last,
                    start=start,
                    stop=start + count,
                    lrs=lrs,
                    x_transposed=self.transposed,
                    y_transposed=self.y_transposed,
                    labels=self.labels,
                    timing=self.timing,
                    interrupt=interrupt,
                    dropout=model._dropout_key(model.epoch, 0),
                    weighted=self.weighted,
                    running=model._running_list(),
                )
            finally:  # also when a signal handler raises as the call returns
                model._position = start + interrupt.done
            if err is not None:
                raise err
        return costs, (np.asarray(parts) if parts is not None else None)

    def _lbfgs_updates(self, count: int) -> tuple:
        """LBFGS: each update one ``optimizer.step`` (up to its ``max_iter`` iterations) over
        the whole data, the cost and gradient of each evaluation one Rust call; the cost is
        the step's first (torch's LBFGS returns it). Ctrl-C is held until the step is done."""
        model, batches = self.model, self.batches
        X, Y = batches._arrays[0], batches._arrays[1]
        if self.transposed:
            X = X.T
            Y = Y if self.labels or Y.ndim == 1 else Y.T
        X = np.require(X, requirements=["C", "A"])
        Y = np.require(Y, requirements=["C", "A"]) if isinstance(Y, np.ndarray) else Y
        grads = [model.grads[n] for n in model._param_names()]

        w = np.ascontiguousarray(batches._arrays[2]) if self.weighted else None
        running = model._running_list()

        def closure() -> tuple:  # batch norm in training mode, as torch's LBFGS closures run
            return model._core.loss_and_grad(self.params, X, Y, grads, None, w, running, True), grads

        costs = []
        for _ in range(count):
            with _DeferredInterrupt():
                costs.append(float(self.optimizer.step(closure)))
                model._position += 1
        return np.asarray(costs, dtype=np.float64), None

    def _python_updates(self, count: int) -> tuple:
        """The slower path for optimizer wrappers: ``count`` updates as
        ``optimizer.step(model.loss_and_grad(Xb, Yb)[1])``, one Python iteration per batch.
        Ctrl-C is held until the batch's update is complete."""
        model, batches = self.model, self.batches
        batches.load_state_dict({"seed": batches.seed, "epoch": model.epoch, "position": model.position})
        costs = []
        for Xb, Yb, *Wb in itertools.islice(iter(batches), count):
            if self.transposed:
                Xb = Xb.T
                Yb = Yb if self.labels or Yb.ndim == 1 else Yb.T
            w = Wb[0] if Wb else None
            cost, grads = model.loss_and_grad(
                Xb, Yb, dropout_key=(model.epoch, model.position), sample_weight=w, training=True
            )
            with _DeferredInterrupt():
                self.optimizer.step(grads)
                costs.append(cost)
                model._position += 1
        return np.asarray(costs, dtype=np.float64), None


class _Modes:
    """The schedule-free optimizers of a fit, switched together: ``train()`` (the
    parameters hold ``y``) and ``eval()`` (they hold ``x``)."""

    def __init__(self, optimizers: list[_ScheduleFree]):
        self.optimizers = optimizers

    def train(self) -> None:
        for o in self.optimizers:
            o.train()

    def eval(self) -> None:
        for o in self.optimizers:
            o.eval()


class _Several:
    """Several optimizers that together step ``model.params``, each parameter in exactly
    one of them (Muon for the weight matrices and AdamW for the biases, as torch advises):
    each update, each steps its own parameters from the same batch's gradients, in the
    order given."""

    def __init__(self, optimizers: Sequence[Any], model: MLP):
        if not optimizers:
            raise ValueError("optimizer: an empty list; give one optimizer or several")
        name_of = {id(v): k for k, v in model.params.items()}
        self.optimizers, self.names = list(optimizers), []
        seen: set[Any] = set()
        for i, o in enumerate(self.optimizers):
            if isinstance(o, (LBFGS, _Several)) or not isinstance(o, (Optimizer, _Wrapper, _PerTensor)):
                raise TypeError(
                    f"optimizer[{i}] must be a ferroptim optimizer other than LBFGS (which "
                    f"evaluates the whole data itself), got {type(o).__name__}"
                )
            names = [name_of.get(id(a)) for a in o._arrays()]
            if None in names or seen & set(names):
                raise ValueError(
                    f"optimizer[{i}]: the optimizers must be built on model.params (the arrays "
                    "themselves), each parameter in exactly one of them"
                )
            seen |= set(names)
            self.names.append(names)

    def _arrays(self) -> list[np.ndarray]:
        return [a for o in self.optimizers for a in o._arrays()]

    def _check_groups(self) -> None:
        for o in self.optimizers:
            o._check_groups()

    def step(self, grads: dict) -> None:
        """Every optimizer's step, each with its parameters' gradients from ``grads``
        (keyed like ``model.params``)."""
        for o, names in zip(self.optimizers, self.names):
            o.step([grads[n] for n in names])


def _learning_rates(optimizer: Optimizer, n: int) -> Optional[list]:
    """Each group's lr for its next ``n`` updates when any group has a schedule, else None
    (read in the core as ``step`` reads them: ``Engine.learning_rates``)."""
    return optimizer._engine.learning_rates(optimizer.param_groups, n)


def _current_lr(optimizer: Any) -> float:
    """The first group's learning rate at the last update (a schedule's value there)."""
    group = optimizer.param_groups[0]
    lr = group["lr"]
    if callable(lr):  # the engine's optimizers, and the schedule-free ones (their k)
        step = optimizer._engine.group_steps()[0] if hasattr(optimizer, "_engine") else group["k"]
        return float(lr(max(step - 1, 0)))
    return float(lr)


def _ewa_cost(costs: np.ndarray, beta: float = 0.98) -> float:
    """The bias-corrected EWA of an epoch's batch costs at its last batch (progress bar)."""
    from ..averages import ewa

    if len(costs) == 0:
        return float("nan")
    return float(ewa(np.asarray(costs, dtype=np.float64), beta)[-1])


def _progress_bar(progress: bool, updates: int) -> Any:
    """A tqdm bar counting ``updates`` updates, or None; ``progress=True`` without tqdm
    warns (once per fit) instead of silently showing nothing."""
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        warnings.warn(
            "fit(progress=True) needs tqdm for its progress bar: pip install ferroptim[demo] "
            "(or pip install tqdm); training without one",
            UserWarning,
            stacklevel=4,
        )
        return None
    return tqdm(total=updates, unit="update")
