"""Keras-style epoch callbacks for :meth:`ferroptim.nn.MLP.fit`: :class:`EarlyStopping` and
:class:`ModelCheckpoint`, and ``validation_split``.

Both are called as ``cb(epoch, logs)`` after every epoch (``epoch`` counted over the model's
life from 0, ``logs`` fit's dict) and return True to stop training. Keras' names of the
logged values are accepted next to ferroptim's: ``"loss"`` is ``logs["cost"]`` (the epoch's
mean batch cost) and ``"val_loss"`` is ``logs["val_cost"]`` (the data cost on the validation
data); ``"val_accuracy"`` is the same in both. At the start of each ``fit`` the callback is
given the model and resets its state, as Keras' ``on_train_begin`` does.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

if TYPE_CHECKING:
    from .model import MLP

_NUMBER = (int, float, np.integer, np.floating)
_ALIASES = {"loss": "cost", "val_loss": "val_cost", "val_acc": "val_accuracy"}


def _monitored(monitor: str, logs: dict) -> Optional[float]:
    key = _ALIASES.get(monitor, monitor)
    value = logs.get(key)
    return None if value is None else float(value)


def _mode(name: str, monitor: Any, mode: Any) -> str:
    if not isinstance(monitor, str):
        raise TypeError(f"{name}: monitor must be a str (e.g. 'val_loss'), got {type(monitor).__name__}")
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{name}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":  # Keras: accuracies and AUCs are maximised, everything else minimised
        return "max" if monitor.endswith(("acc", "accuracy", "auc")) else "min"
    return str(mode)


def _better(mode: str, current: float, reference: float, min_delta: float = 0.0) -> bool:
    if mode == "max":
        return current - min_delta > reference
    return current + min_delta < reference


class _Callback:
    model: Optional[MLP] = None

    def _begin(self, model: MLP) -> None:
        """Called by ``fit`` before its first epoch: the model, and a fresh state."""
        self.model = model
        self._warned = False

    def _missing(self, monitor: str, logs: dict) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"{type(self).__name__} monitors {monitor!r}, which fit does not log here "
                f"(logged: {sorted(logs)}; 'val_loss' needs validation_data or validation_split)",
                UserWarning,
                stacklevel=4,
            )


class EarlyStopping(_Callback):
    """Stops training when a monitored value has stopped improving (Keras' ``EarlyStopping``).

    After each epoch ``e >= start_from_epoch``, the value improves when it is better than the
    best so far by more than ``min_delta`` (``current < best - min_delta`` in mode "min",
    ``current > best + min_delta`` in mode "max"); training stops after ``patience`` epochs
    in a row without improvement (``patience=0``: at the first). Without ``val_loss`` in the
    logs it warns and never stops.

    Args:
        monitor: ``"val_loss"`` (``logs["val_cost"]``), ``"loss"`` (``logs["cost"]``),
            ``"val_accuracy"``, or any key of fit's logs.
        min_delta: the smallest change that counts as an improvement (its absolute value is
            used), in the monitored value's units.
        patience: epochs without improvement before stopping (>= 0).
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for names ending in "acc",
            "accuracy" or "auc", else min).
        restore_best_weights: when training stops here, copy the parameters of the best
            epoch back into ``model.params`` (in place: optimizers stay linked). The epoch
            counters and optimizer state are not rolled back.
        start_from_epoch: epochs (of the model's life) to wait before monitoring (>= 0).
        baseline: a value the monitored one must beat for the patience count to reset
            (None: any improvement resets it).

    Attributes:
        best: the best value seen in this fit; best_epoch: its epoch; stopped_epoch: the
        epoch training stopped after (0 if it did not); wait: epochs since the last reset.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        mode: str = "auto",
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
        baseline: Optional[float] = None,
    ) -> None:
        from ._args import _int

        self.mode = _mode("EarlyStopping", monitor, mode)
        if isinstance(min_delta, bool) or not isinstance(min_delta, _NUMBER) or math.isnan(min_delta):
            raise TypeError(f"EarlyStopping: min_delta must be a number, got {min_delta!r}")
        if baseline is not None and (isinstance(baseline, bool) or not isinstance(baseline, _NUMBER)):
            raise TypeError(f"EarlyStopping: baseline must be a number or None, got {baseline!r}")
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = _int("EarlyStopping: patience", patience, 0)
        self.start_from_epoch = _int("EarlyStopping: start_from_epoch", start_from_epoch, 0)
        self.restore_best_weights = bool(restore_best_weights)
        self.baseline = None if baseline is None else float(baseline)
        self._reset()

    def _reset(self) -> None:
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_weights: Optional[dict[str, np.ndarray]] = None

    def _begin(self, model: MLP) -> None:
        super()._begin(model)
        self._reset()

    def __call__(self, epoch: int, logs: dict) -> bool:
        current = _monitored(self.monitor, logs)
        if current is None:
            self._missing(self.monitor, logs)
            return False
        if epoch < self.start_from_epoch:
            return False
        model = self.model
        if self.restore_best_weights and self.best_weights is None and model is not None:
            self.best_weights = {k: v.copy() for k, v in model.params.items()}
        self.wait += 1
        if _better(self.mode, current, self.best, self.min_delta):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights and model is not None:
                self.best_weights = {k: v.copy() for k, v in model.params.items()}
            if self.baseline is None or _better(self.mode, current, self.baseline, self.min_delta):
                self.wait = 0
            return False
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            if self.restore_best_weights and self.best_weights is not None and model is not None:
                for k, v in self.best_weights.items():
                    model.params[k][...] = v
            return True
        return False


