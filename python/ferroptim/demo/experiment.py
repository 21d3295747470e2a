"""One ``ferroptim demo`` run: generate the data, train every run, race the optimizers on
the test surfaces, draw the figures, print the tables and write the report folder."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from . import data as datasets
from . import plots, report, surfaces
from .train import OPTIMIZERS, Budget, Data, RunSpec, train

FOUR = list(OPTIMIZERS)


class Experiment:
    """The runs of a preset, and everything written about them.

    Args:
        preset: a :class:`ferroptim.demo.Preset`.
        m: training examples; the held-out set has ``max(m // 10, 1000)``.
        budget: training time or epochs per run (of the batch-size comparison, and of the
            optimizer comparison unless ``optimizer_budget`` is given).
        batch_sizes: the batch-size comparison (None = all m); empty for none.
        optimizer_batch: the optimizer comparison's batch size (None = all m).
        seed: seeds the data, the initial weights and the batch order.
        out: the report folder (exists and is writable).
        loop: ``"fit"`` (every update by ``model.fit``) or ``"python"`` (the same updates, one
            Python call per batch); see :func:`.train.train`.
        optimizer_budget: the optimizer comparison's budget, if not ``budget``.
    """

    def __init__(
        self,
        preset,
        m: int,
        budget: Budget,
        batch_sizes: list,
        optimizer_batch: int | None,
        seed: int,
        out: Path,
        loop: str = "fit",
        optimizer_budget: Budget | None = None,
    ):
        self.preset, self.m, self.budget, self.seed, self.out = preset, m, budget, seed, out
        self.optimizer_budget = optimizer_budget or budget
        self.loop = loop
        opt, lr = preset.batch_size_optimizer
        self.batch_specs = [RunSpec(opt, lr, b) for b in batch_sizes]
        self.optimizer_specs = [
            RunSpec(o, lr, optimizer_batch, decay) for o, lr, decay in preset.optimizer_runs
        ]

    def run(self) -> None:
        """Everything, printing progress and the tables; writes the report folder."""
        started = time.perf_counter()
        p = self.preset
        m_test = max(self.m // 10, 1000)
        X, Y = p.make_data(self.m, self.seed)
        X_test, Y_test = p.make_data(m_test, self.seed + 1)
        data = Data(X, Y, X_test, Y_test)
        # (spec, budget) of every run; a run both comparisons share trains once
        specs = list(
            dict.fromkeys(
                [(s, self.budget) for s in self.batch_specs]
                + [(s, self.optimizer_budget) for s in self.optimizer_specs]
            )
        )
        print(
            f"ferroptim demo ({p.name}): {p.data_description}; m = {self.m:,} training and "
            f"{m_test:,} held-out examples; network {'-'.join(map(str, p.sizes))}; "
            f"{len(specs)} runs, {self._budgets()}.",
            flush=True,
        )

        results: dict[tuple[RunSpec, Budget], dict] = {}
        # NumPy's BLAS on one thread: on this network's small matrices its threads cost more
        # than they save (up to 30x slower per batch of 512 on a busy 2-core machine).
        with threadpool_limits(1, user_api="blas"):
            for i, (spec, budget) in enumerate(specs, 1):
                with tqdm(
                    total=100,
                    desc=f"[{i}/{len(specs)}] {spec.name}",
                    unit="%",
                    leave=False,
                    disable=None,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}",
                ) as bar:
                    r = train(spec, data, p.sizes, budget, self.seed, progress=bar, loop=self.loop)
                if any(o["name"] == r["name"] for o in results.values()):
                    # the same run under the other comparison's budget: its own name (and
                    # its own arrays in curves.npz)
                    r["name"] = f"{r['name']}, {budget.describe().removesuffix(' per run')}"
                results[spec, budget] = r
                print(
                    f"[{i}/{len(specs)}] {spec.name}: {r['updates']:,} updates, {report.epochs_text(r['epochs'])} epochs "
                    f"in {r['train_seconds']:.1f} s; cost {r['initial_cost']:.3f} -> {r['final_cost']:.3f}, "
                    f"held-out accuracy {r['heldout_accuracy']:.1%}",
                    flush=True,
                )
            races = surfaces.race(FOUR)
            family = surfaces.race(list(surfaces.FAMILY))

        batch_runs = [results[s, self.budget] for s in self.batch_specs]
        optimizer_runs = [results[s, self.optimizer_budget] for s in self.optimizer_specs]
        figures, plotted = self._figures(batch_runs, optimizer_runs, races, data)
        tables = []
        if batch_runs:
            tables.append((self._batch_title(), batch_runs, self.budget))
        tables.append((self._optimizer_title(), optimizer_runs, self.optimizer_budget))
        for title, runs, budget in tables:
            print(f"\n{title} ({budget.describe()})\n{report.text_table(runs)}")
        decay = report.decay_summary(optimizer_runs)
        if decay:
            print(f"\n{decay}")
        print("\nTest surfaces, steps to the target (each optimizer at its best learning rate):")
        for race in races + family:
            cells = [
                f"{name} {r['steps_to_target'] if r['steps_to_target'] is not None else 'never'}"
                for name, r in race["runs"].items()
            ]
            print(f"  {race['surface'].key:11s} " + ", ".join(cells))

        total = time.perf_counter() - started
        self._write(
            list(results.values()),
            batch_runs,
            optimizer_runs,
            races,
            family,
            figures,
            plotted,
            tables,
            m_test,
            total,
        )
        print(f"\nReport: {self.out / 'report.md'} (figures, results.json) — {total:.0f} s in all.")

    def _budgets(self) -> str:
        """E.g. ``3 s of training per run, 17 epochs per run of the optimizer comparison``."""
        if self.optimizer_budget == self.budget:
            return self.budget.describe()
        return f"{self.budget.describe()}, {self.optimizer_budget.describe()} of the optimizer comparison"

    def command(self) -> str:
        """The command line that repeats this run, every option explicit."""
        b, o = self.budget, self.optimizer_budget
        parts = [
            "ferroptim demo",
            f"--preset {self.preset.name}",
            f"--examples {self.m}",
            f"--seconds {b.seconds:g}" if b.seconds is not None else f"--epochs {b.epochs:g}",
        ]
        if o != b:
            parts.append(f"--optimizer-epochs {o.epochs:g}")
        if self.batch_specs:
            sizes = ",".join("all" if s.batch_size is None else str(s.batch_size) for s in self.batch_specs)
            parts.append(f"--batch-sizes {sizes}")
        if self.optimizer_specs[0].batch_size is not None:
            parts.append(f"--batch-size {self.optimizer_specs[0].batch_size}")
        if self.loop != "fit":
            parts.append(f"--loop {self.loop}")
        parts += [f"--seed {self.seed}", f"--out {self.out}"]
        return " ".join(parts)

    def _batch_title(self) -> str:
        opt, lr = self.preset.batch_size_optimizer
        return f"Batch size: {opt}, lr {lr:g}"

    def _optimizer_title(self) -> str:
        b = self.optimizer_specs[0].batch_label
        return f"Optimizers: batch size {b}, constant lr and lr decay"

    def _figures(self, batch_runs, optimizer_runs, races, data) -> tuple[list, dict]:
        """Draws every figure; returns the file names and the numbers plotted that are not
        in the runs (the temperature EWAs and the schedules)."""
        drawn = []

        def path(name):
            drawn.append(name)
            return self.out / name

        numbers = {
            "ewa_temperature": plots.ewa_temperature(
                datasets.daily_temperatures(self.seed), path("ewa_temperature.png")
            ),
            "lr_schedules": plots.lr_schedules(path("lr_schedules.png")),
        }
        if batch_runs:
            plots.cost_by_batch_size(batch_runs, _xaxis(self.budget), path("cost_batch_size.png"))
            plots.decision_boundaries(
                batch_runs,
                data.X_test,
                data.Y_test,
                path("boundaries_batch_size.png"),
                f"Decision boundaries after {self.budget.describe()}, by batch size",
            )
        plots.cost_by_optimizer(optimizer_runs, _xaxis(self.optimizer_budget), path("cost_optimizers.png"))
        with_decay = any(r["decay"] for r in optimizer_runs) and any(not r["decay"] for r in optimizer_runs)
        plots.decision_boundaries(
            optimizer_runs,
            data.X_test,
            data.Y_test,
            path("boundaries_optimizers.png"),
            f"Decision boundaries after {self.optimizer_budget.describe()}, by optimizer",
            cols=len(optimizer_runs) // 2 if with_decay else None,
        )
        for race in races:
            plots.surface_paths(race, path(f"paths_{race['surface'].key}.png"))
        return drawn, numbers

    def _write(
        self, runs, batch_runs, optimizer_runs, races, family, figures, plotted, tables, m_test, total
    ) -> None:
        p = self.preset
        results = {
            "command": self.command(),
            "preset": p.name,
            "seed": self.seed,
            "budget": {"seconds": self.budget.seconds, "epochs": self.budget.epochs},
            "optimizer_budget": {
                "seconds": self.optimizer_budget.seconds,
                "epochs": self.optimizer_budget.epochs,
            },
            "data": {
                "description": p.data_description,
                "generator": p.make_data.__name__,
                "m": self.m,
                "m_heldout": m_test,
                "features": 2,
            },
            "loop": self.loop,
            "network": {
                "sizes": p.sizes,
                "hidden": "ReLU",
                "output": "sigmoid",
                "cost": "binary cross-entropy (nats per example)",
                "dtype": "float32",
            },
            "machine": report.machine_info(),
            "runs": runs,
            "comparisons": {
                "batch_size": [r["name"] for r in batch_runs],
                "optimizer": [r["name"] for r in optimizer_runs],
            },
            "surfaces": [
                {
                    "key": race["surface"].key,
                    "formula": race["surface"].formula,
                    "start": race["surface"].start,
                    "f_min": race["surface"].f_min,
                    "target": race["surface"].target,
                    "steps": race["surface"].steps,
                    "runs": {
                        name: {k: r[k] for k in ("lr", "steps_to_target", "final_gap", "path", "sweep")}
                        for name, r in {**race["runs"], **rest["runs"]}.items()
                    },
                }
                for race, rest in zip(races, family)
            ],
            **plotted,
            "figures": figures,
            "total_seconds": total,
        }
        light, arrays = report.split_arrays(results)
        report.write_json(light, self.out / "results.json")
        np.savez_compressed(self.out / "curves.npz", **arrays)
        report.write_markdown(
            self.out / "report.md",
            self._sections(tables, races, family, results),
            title=f"ferroptim demo report ({p.name})",
            intro=self._intro(results),
        )

    def _intro(self, results: dict) -> str:
        mach = results["machine"]
        return (
            f"`{self.command()}` — "
            f"{self.preset.description}. Data: {self.preset.data_description}; m = {self.m:,} training "
            f"and {results['data']['m_heldout']:,} held-out examples. Network "
            f"{'-'.join(map(str, self.preset.sizes))}, a `ferroptim.nn.MLP` (float32, ReLU, sigmoid output, "
            f"cross-entropy cost) trained by "
            + (
                "`model.fit` (each epoch one Rust call)"
                if self.loop == "fit"
                else "a Python loop over `ferroptim.MiniBatches` (`model.loss_and_grad` + `opt.step` per batch)"
            )
            + f", optimizers and schedules from ferroptim. Budget: {self._budgets()}; seed {self.seed}.\n\n"
            f"Machine: {mach['cpu']}, {mach['logical_cpus']} logical CPUs, ferroptim "
            f"{mach['versions']['ferroptim']} ({mach['ferroptim_simd']}, {mach['ferroptim_threads']} threads), "
            f"NumPy {mach['versions']['numpy']}; whole demo {results['total_seconds']:.0f} s. Every number is "
            f"in `results.json` (cost curves binned); every update's cost and time, the trained weights and "
            f"the surfaces' full paths are in `curves.npz`."
        )

    def _sections(self, tables, races, family, results) -> list:
        sections = []
        if self.batch_specs:
            title, runs, _ = tables[0]
            sections.append(
                (
                    f"1. Batch, mini-batch and stochastic gradient descent ({title.split(': ')[1]})",
                    (
                        f"{report.markdown_table(runs)}\n\n"
                        "Epochs are fractional where the budget ended an epoch; time per epoch is then extrapolated. "
                        "Final cost and train accuracy are over the whole training set.\n\n"
                        + report.figure(
                            "cost_batch_size.png",
                            f"Cost of every mini-batch (faint) and its bias-corrected EWA (bold) against {_xlabel(self.budget)}. "
                            "Batch GD sees all m examples per update: a smooth curve but few updates. Smaller "
                            "batches update more often, with noisier costs, because a batch may not represent "
                            "the whole set; batch 1 (stochastic) is the noisiest. The last panel compares "
                            "them on the same held-out examples.",
                        )
                        + "\n"
                        + report.figure("boundaries_batch_size.png", "What each network learned.")
                    ),
                )
            )
        title, runs, _ = tables[-1]
        sections.append(
            (
                f"{len(sections) + 1}. {title} ({self.optimizer_budget.describe()})",
                (
                    f"{report.markdown_table(runs)}\n\n"
                    + "".join(
                        f"- **{r['name']}**: `{r['code']}`"
                        + (
                            f", i.e. lr = {r['decay']['formula']} with lr0 = {r['lr']:g}"
                            if r["decay"]
                            else ""
                        )
                        + "\n"
                        for r in runs
                    )
                    + "\n"
                    + (f"{report.decay_summary(runs)}\n\n" if report.decay_summary(runs) else "")
                    + report.figure(
                        "cost_optimizers.png",
                        f"Top: mini-batch cost (faint) and its EWA (bold) against {_xlabel(self.optimizer_budget)}. Bottom: held-out "
                        "accuracy at checkpoints. Left: constant learning rate; right: the lecture's "
                        "decay, large steps early and small late.",
                    )
                    + "\n"
                    + report.figure("boundaries_optimizers.png", "What each network learned.")
                ),
            )
        )
        n = len(sections)
        sections.append(
            (
                f"{n + 1}. Exponentially weighted averages",
                report.figure(
                    "ewa_temperature.png",
                    "The lecture's temperature example with ferroptim.ewa: beta = 0.5 averages about the last 2 days "
                    "(noisy), 0.9 the last 10, 0.98 the last 50 (smooth but late). Started at v0 = 0 the plain average "
                    "is far too low for the first ~1/(1 - beta) days; dividing by 1 - beta^t corrects it.",
                ),
            )
        )
        sections.append(
            (
                f"{n + 2}. Learning-rate schedules",
                report.figure(
                    "lr_schedules.png",
                    "Left: the lecture's four decays per epoch. Right: schedules used today, per update. All are "
                    "ferroptim.schedules objects, which any ferroptim optimizer takes as its lr.",
                ),
            )
        )
        body = (
            report.surface_table(races) + "\n\n"
            "Each optimizer runs on `w = [x, y]` with the analytic gradient, at the learning rate (from 1e-5 to "
            "30, 1 and 3 times powers of ten) that reaches the target in the fewest steps and stays there; "
            "the sweep is in results.json. GD's step is lr times the gradient, so a near-zero gradient (at a "
            "saddle point, on a plateau) means a near-zero step. Momentum builds speed along a consistent "
            "direction and so tolerates a larger lr; RMSprop and Adam divide by the root of the squared "
            "gradient's average, so their steps stay about lr long even where the gradient is tiny.\n\n"
        )
        for race in races:
            s = race["surface"]
            body += (
                report.figure(
                    f"paths_{s.key}.png",
                    f"{s.title}. Left: contours of {s.formula} with the paths; right: f − f* per "
                    "step (log scale).",
                )
                + "\n"
            )
        body += (
            "\nThe rest of ferroptim's optimizers on the same surfaces, by the same rule (torch's "
            "defaults otherwise):\n\n" + report.surface_table(family) + "\n"
        )
        sections.append((f"{n + 3}. Saddle points, plateaus and valleys", body))
        return sections


def _xaxis(budget: Budget) -> str:
    """The cost curves' x-axis for runs under ``budget``: ``"seconds"`` or ``"epochs"``."""
    return "seconds" if budget.seconds is not None else "epochs"


def _xlabel(budget: Budget) -> str:
    return "training time" if budget.seconds is not None else "epochs"
