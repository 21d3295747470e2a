"""Training runs of the demo: one network, one optimizer, one batch size, one budget.

The network is a ``ferroptim.nn.MLP`` started from :mod:`.net`'s NumPy initialisation and
trained by ``model.fit`` with a ferroptim optimizer: the shuffle, the gather, the forward
and backward pass and the update of every batch of an epoch run in one Rust call, so batch
GD, mini-batches and stochastic GD make as many updates as the machine allows in the
budget. Each run records the cost of every mini-batch, the training clock at every update,
and the held-out cost and accuracy at checkpoints (computed by :mod:`.net` in NumPy).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from .. import optim, schedules
from ..batches import MiniBatches
from ..nn import MLP
from . import net

OPTIMIZERS: dict[str, tuple[Callable[..., optim.Optimizer], dict[str, Any]]] = {
    # name -> (class, fixed hyper-parameters): the lecture's four, at the defaults it quotes.
    "GD": (optim.SGD, {}),
    "Momentum": (optim.Momentum, {"beta": 0.9}),
    "RMSprop": (optim.RMSprop, {"alpha": 0.99, "eps": 1e-8}),
    "Adam": (optim.Adam, {"betas": (0.9, 0.999), "eps": 1e-8}),
}


@dataclass(frozen=True)
class Decay:
    """The lecture's learning-rate decay ``lr = lr0 / (1 + rate * floor?(epoch / every))``.

    With ``per="run"`` the clock is the run itself instead of epochs: ``every`` is a
    fraction of the run's updates, so ``lr = lr0 / (1 + rate * t / (every * T))`` for update
    ``t`` of ``T`` (``T`` exact for an epochs budget, estimated from a timed calibration
    for a seconds budget). The steps then shrink over the run by the same factor,
    ``1 + rate / every``, whether the machine makes 0.5 or 50 epochs in the budget.

    Args:
        rate: ``decay_rate`` per interval (> 0).
        every: the interval: epochs (``per="epoch"``) or a fraction of the run (``per="run"``), > 0.
        staircase: drop the rate once per interval (the course's ``schedule_lr_decay``)
            instead of continuously.
        per: ``"epoch"`` or ``"run"``, what ``every`` counts.
    """

    rate: float = 1.0
    every: float = 1.0
    staircase: bool = False
    per: str = "epoch"

    def schedule(
        self, lr0: float, updates_per_epoch: int, run_updates: int | None = None
    ) -> schedules.InverseTimeDecay:
        """The schedule ``update k -> lr`` for ``updates_per_epoch`` updates per epoch, or
        (``per="run"``) ``run_updates`` updates in the run."""
        if self.per == "run":
            if run_updates is None:
                raise ValueError("a decay per run needs run_updates, the updates the run will make")
            interval = max(self.every * run_updates, 1.0)
        else:
            interval = self.every * updates_per_epoch
        return schedules.InverseTimeDecay(lr0, self.rate, interval, self.staircase)

    def describe(self) -> str:
        """The formula, e.g. ``lr0 / (1 + 0.3·epoch)`` or ``lr0 / (1 + 1·10t/T)``."""
        if self.per == "run":
            clock = f"{1 / self.every:g}t/T"
        else:
            clock = "epoch" if self.every == 1 else f"epoch/{self.every:g}"
        if self.staircase:
            clock = f"floor({clock})"
        return f"lr0 / (1 + {self.rate:g}·{clock})"

    @property
    def shrink(self) -> float | None:
        """For ``per="run"``: the learning rate's first over its last value, ``1 + rate/every``."""
        return 1 + self.rate / self.every if self.per == "run" else None


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
        if self.seconds is not None:
            return elapsed / self.seconds
        assert self.epochs is not None  # exactly one is set
        return epochs_done / self.epochs

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


LOOPS = ("fit", "python")

#: A seconds budget hands control back to Python about this often (``steps_per_execution``
#: of fit, sized from the calibration): the budget is overshot by at most that much.
CHUNK_SECONDS = 0.002

#: Epochs asked of ``fit`` when ``max_steps`` or a budget callback ends it.
MANY_EPOCHS = 1 << 40


def train(
    spec: RunSpec,
    data: Data,
    sizes: list[int],
    budget: Budget,
    seed: int,
    checkpoints: int = 40,
    checkpoint_examples: int = 10_000,
    progress: Any = None,
    loop: str = "fit",
) -> dict:
    """Trains a fresh network (initialised from ``seed``) under ``budget`` and measures it.

    The network is a ``ferroptim.nn.MLP`` (ReLU hidden layers, sigmoid + cross-entropy)
    starting from :func:`.net.init_params`' weights. ``loop="fit"`` trains it with
    ``model.fit`` alone: an epochs budget as ``fit(..., max_steps=u)`` up to each
    checkpoint (fractions of an epoch included); a seconds budget as one ``fit`` up to
    each checkpoint, which returns to Python every ``steps_per_execution`` updates (about
    :data:`CHUNK_SECONDS` of training, from a calibration ``fit`` on a copy, off the clock)
    for a batch callback that stops it once the time is spent. ``loop="python"`` makes
    every update through the Python loop ``opt.step(model.loss_and_grad(Xb, Yb)[1])`` over
    ``MiniBatches``: the same batches and the same numbers, bit for bit, one Python call
    per batch.

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
        loop: ``"fit"`` or ``"python"`` (above).

    Returns:
        A dict of plain numbers and lists: the spec, ``loop``, ``updates``, ``epochs``
        (fractional), ``updates_by_fit``, ``train_seconds``, ``seconds_per_epoch``,
        ``initial_cost``, ``final_cost`` and ``train_accuracy`` (over the whole training
        set), ``heldout_cost`` and ``heldout_accuracy``, ``batch_costs`` (the cost of each
        mini-batch, as the update saw it), ``update_seconds`` (training clock when each
        update started; spread evenly over each epoch inside a fit call) and
        ``checkpoints`` (``seconds``, ``epochs``, ``updates``, ``heldout_cost``,
        ``heldout_accuracy``, the first before training), and ``params``, the trained arrays.
    """
    if loop not in LOOPS:
        raise ValueError(f"loop must be one of {LOOPS}, got {loop!r}")
    run = _Run(spec, data, sizes, budget, seed, checkpoints, checkpoint_examples, progress, loop)
    run.train()
    return run.result()


class _Run:
    """One training run: the model, its optimizer and batches, and what is recorded."""

    def __init__(self, spec, data, sizes, budget, seed, checkpoints, checkpoint_examples, progress, loop):
        self.spec, self.data, self.sizes, self.budget, self.seed = spec, data, sizes, budget, seed
        self.checkpoints, self.progress, self.loop = checkpoints, progress, loop
        self.m = len(data.X)
        self.b = spec.batch_size or self.m
        self.model = MLP(sizes, hidden="relu", output="sigmoid", dtype=np.float32, seed=seed)
        self.params = self.model.params
        for name, value in net.init_params(sizes, seed).items():
            self.params[name][...] = value
        self.batches = MiniBatches(data.X, data.Y, batch_size=spec.batch_size, seed=seed)
        self.n = len(self.batches)  # updates per epoch
        self.cls, self.fixed = OPTIMIZERS[spec.optimizer]
        self.run_updates = None  # T of a decay per run (an int once known)
        self.lr = spec.lr
        self.opt = self.cls(self.params, lr=self.lr, **self.fixed)
        self.X_check = data.X_test[:checkpoint_examples]
        self.Y_check = data.Y_test[:checkpoint_examples]
        self.costs, self.clock = [], []
        self.by_fit, self.shown, self.off_clock = 0, 0, 0.0
        self.next_mark = 1 / checkpoints
        self.chunk = 1
        self.checked = False
        self._py_iter, self._py_at = None, None

    # -- the budget ---------------------------------------------------------------------

    def batches_done(self) -> int:
        return self.model.epoch * self.n + self.model.position

    def seen(self, g: int | None = None) -> int:
        """Examples seen after ``g`` batches (default: those done); only an epoch's last
        batch is short."""
        g = self.batches_done() if g is None else g
        return (g // self.n) * self.m + (g % self.n) * self.b

    def elapsed(self) -> float:
        return time.perf_counter() - self.start - self.off_clock

    def spent(self) -> float:
        return self.budget.fraction(self.elapsed(), self.seen() / self.m)

    def updates_to(self, fraction: float) -> int:
        """Epochs budget: the updates from now until ``fraction`` of it is spent (to the
        first update at which the epochs seen reach ``fraction * epochs``; at least one)."""
        g0 = self.batches_done()
        lo, hi = g0 + 1, g0 + (math.ceil(fraction * self.budget.epochs) + 1) * self.n
        while lo < hi:  # the smallest g in [lo, hi] whose fraction reaches it
            mid = (lo + hi) // 2
            if self.budget.fraction(0.0, self.seen(mid) / self.m) >= fraction:
                hi = mid
            else:
                lo = mid + 1
        return lo - g0

    # -- training -----------------------------------------------------------------------

    def train(self) -> None:
        self.initial_cost, _ = net.evaluate(self.params, self.data.X, self.data.Y)
        c, a = net.evaluate(self.params, self.X_check, self.Y_check)
        self.marks = [{"seconds": 0.0, "epochs": 0.0, "updates": 0, "heldout_cost": c, "heldout_accuracy": a}]
        per_run = self.spec.decay is not None and self.spec.decay.per == "run"
        if self.budget.seconds is not None and (self.loop == "fit" or per_run):
            per_update = self._calibrate()
            self.chunk = max(1, int(CHUNK_SECONDS / per_update))
            if per_run:
                self.run_updates = max(1, round(self.budget.seconds / per_update))
        elif per_run:
            self.run_updates = self.updates_to(1.0)
        if self.spec.decay is not None:
            self.lr = self.spec.decay.schedule(self.spec.lr, self.n, self.run_updates)
            self.opt = self.cls(self.params, lr=self.lr, **self.fixed)
        self.start = time.perf_counter()
        while True:
            if self.budget.epochs is not None:
                self._advance(self.updates_to(min(self.next_mark, 1.0)))
            else:
                self._advance_for_time()
            spent = self.spent()
            self.train_seconds = self.elapsed()
            self._checkpoint(spent)
            if spent >= 1:
                break

    def _advance(self, u: int) -> None:
        """Makes exactly ``u`` updates."""
        if self.loop == "fit":
            self._fit(max_steps=u)
            return
        while u > 0:
            u -= self._python(min(u, self.n - self.model.position), until_budget=False)

    def _advance_for_time(self) -> None:
        """A seconds budget: updates until the next checkpoint (or the end of the budget)."""
        if self.loop == "fit":
            self._fit(until=min(self.next_mark, 1.0))
        else:
            self._python(self.n - self.model.position, until_budget=True)

    def _fit(self, max_steps: int | None = None, until: float | None = None) -> int:
        """One ``model.fit`` call: ``max_steps`` updates, or updates until ``until`` of the
        budget is spent (checked every ``self.chunk`` updates)."""
        begin = self.elapsed()
        marks = [(0, 0.0)]  # (updates, training seconds) after each Rust call

        def after_call(logs: dict) -> bool:
            marks.append((logs["updates"], logs["seconds"]))
            return until is not None and self.spent() >= until

        history = self.model.fit(
            self.data.X,
            self.data.Y,
            self.opt,
            batch_size=self.spec.batch_size,
            epochs=MANY_EPOCHS,
            seed=self.seed,
            check_input=not self.checked,
            max_steps=max_steps,
            steps_per_execution=self.chunk if until is not None else None,
            batch_callbacks=[after_call],
        )
        self.checked = True
        for (u0, s0), (u1, s1) in zip(marks, marks[1:]):
            k = u1 - u0
            self.clock.extend((begin + s0 + (s1 - s0) * np.arange(k) / max(k, 1)).tolist())
        self.costs.extend(history.costs.tolist())
        done = len(history.costs)
        self.by_fit += done
        return done

    def _python(self, most: int, until_budget: bool) -> int:
        """Up to ``most`` updates of the current epoch in Python, stopping early (with
        ``until_budget``) when the seconds budget is spent or a checkpoint is due. The
        batches' iterator is kept between calls (a new one shuffles the epoch again)
        while ``fit`` has not moved the model on."""
        model = self.model
        if self._py_iter is None or self._py_at != (model.epoch, model.position):
            self.batches.load_state_dict(
                {"seed": self.seed, "epoch": model.epoch, "position": model.position}
            )
            self._py_iter = iter(self.batches)
        done = 0
        for Xb, Yb in self._py_iter:
            self.clock.append(self.elapsed())  # when the parameters had this cost
            cost, grads = model.loss_and_grad(Xb, Yb)
            self.opt.step(grads)
            self.costs.append(cost)
            done += 1
            model.position += 1
            if model.position == self.n:
                model.epoch, model.position = model.epoch + 1, 0
                self._py_iter = None
                break
            if done == most or (until_budget and self.spent() >= min(self.next_mark, 1.0)):
                break
        self._py_at = (model.epoch, model.position)
        return done

    def _calibrate(self) -> float:
        """Seconds per update of the loop (``fit``, or the Python loop) on this network and
        batch size, from training a copy on the first rows (at least 32 batches, 4096
        updates for small batches)."""
        probe = MLP(self.sizes, hidden="relu", output="sigmoid", dtype=np.float32, seed=self.seed)
        for name, value in self.params.items():
            probe.params[name][...] = value
        opt = self.cls(probe.params, lr=self.spec.lr, **self.fixed)
        b = self.spec.batch_size or self.m
        rows = min(self.m, max(32 * b, 4096))
        X, Y = self.data.X[:rows], self.data.Y[:rows]
        t = time.perf_counter()
        if self.loop == "python":  # the loop that will train: one Python call per batch
            done = 0
            for Xb, Yb in MiniBatches(X, Y, batch_size=b, seed=self.seed):
                opt.step(probe.loss_and_grad(Xb, Yb)[1])
                done += 1
            return (time.perf_counter() - t) / max(done, 1)
        history = probe.fit(X, Y, opt, batch_size=b, epochs=1, seed=self.seed)
        return (time.perf_counter() - t) / max(len(history.costs), 1)

    def _checkpoint(self, spent: float) -> None:
        if spent < self.next_mark and spent < 1:
            return
        t = time.perf_counter()
        c, a = net.evaluate(self.params, self.X_check, self.Y_check)
        self.marks.append(
            {
                "seconds": self.train_seconds,
                "epochs": self.seen() / self.m,
                "updates": len(self.costs),
                "heldout_cost": c,
                "heldout_accuracy": a,
            }
        )
        self.next_mark = (math.floor(spent * self.checkpoints) + 1) / self.checkpoints
        if self.progress is not None:
            pct = min(100, int(spent * 100))
            self.progress.update(pct - self.shown)
            self.progress.set_postfix_str(f"held-out accuracy {a:.1%}")
            self.shown = pct
        self.off_clock += time.perf_counter() - t

    def result(self) -> dict:
        spec, data, cls = self.spec, self.data, self.cls
        final_cost, train_acc = net.evaluate(self.params, data.X, data.Y)
        heldout_cost, heldout_acc = net.evaluate(self.params, data.X_test, data.Y_test)
        epochs = self.seen() / self.m
        b = "None" if spec.batch_size is None else spec.batch_size
        return {
            "name": spec.name,
            "optimizer": spec.optimizer,
            "lr": spec.lr,
            "batch_size": spec.batch_size,
            "batch_label": spec.batch_label,
            "m": self.m,
            "decay": None
            if spec.decay is None
            else {**asdict(spec.decay), "formula": spec.decay.describe(), "run_updates": self.run_updates},
            "hyperparameters": {k: v for k, v in self.opt.defaults.items() if k != "lr"},
            "code": f"opt = fo.{cls.__name__}(model.params, lr={self.lr!r}"
            + "".join(f", {k}={v!r}" for k, v in self.fixed.items())
            + f"); model.fit(X, Y, opt, batch_size={b}, epochs=...)",
            "loop": self.loop,
            "updates_per_epoch": self.n,
            "updates": len(self.costs),
            "updates_by_fit": self.by_fit,
            "epochs": epochs,
            "train_seconds": self.train_seconds,
            "seconds_per_epoch": self.train_seconds / epochs,
            "initial_cost": self.initial_cost,
            "final_cost": final_cost,
            "train_accuracy": train_acc,
            "heldout_cost": heldout_cost,
            "heldout_accuracy": heldout_acc,
            "batch_costs": self.costs,
            "update_seconds": self.clock,
            "checkpoints": self.marks,
            "params": {k: v.copy() for k, v in self.params.items()},
        }
