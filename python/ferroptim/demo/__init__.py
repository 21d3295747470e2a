"""Train networks on a million examples with ferroptim and report the lecture's comparisons.

``ferroptim demo`` generates two noisy spirals (1,000,000 training examples by default),
trains a 2-32-32-1 ``ferroptim.nn.MLP`` with ``model.fit`` (each epoch's shuffle, gather,
forward and backward pass and updates in one Rust call) and optimizers and schedules from
ferroptim, and compares:

1. batch gradient descent vs mini-batches of 4096, 512 and 64 vs stochastic (batch 1),
   all with Adam at lr 0.003, each run with the same training time (3 s by default,
   ``--seconds``): what a batch size buys is updates per second;
2. GD vs Momentum vs RMSprop vs Adam at batch 512, each with a constant learning rate and
   with the lecture's decay ``lr0 / (1 + decay_rate * epoch)`` counted in halves of the run
   instead of epochs: ``lr0 / (1 + 2 t / T)`` at update t of T, so the steps end 3 times
   smaller than they start. Each run makes the same number of updates (17 epochs, 33,218
   updates by default, ``--optimizer-epochs``: about 3 s on an idle 2-core machine), so
   the outcome is the same on a fast machine and a slow one.

It then draws the lecture's other points (exponentially weighted averages, learning-rate
schedules, and GD / Momentum / RMSprop / Adam on surfaces with a saddle point, a plateau
and Rosenbrock's valley), prints the results table and what decay did (computed from the
runs: where it lowered the final cost, and where it did not, why), and writes a report
folder: PNG figures, ``report.md``, ``results.json`` and ``curves.npz``.

Takes about a minute on an idle 2-core machine (13 runs of about 3 s, the surfaces and the
figures), and needs the ``demo`` extra: ``pip install 'ferroptim[demo]'``.

``--preset lecture`` runs the course's experiment instead: a [2, 5, 2, 1] network on 300
moons examples, batch 64, 5000 epochs, GD vs Momentum vs Adam at lr 0.0007, and with the
course's decay ``lr0 / (1 + floor(epoch / 1000))`` from lr0 = 0.1 (GD, Momentum) and 0.01
(Adam).

Learning rates of the default comparison (batch 512), tuned on the default data: the
constant rate is the best of 1 and 3 times powers of ten (3 s, one run each, seed 0). The
decay starts at the same rate and ends 3 times below it. Starting it larger instead (2 or 3
times the constant rate, as the lecture suggests) was measured at 17 epochs: it lowered
the final cost only where the larger steps stayed stable (GD 0.044 to 0.181 and 0.234 at 2
and 3 times, Adam 0.0105 to 0.0197 and 0.0093), while starting at the constant rate
lowered it for GD (0.044 to 0.031), Momentum (0.022 to 0.017) and Adam (0.0105 to 0.0089),
not RMSprop (0.0104 to 0.0195); over seeds 1 and 2 it lowered GD's and Momentum's both
times, RMSprop's once (and tied once), Adam's once of the two. The run's report says
which, and why.

============  ==============  ==========================================
optimizer     constant lr     decay ``lr0 / (1 + 2 t/T)``: lr0
============  ==============  ==========================================
GD            0.3             0.3
Momentum      1 (beta 0.9)    1
RMSprop       0.003           0.003
Adam          0.003           0.003
============  ==============  ==========================================
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import data as datasets
from .train import Budget, Decay

__all__ = ["PRESETS", "add_arguments", "run"]


@dataclass
class Preset:
    """An experiment: data, network, runs and default budget.

    Args:
        name: the ``--preset`` value.
        description: one line for the report.
        make_data: ``(m, seed) -> (X, Y)``, X (m, 2) and Y (m, 1) float32.
        data_description: what the data is, for the report.
        examples: default number of training examples.
        sizes: layer widths.
        budget: default budget per run.
        batch_sizes: the batch-size comparison's sizes (None = all m), or [] for none.
        batch_size_optimizer: its optimizer and learning rate.
        optimizer_batch_size: the optimizer comparison's batch size.
        optimizer_runs: ``(optimizer, lr, decay)`` for the optimizer comparison.
        optimizer_budget: the optimizer comparison's budget, if not ``budget``.
    """

    name: str
    description: str
    make_data: Callable
    data_description: str
    examples: int
    sizes: list
    budget: Budget
    batch_sizes: list = field(default_factory=list)
    batch_size_optimizer: tuple = ("Adam", 3e-3)
    optimizer_batch_size: int | None = 512
    optimizer_runs: list = field(default_factory=list)
    optimizer_budget: Budget | None = None


#: The default optimizer comparison's budget: 17 epochs of 1,000,000 examples in batches of
#: 512, 33,218 updates (about 3 s on an idle 2-core machine), the same on every machine.
OPTIMIZER_EPOCHS = 17.0

#: The default comparison's decay: ``lr0 / (1 + 2 t/T)``, the steps 3 times smaller at the end.
DECAY = Decay(rate=1.0, every=0.5, per="run")
COURSE_DECAY = Decay(rate=1.0, every=1000.0, staircase=True)

PRESETS = {
    "default": Preset(
        name="default",
        description="two spirals, 2-32-32-1 network: batch size and optimizer comparisons",
        make_data=datasets.spirals,
        data_description="two interleaved spirals (4 turns each, Gaussian noise 0.02), one class per arm",
        examples=1_000_000,
        sizes=[2, 32, 32, 1],
        budget=Budget(seconds=3.0),
        batch_sizes=[None, 4096, 512, 64, 1],
        batch_size_optimizer=("Adam", 3e-3),
        optimizer_batch_size=512,
        optimizer_runs=[
            ("GD", 0.3, None),
            ("Momentum", 1.0, None),
            ("RMSprop", 3e-3, None),
            ("Adam", 3e-3, None),
            ("GD", 0.3, DECAY),
            ("Momentum", 1.0, DECAY),
            ("RMSprop", 3e-3, DECAY),
            ("Adam", 3e-3, DECAY),
        ],
        optimizer_budget=Budget(epochs=OPTIMIZER_EPOCHS),
    ),
    "lecture": Preset(
        name="lecture",
        description="the course's experiment: [2, 5, 2, 1] network, 300 moons examples, batch 64",
        make_data=datasets.moons,
        data_description="make_moons-style half circles with Gaussian noise 0.2 (as the course's data)",
        examples=300,
        sizes=[2, 5, 2, 1],
        budget=Budget(epochs=5000),
        optimizer_batch_size=64,
        optimizer_runs=[
            ("GD", 7e-4, None),
            ("Momentum", 7e-4, None),
            ("Adam", 7e-4, None),
            ("GD", 0.1, COURSE_DECAY),
            ("Momentum", 0.1, COURSE_DECAY),
            ("Adam", 0.01, COURSE_DECAY),
        ],
    ),
}


class UsageError(Exception):
    """A bad command-line option: reported as one line, exit status 2."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``ferroptim demo``."""
    paragraphs = __doc__.split("\n\n")
    cost = next(t for t in paragraphs if t.startswith("Takes about a minute"))
    p.description = f"{paragraphs[0]} {' '.join(cost.split())}".replace("``", "")
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        default="default",
        help="default: spirals, batch-size and optimizer comparisons; lecture: the course's "
        "[2, 5, 2, 1] network on 300 moons examples",
    )
    p.add_argument(
        "--examples",
        type=int,
        metavar="M",
        help="training examples m (default 1,000,000; lecture: 300); a held-out set of "
        "max(m/10, 1000) more is generated",
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--seconds", type=float, metavar="S", help="training time per run, in seconds (default 3)"
    )
    budget.add_argument(
        "--epochs",
        type=float,
        metavar="E",
        help="train each run for E epochs instead (fractional allowed; deterministic "
        "given --seed; lecture default 5000)",
    )
    p.add_argument(
        "--optimizer-epochs",
        type=float,
        metavar="E",
        help="train each run of the optimizer comparison for E epochs (default: 17 for the "
        "default preset, so its outcome does not depend on the machine's speed; otherwise, or "
        "when --seconds or --epochs is given, the same budget as the other runs)",
    )
    p.add_argument(
        "--batch-sizes",
        metavar="LIST",
        help="the batch-size comparison, comma-separated; 'all' is batch GD (default all,4096,512,64,1)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        metavar="B",
        help="batch size of the optimizer comparison (default 512; lecture 64)",
    )
    p.add_argument(
        "--out", default="ferroptim-report", metavar="DIR", help="report folder (default ./ferroptim-report)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the data, initial weights and batch order")
    p.add_argument(
        "--loop",
        choices=["fit", "python"],
        default="fit",
        help="fit: train with model.fit, each epoch one Rust call (default); python: the same "
        "updates, one Python call per batch (model.loss_and_grad + opt.step): the same numbers, slower",
    )


