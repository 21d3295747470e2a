"""Training runs of the demo: one network, one optimizer, one batch size, one budget.

The loop is the one the package is for: ``ferroptim.MiniBatches`` shuffles and gathers the
batches, the NumPy network (:mod:`.net`) computes the gradients, a ferroptim optimizer
updates the arrays in place. Each run records the cost of every mini-batch, the training
clock at every update, and the held-out cost and accuracy at checkpoints.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .. import optim, schedules
from ..batches import MiniBatches
from . import net

OPTIMIZERS = {
    # name -> (class, fixed hyper-parameters): the lecture's four, at the defaults it quotes.
    "GD": (optim.SGD, {}),
    "Momentum": (optim.Momentum, {"beta": 0.9}),
    "RMSprop": (optim.RMSprop, {"alpha": 0.99, "eps": 1e-8}),
    "Adam": (optim.Adam, {"betas": (0.9, 0.999), "eps": 1e-8}),
}


@dataclass(frozen=True)
class Decay:
    """The lecture's learning-rate decay ``lr = lr0 / (1 + rate * floor?(epoch / every))``.

    Args:
        rate: ``decay_rate`` per ``every`` epochs (> 0).
        every: epochs per decay interval (> 0).
        staircase: drop the rate once per interval (the course's ``schedule_lr_decay``)
            instead of continuously.
    """

    rate: float = 1.0
    every: float = 1.0
    staircase: bool = False

    def schedule(self, lr0: float, updates_per_epoch: int) -> schedules.InverseTimeDecay:
        """The schedule ``update k -> lr`` for ``updates_per_epoch`` updates per epoch."""
        return schedules.InverseTimeDecay(lr0, self.rate, self.every * updates_per_epoch, self.staircase)

    def describe(self) -> str:
        """The formula, e.g. ``lr0 / (1 + 0.3·epoch)``."""
        epoch = "epoch" if self.every == 1 else f"epoch/{self.every:g}"
        if self.staircase:
            epoch = f"floor({epoch})"
        return f"lr0 / (1 + {self.rate:g}·{epoch})"


@dataclass(frozen=True)
class RunSpec:
    """One training run.

    Args:
        optimizer: a key of ``OPTIMIZERS`` ("GD", "Momentum", "RMSprop", "Adam").
        lr: the learning rate (the initial one with a decay), in the optimizer's units.
        batch_size: examples per mini-batch, or None for batch gradient descent (all m).
        decay: the learning-rate decay, or None for a constant rate.
    """

    optimizer: str
    lr: float
    batch_size: int | None
    decay: Decay | None = None

    @property
    def batch_label(self) -> str:
        """``"batch (all m)"``, ``"1 (stochastic)"`` or the size."""
        if self.batch_size is None:
            return "all m (batch GD)"
        return "1 (stochastic)" if self.batch_size == 1 else f"{self.batch_size:,}"

    @property
    def name(self) -> str:
        """A short unique label, e.g. ``Adam, batch 512, lr decay``."""
        batch = "batch GD" if self.batch_size is None else f"batch {self.batch_size}"
        return f"{self.optimizer}, {batch}" + (", lr decay" if self.decay else "")


@dataclass(frozen=True)
class Budget:
    """How long each run trains: ``seconds`` of training time, or ``epochs`` passes over
    the training set (fractional allowed; at least one update). Exactly one is set."""

    seconds: float | None = None
    epochs: float | None = None

    def fraction(self, elapsed: float, epochs_done: float) -> float:
        """How much of the budget is spent, from 0 to >= 1."""
        return elapsed / self.seconds if self.seconds is not None else epochs_done / self.epochs

    def describe(self) -> str:
        """E.g. ``3 s of training per run``."""
        if self.seconds is not None:
            return f"{self.seconds:g} s of training per run"
        return f"{self.epochs:g} epoch{'s' if self.epochs != 1 else ''} per run"


@dataclass
class Data:
    """A training set and a held-out set (X: (m, n_x) float32, Y: (m, 1) float32)."""

    X: np.ndarray
    Y: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray


def train(
    spec: RunSpec,
    data: Data,
    sizes: list[int],
    budget: Budget,
    seed: int,
    checkpoints: int = 40,
    checkpoint_examples: int = 10_000,
    progress: Any = None,
) -> dict:
    """Trains a fresh network (initialised from ``seed``) under ``budget`` and measures it.

    Args:
        spec: optimizer, learning rate, batch size and decay.
        data: the training and held-out sets.
        sizes: layer widths of the network.
        budget: training time or epochs.
        seed: seeds the initial weights (the same for every run) and the batch order.
        checkpoints: how many times during the run to measure the held-out cost and
            accuracy (on up to ``checkpoint_examples`` held-out examples); this time is not
            counted as training time.
        progress: a tqdm-like bar (``update(n)``, ``set_postfix_str(s)``) counting to 100,
            or None.

    Returns:
        A dict of plain numbers and lists: the spec, ``updates``, ``epochs`` (fractional),
        ``train_seconds``, ``seconds_per_epoch``, ``initial_cost``, ``final_cost`` and
        ``train_accuracy`` (over the whole training set), ``heldout_cost`` and
        ``heldout_accuracy``, ``batch_costs`` (the cost of each mini-batch, as the update
        saw it), ``update_seconds`` (training clock when each update started) and
        ``checkpoints`` (``seconds``, ``epochs``, ``updates``, ``heldout_cost``,
        ``heldout_accuracy``, the first before training), and ``params``, the trained arrays.
    """
    params = net.init_params(sizes, seed)
    m = len(data.X)
    batches = MiniBatches(data.X, data.Y, batch_size=spec.batch_size, seed=seed)
    cls, fixed = OPTIMIZERS[spec.optimizer]
    lr = spec.decay.schedule(spec.lr, len(batches)) if spec.decay else spec.lr
    opt = cls(params, lr=lr, **fixed)
    X_check, Y_check = data.X_test[:checkpoint_examples], data.Y_test[:checkpoint_examples]
    initial_cost, _ = net.evaluate(params, data.X, data.Y)

    c, a = net.evaluate(params, X_check, Y_check)
    marks = [{"seconds": 0.0, "epochs": 0.0, "updates": 0, "heldout_cost": c, "heldout_accuracy": a}]
    costs, clock = [], []
    seen, shown, next_mark, off_clock = 0, 0, 1 / checkpoints, 0.0
    start = time.perf_counter()
    done = False
    while not done:
        for Xb, Yb in batches:
            clock.append(time.perf_counter() - start - off_clock)  # when the parameters had this cost
            cost, grads = net.forward_backward(params, Xb, Yb)
            opt.step(grads)
            costs.append(cost)
            seen += len(Xb)
            elapsed = time.perf_counter() - start - off_clock
            spent = budget.fraction(elapsed, seen / m)
            if spent >= next_mark:
                t = time.perf_counter()
                c, a = net.evaluate(params, X_check, Y_check)
                marks.append(
                    {
                        "seconds": elapsed,
                        "epochs": seen / m,
                        "updates": len(costs),
                        "heldout_cost": c,
                        "heldout_accuracy": a,
                    }
                )
                next_mark = (math.floor(spent * checkpoints) + 1) / checkpoints
                if progress is not None:
                    pct = min(100, int(spent * 100))
                    progress.update(pct - shown)
                    progress.set_postfix_str(f"held-out accuracy {a:.1%}")
                    shown = pct
                off_clock += time.perf_counter() - t
            if spent >= 1:
                done = True
                break
    train_seconds = elapsed
    final_cost, train_acc = net.evaluate(params, data.X, data.Y)
    heldout_cost, heldout_acc = net.evaluate(params, data.X_test, data.Y_test)
    epochs = seen / m
    return {
        "name": spec.name,
        "optimizer": spec.optimizer,
        "lr": spec.lr,
        "batch_size": spec.batch_size,
        "batch_label": spec.batch_label,
        "m": m,
        "decay": None if spec.decay is None else {**asdict(spec.decay), "formula": spec.decay.describe()},
        "hyperparameters": {k: v for k, v in opt.defaults.items() if k != "lr"},
        "code": f"fo.{cls.__name__}(params, lr={lr!r}"
        + "".join(f", {k}={v!r}" for k, v in fixed.items())
        + ")",
        "updates_per_epoch": len(batches),
        "updates": len(costs),
        "epochs": epochs,
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / epochs,
        "initial_cost": initial_cost,
        "final_cost": final_cost,
        "train_accuracy": train_acc,
        "heldout_cost": heldout_cost,
        "heldout_accuracy": heldout_acc,
        "batch_costs": costs,
        "update_seconds": clock,
        "checkpoints": marks,
        "params": params,
    }