class ModelCheckpoint(_Callback):
    """Saves the model after epochs (Keras' ``ModelCheckpoint``), atomically, with
    :meth:`MLP.save` (the ``.npz`` format of :func:`ferroptim.nn.load`).

    Args:
        filepath: where to save; may hold ``str.format`` fields filled from the epoch and
            the logs, as Keras does: ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"`` (``epoch`` is
            the number of epochs completed, i.e. the logged epoch + 1; ``loss`` /
            ``val_loss`` are the Keras names of ``cost`` / ``val_cost``).
        monitor: the logged value ``save_best_only`` compares (Keras' names accepted).
        save_best_only: save only when the monitored value is better than at every earlier
            save of this fit (without it in the logs: warns and saves nothing).
        mode: ``"min"``, ``"max"`` or ``"auto"``, as in :class:`EarlyStopping`.
        optimizer: an optimizer whose state to save with the model (see
            :func:`ferroptim.nn.load_optimizer_state`), or None.

    Attributes:
        best: the best monitored value saved in this fit; last_path: the last file written.
    """

    def __init__(
        self,
        filepath: Any,
        monitor: str = "val_loss",
        save_best_only: bool = False,
        mode: str = "auto",
        optimizer: Any = None,
    ) -> None:
        try:
            self.filepath = os.fspath(filepath)
        except TypeError:
            raise TypeError(
                f"ModelCheckpoint: filepath must be a path, got {type(filepath).__name__}"
            ) from None
        self.mode = _mode("ModelCheckpoint", monitor, mode)
        self.monitor, self.save_best_only, self.optimizer = monitor, bool(save_best_only), optimizer
        if optimizer is not None:
            from .persist import _optimizer_state

            _optimizer_state(optimizer)  # a ferroptim optimizer
        self.best = math.inf if self.mode == "min" else -math.inf
        self.last_path: Optional[str] = None

    def _begin(self, model: MLP) -> None:
        super()._begin(model)
        self.best = math.inf if self.mode == "min" else -math.inf

    def __call__(self, epoch: int, logs: dict) -> bool:
        if self.model is None:
            raise RuntimeError(
                "ModelCheckpoint: pass it to MLP.fit(callbacks=[...]), which gives it the model"
            )
        if self.save_best_only:
            current = _monitored(self.monitor, logs)
            if current is None:
                self._missing(self.monitor, logs)
                return False
            if not _better(self.mode, current, self.best):
                return False
            self.best = current
        fields = {**logs, **{k: logs[v] for k, v in _ALIASES.items() if v in logs}, "epoch": epoch + 1}
        path = self.filepath.format(**fields)
        self.model.save(path, optimizer=self.optimizer)
        self.last_path = path
        return False


def _begin(callbacks: Any, model: MLP) -> None:
    """Gives each built-in callback the model and a fresh state (fit's start)."""
    for cb in callbacks:
        if isinstance(cb, _Callback):
            cb._begin(model)


def _validation_split(model: MLP, X: Any, Y: Any, split: Any, validation_data: Any, axis: int) -> tuple:
    """``(X_train, Y_train, (X_val, Y_val))``: Keras' ``validation_split``, the last
    ``m - floor(m * (1 - split))`` examples (in the given order, before any shuffle) held
    out. Checked before anything is modified."""
    from ..data import _fit as _data
    from .inputs import _model_dtype

    if isinstance(split, bool) or not isinstance(split, _NUMBER) or not 0 <= split < 1:
        raise ValueError(f"validation_split must be a number in [0, 1), got {split!r}")
    if validation_data is not None:
        raise ValueError("pass validation_data or validation_split, not both")
    if _data.is_source(X):
        raise TypeError("validation_split needs arrays; for a ferroptim.data source pass validation_data")
    X = _model_dtype(X, model.dtype, "X")
    Y = np.asarray(Y)
    transposed = axis in (1, -1)
    if X.ndim != 2:
        raise ValueError(f"X has shape {X.shape}, expected 2 dimensions")
    m = X.shape[1] if transposed else X.shape[0]
    cut = int(math.floor(m * (1.0 - float(split))))
    if cut == 0 or cut == m:
        raise ValueError(
            f"validation_split={split} of {m} examples leaves {'no training' if cut == 0 else 'no validation'} examples"
        )
    if transposed:
        Yt, Yv = (Y[:, :cut], Y[:, cut:]) if Y.ndim == 2 else (Y[:cut], Y[cut:])
        Xv = X[:, cut:].T
        return X[:, :cut], Yt, (Xv, Yv.T if Yv.ndim == 2 else Yv)
    return X[:cut], Y[:cut], (X[cut:], Y[cut:])