def _configure(args: argparse.Namespace) -> tuple[Preset, int, Budget, Budget, list, int | None]:
    """The preset with the options applied; raises UsageError for a bad option."""
    preset = PRESETS[args.preset]
    m = preset.examples if args.examples is None else args.examples
    if m < 2:
        raise UsageError(f"--examples must be at least 2, got {m}")
    if args.seconds is not None:
        if not (math.isfinite(args.seconds) and args.seconds > 0):
            raise UsageError(f"--seconds must be a positive number, got {args.seconds:g}")
        budget = Budget(seconds=args.seconds)
    elif args.epochs is not None:
        if not (math.isfinite(args.epochs) and args.epochs > 0):
            raise UsageError(f"--epochs must be a positive number, got {args.epochs:g}")
        budget = Budget(epochs=args.epochs)
    else:
        budget = preset.budget
    explicit = args.seconds is not None or args.epochs is not None
    optimizer_budget = budget if explicit or preset.optimizer_budget is None else preset.optimizer_budget
    if args.optimizer_epochs is not None:
        if not (math.isfinite(args.optimizer_epochs) and args.optimizer_epochs > 0):
            raise UsageError(f"--optimizer-epochs must be a positive number, got {args.optimizer_epochs:g}")
        optimizer_budget = Budget(epochs=args.optimizer_epochs)
    if not 0 <= args.seed < 2**63:
        raise UsageError(f"--seed must be in [0, 2**63), got {args.seed}")
    batch_sizes = preset.batch_sizes
    if args.batch_sizes is not None:
        if not preset.batch_sizes:
            raise UsageError(f"--batch-sizes: --preset {preset.name} has no batch-size comparison")
        batch_sizes = [_batch_size(s) for s in args.batch_sizes.split(",")]
    optimizer_batch = preset.optimizer_batch_size if args.batch_size is None else args.batch_size
    if optimizer_batch is not None and optimizer_batch < 1:
        raise UsageError(f"--batch-size must be at least 1, got {optimizer_batch}")
    return preset, m, budget, optimizer_budget, batch_sizes, optimizer_batch


def _batch_size(text: str) -> int | None:
    text = text.strip()
    if text.lower() in ("all", "full", "m"):
        return None
    try:
        b = int(text)
    except ValueError:
        raise UsageError(
            f"--batch-sizes: {text!r} is not a batch size (a positive integer or 'all')"
        ) from None
    if b < 1:
        raise UsageError(f"--batch-sizes: batch sizes must be at least 1, got {b}")
    return b


def _prepare_out(path: str) -> Path:
    if not path.strip():
        raise UsageError("--out: the report folder must be a non-empty path (e.g. --out ferroptim-report)")
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".ferroptim-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"--out: cannot write the report to {path!r}: {e.strerror or e}") from None
    return out


def run(args: argparse.Namespace) -> int:
    """Runs ``ferroptim demo`` with parsed options; returns the exit status (0 on success,
    1 if the demo's optional dependencies are missing, 2 for a bad option)."""
    try:
        preset, m, budget, optimizer_budget, batch_sizes, optimizer_batch = _configure(args)
        try:
            import matplotlib  # noqa: F401
            import threadpoolctl  # noqa: F401
            import tqdm  # noqa: F401
        except ImportError as e:
            print(
                f"ferroptim demo needs matplotlib, tqdm and threadpoolctl ({e}); install them with:  "
                "pip install 'ferroptim[demo]'",
                file=sys.stderr,
            )
            return 1
        out = _prepare_out(args.out)
    except UsageError as e:
        print(f"ferroptim demo: error: {e}", file=sys.stderr)
        return 2
    from .experiment import Experiment

    try:
        Experiment(
            preset, m, budget, batch_sizes, optimizer_batch, args.seed, out, args.loop, optimizer_budget
        ).run()
    except KeyboardInterrupt:
        print("\nferroptim demo: interrupted", file=sys.stderr)
        return 130
    return 0
