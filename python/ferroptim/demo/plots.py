"""The demo's figures, drawn with matplotlib's headless Agg backend into PNG files.

Every function takes results (plain dicts from :mod:`.train` and :mod:`.surfaces`) and a
path, draws one self-explanatory figure (title, axis labels with units, legend) and saves
it. Averages and schedules are computed with ferroptim.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from .. import schedules
from ..averages import ewa
from . import net

COLORS = {
    "GD": "tab:blue",
    "Momentum": "tab:orange",
    "RMSprop": "tab:green",
    "Adam": "tab:red",
    "Rprop": "tab:purple",
    "LBFGS": "tab:brown",
}
BATCH_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]
# matplotlib types rc_context's keys as a Literal of every rcParam name, not as str.
STYLE: dict[Any, Any] = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "figure.titlesize": 14,
    "legend.fontsize": 9.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "savefig.dpi": 110,
    "savefig.bbox": "tight",
}
SMOOTHING_BETAS = (0.0, 0.5, 0.9, 0.98, 0.99, 0.998, 0.999)
#: Up to this many updates every mini-batch's cost is drawn; beyond, the mean of each of
#: BINS runs of consecutive updates (a faint line, not a solid band of single costs).
MAX_RAW_POINTS = 2_000
BINS = 500


def _save(fig, path: Path) -> None:
    fig.savefig(path)
    plt.close(fig)


def smoothing_beta(n: int) -> float:
    """The EWA beta for a cost curve of ``n`` updates: the largest of 0.5, 0.9, 0.98, 0.99,
    0.998, 0.999 whose window ``1 / (1 - beta)`` is at most 2% of the curve (0 if none)."""
    return max(b for b in SMOOTHING_BETAS if 1 / (1 - b) <= max(1.0, n / 50))


def _x(run: dict, xaxis: str) -> np.ndarray:
    """When each update started: training seconds, or epochs (updates / updates per epoch)."""
    if xaxis == "seconds":
        return np.asarray(run["update_seconds"])
    return np.arange(run["updates"]) / run["updates_per_epoch"]


XLABEL = {"seconds": "training time (s)", "epochs": "epochs (passes over the training set)"}


def _raw_and_smoothed(
    ax, run: dict, xaxis: str, color: str, label: str, raw_alpha: float = 0.25
) -> np.ndarray:
    """Plots the cost of every mini-batch (thin, faint) and its bias-corrected EWA (bold);
    returns the EWA."""
    costs = np.asarray(run["batch_costs"])
    x = _x(run, xaxis)
    if len(costs) <= MAX_RAW_POINTS:
        ax.plot(x, costs, color=color, lw=0.6, alpha=raw_alpha)
    else:
        starts = np.unique(np.linspace(0, len(costs), BINS + 1).astype(np.int64))[:-1]
        means = np.add.reduceat(costs, starts) / np.diff(np.append(starts, len(costs)))
        ax.plot(x[starts], means, color=color, lw=0.8, alpha=min(1.0, 2 * raw_alpha))
    beta = smoothing_beta(len(costs))
    smooth = ewa(costs, beta) if beta > 0 else costs
    ax.plot(
        x,
        smooth,
        color=color,
        lw=2,
        marker="o" if len(costs) < 40 else None,
        ms=4,
        label=f"{label} (EWA β={beta:g})" if beta > 0 else f"{label} (every update)",
    )
    return smooth


def _cost_axis(ax, smoothed: list[np.ndarray]) -> bool:
    """A y axis that shows how the smoothed costs fell: log, from a quarter of the lowest to
    above the highest, where they span more than a factor of 3 (so the noise of single
    examples, costs down to ~0, does not squash them); otherwise linear and zoomed onto
    them, so a small fall (batch GD's few updates) is not a flat line. Returns whether it zoomed."""
    low = min(float(np.min(s)) for s in smoothed)
    high = max(float(np.max(s)) for s in smoothed)
    ax.set_ylabel("cost J (cross-entropy, nats)")
    if low > 0 and high / low > 3:
        ax.set_yscale("log")
        ax.set_ylim(low / 4, high * 2.5)
        return False
    pad = max(high - low, 1e-3 * high) * 0.25
    ax.set_ylim(low - pad, high + pad)
    return True


def ewa_temperature(temps: np.ndarray, path: Path) -> dict:
    """The lecture's temperature example: a year of noisy daily temperatures and their EWAs
    for beta 0.5, 0.9 and 0.98, with and without bias correction.

    Returns the plotted averages (for results.json).
    """
    days = np.arange(1, len(temps) + 1)
    betas = {0.5: "#2ca02c", 0.9: "#d62728", 0.98: "#1f77b4"}
    averages = {
        b: {"corrected": ewa(temps, b), "uncorrected": ewa(temps, b, bias_correction=False)} for b in betas
    }
    with plt.rc_context(STYLE):
        fig, (a, b) = plt.subplots(1, 2, figsize=(14, 5.2), gridspec_kw={"width_ratios": [1.6, 1]})
        for ax in (a, b):
            ax.plot(days, temps, ".", color="0.55", ms=4, label=r"daily temperature $\theta_t$")
        for beta, color in betas.items():
            window = 1 / (1 - beta)
            a.plot(
                days,
                averages[beta]["corrected"],
                color=color,
                lw=2,
                label=f"β = {beta:g}  (≈ last {window:.0f} days)",
            )
            b.plot(
                days, averages[beta]["corrected"], color=color, lw=2, label=f"β = {beta:g}, bias-corrected"
            )
            b.plot(
                days,
                averages[beta]["uncorrected"],
                color=color,
                lw=1.6,
                ls="--",
                label=f"β = {beta:g}, no correction",
            )
        a.set(
            title="Larger β averages more days: smoother, but it lags behind",
            xlabel="day of the year",
            ylabel="temperature (°F)",
            xlim=(1, len(temps)),
        )
        a.legend(loc="upper left")
        n = min(60, len(temps))
        b.set(
            title="The first days: starting at $v_0 = 0$ drags the plain EWA down;\n"
            r"dividing by $1 - \beta^t$ removes that bias",
            xlabel="day of the year",
            ylabel="temperature (°F)",
            xlim=(1, n),
            ylim=(0, 1.6 * float(np.max(temps[:n]))),
        )
        b.legend(loc="upper center", ncol=2, fontsize=9)
        fig.suptitle(
            r"Exponentially weighted averages  $v_t = \beta\, v_{t-1} + (1 - \beta)\, \theta_t$"
            "  (ferroptim.ewa)"
        )
        fig.tight_layout()
        _save(fig, path)
    return {str(b): {k: v.tolist() for k, v in avg.items()} for b, avg in averages.items()}


def lr_schedules(path: Path, epochs: int = 50, steps_per_epoch: int = 100) -> dict:
    """The lecture's four learning-rate decays (per epoch) and a few modern schedules (per
    update), all from ``ferroptim.schedules``, starting at lr0 = 0.1.

    Returns the plotted values (for results.json).
    """
    lr0 = 0.1
    epoch = np.arange(epochs + 1)
    lecture = {
        r"$\alpha_0 / (1 + \mathrm{decay\_rate}\cdot \mathrm{epoch})$, decay_rate = 1  (InverseTimeDecay)": schedules.InverseTimeDecay(
            lr0, decay_rate=1.0
        ),
        r"$0.95^{\mathrm{epoch}}\cdot\alpha_0$  (ExponentialDecay)": schedules.ExponentialDecay(
            lr0, decay_rate=0.95
        ),
        r"$k / \sqrt{\mathrm{epoch} + 1}\cdot\alpha_0$, k = 1  (InverseSqrtDecay)": schedules.InverseSqrtDecay(
            lr0, k=1.0
        ),
        "staircase: halve every 10 epochs  (ExponentialDecay, staircase=True)": schedules.ExponentialDecay(
            lr0, decay_rate=0.5, decay_steps=10, staircase=True
        ),
    }
    total = epochs * steps_per_epoch
    step = np.arange(total)
    warm = total // 10
    modern = {
        "linear warm-up, then cosine decay  (JoinSchedules)": schedules.JoinSchedules(
            [schedules.LinearSchedule(0.0, lr0, warm), schedules.CosineDecay(lr0, total - warm)], [warm]
        ),
        "cosine with warm restarts  (CosineDecayRestarts)": schedules.CosineDecayRestarts(
            lr0, first_decay_steps=total / 7, t_mul=2.0
        ),
        "one-cycle  (OneCycle)": schedules.OneCycle(lr0, total_steps=total),
        "polynomial, power 2  (PolynomialDecay)": schedules.PolynomialDecay(
            lr0, total, end_lr=0.0, power=2.0
        ),
    }
    values = {
        "lecture (per epoch)": {name: s(epoch).tolist() for name, s in lecture.items()},
        "modern (per update)": {name: s(step).tolist() for name, s in modern.items()},
    }
    with plt.rc_context(STYLE):
        fig, (a, b) = plt.subplots(1, 2, figsize=(14, 5.2))
        for name, v in values["lecture (per epoch)"].items():
            a.plot(epoch, v, lw=2, drawstyle="steps-post" if "staircase" in name else "default", label=name)
        a.set(
            title="The lecture's decays: big steps early (explore), small late (exploit)",
            xlabel="epoch",
            ylabel="learning rate α",
            ylim=(0, lr0 * 1.5),
        )
        a.legend(loc="upper right", fontsize=9)
        for name, v in values["modern (per update)"].items():
            b.plot(step, v, lw=2, label=name)
        b.set(
            title=f"Modern schedules over a run of {total:,} updates",
            xlabel="update (mini-batch step)",
            ylabel="learning rate α",
            ylim=(0, lr0 * 1.5),
        )
        b.legend(loc="upper right", fontsize=9)
        fig.suptitle(
            f"Learning-rate schedules from ferroptim.schedules (α₀ = {lr0:g}); "
            "any of them can be an optimizer's lr"
        )
        fig.tight_layout()
        _save(fig, path)
    every = max(1, total // 500)  # results.json keeps every `every`-th update of the modern ones
    values["modern (per update)"] = {name: v[::every] for name, v in values["modern (per update)"].items()}
    values["modern updates"] = step[::every].tolist()
    return values


def cost_by_batch_size(runs: list[dict], xaxis: str, path: Path) -> None:
    """One panel per batch size with the cost of every mini-batch and its EWA, and a last
    panel with the held-out cost of all of them on one axis."""
    with plt.rc_context(STYLE):
        n = len(runs) + 1
        cols = min(3, n)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5.4 * cols, 4.3 * rows), squeeze=False)
        axes = axes.ravel()
        smoothed = [
            _raw_and_smoothed(ax, run, xaxis, color, "cost")
            for ax, run, color in zip(axes, runs, BATCH_COLORS)
        ]
        for ax, run, color, smooth in zip(axes, runs, BATCH_COLORS, smoothed):
            # each panel its own y axis: on a shared one batch GD's small fall looks flat
            zoomed = _cost_axis(ax, [smooth])
            what = (
                f"batch GD (all {run['m']:,} per update)"
                if run["batch_size"] is None
                else f"batch size {run['batch_label']}"
            )
            ax.set_title(
                f"{what}: {run['updates']:,} updates" + ("\n(y axis zoomed in, linear)" if zoomed else "")
            )
            ax.set_xlabel(XLABEL[xaxis])
            raw = (
                "cost of each batch"
                if run["updates"] <= MAX_RAW_POINTS
                else f"mean cost of each {run['updates'] // BINS:,} batches"
            )
            ax.legend(
                loc="upper right",
                handles=[
                    plt.Line2D([], [], color=color, lw=0.8, alpha=0.5, label=raw),
                    ax.get_lines()[-1],
                ],
            )
        last = axes[len(runs)]
        for run, color in zip(runs, BATCH_COLORS):
            marks = run["checkpoints"]
            last.plot(
                [c[xaxis] for c in marks],
                [c["heldout_cost"] for c in marks],
                color=color,
                lw=2,
                marker="o" if len(marks) < 15 else None,
                label=f"batch {run['batch_label']}",
            )
        last.set(
            yscale="log",
            title="All batch sizes: cost on the same held-out examples",
            xlabel=XLABEL[xaxis],
            ylabel="held-out cost J (nats)",
        )
        last.legend(loc="best")
        for ax in axes[n:]:
            ax.set_visible(False)
        r = runs[0]
        fig.suptitle(
            f"Batch vs mini-batch vs stochastic gradient descent ({r['optimizer']}, lr {r['lr']:g}, "
            f"m = {r['m']:,})\nbatch GD's cost curve is smooth but it makes few updates; smaller "
            "batches make many more, noisier ones"
        )
        fig.tight_layout()
        _save(fig, path)


def cost_by_optimizer(runs: list[dict], xaxis: str, path: Path) -> None:
    """Mini-batch cost (raw and EWA) and held-out accuracy of each optimizer, without and
    with learning-rate decay."""
    groups = [
        ("constant learning rate", [r for r in runs if r["decay"] is None]),
        ("learning-rate decay", [r for r in runs if r["decay"] is not None]),
    ]
    groups = [(t, g) for t, g in groups if g]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            2, len(groups), figsize=(7.2 * len(groups), 9), squeeze=False, sharex="col", sharey="row"
        )
        for col, (title, group) in enumerate(groups):
            top, bottom = axes[0, col], axes[1, col]
            smoothed = []
            for run in group:
                color = COLORS[run["optimizer"]]
                smoothed.append(
                    _raw_and_smoothed(top, run, xaxis, color, f"{run['optimizer']}, {_lr_text(run)}", 0.15)
                )
                marks = run["checkpoints"]
                bottom.plot(
                    [c[xaxis] for c in marks],
                    [100 * c["heldout_accuracy"] for c in marks],
                    color=color,
                    lw=2,
                    label=run["optimizer"],
                )
            _cost_axis(top, smoothed)
            decay = group[0]["decay"]
            top.set_title(f"{title}" + (f": lr = {decay['formula']}" if decay else ""))
            top.legend(loc="upper right")
            bottom.set(
                title=f"{title}: held-out accuracy", xlabel=XLABEL[xaxis], ylabel="held-out accuracy (%)"
            )
            bottom.legend(loc="lower right")
        low = min(100 * c["heldout_accuracy"] for r in runs for c in r["checkpoints"])
        for ax in axes[1]:
            ax.set_ylim(max(low - 2, 0), 100.5)
        r = runs[0]
        batch = "all m (batch GD)" if r["batch_size"] is None else f"{r['batch_size']}"
        names = " vs ".join(dict.fromkeys(r["optimizer"] for r in runs))
        fig.suptitle(f"{names}: same network, data (m = {r['m']:,}), batch size {batch} and budget")
        fig.tight_layout()
        _save(fig, path)


def _lr_text(run: dict) -> str:
    return f"lr0 = {run['lr']:g}" if run["decay"] else f"lr {run['lr']:g}"


def decision_boundaries(
    runs: list[dict],
    X: np.ndarray,
    Y: np.ndarray,
    path: Path,
    title: str,
    cols: int | None = None,
    points: int = 1500,
) -> None:
    """The probability of class 1 each trained network predicts over the plane, its 0.5
    contour (the decision boundary) and held-out examples."""
    lo, hi = np.percentile(X, [0.5, 99.5], axis=0)
    pad = 0.08 * (hi - lo)
    gx, gy = np.meshgrid(
        np.linspace(lo[0] - pad[0], hi[0] + pad[0], 300), np.linspace(lo[1] - pad[1], hi[1] + pad[1], 300)
    )
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    show = slice(0, min(points, len(X)))
    cols = cols or len(runs)
    rows = math.ceil(len(runs) / cols)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            rows, cols, figsize=(3.6 * cols + 1, 3.9 * rows + 0.8), squeeze=False, layout="constrained"
        )
        for ax, run in zip(axes.ravel(), runs):
            p = net.predict_proba(run["params"], grid).reshape(gx.shape)
            filled = ax.contourf(gx, gy, p, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.45)
            ax.contour(gx, gy, p, levels=[0.5], colors="k", linewidths=1.0)
            ax.scatter(
                X[show, 0],
                X[show, 1],
                c=np.where(Y[show, 0] > 0.5, "#b2182b", "#2166ac"),
                s=4,
                edgecolors="none",
            )
            ax.set_title(f"{run['name']}\nheld-out accuracy {run['heldout_accuracy']:.1%}", fontsize=10.5)
            ax.set(xticks=[], yticks=[], aspect="equal")
            ax.grid(False)
        for ax in axes.ravel()[len(runs) :]:
            ax.set_visible(False)
        fig.suptitle(
            title + "\nshading: predicted probability of the red class; black line: p = 0.5 (the "
            "decision boundary); dots: held-out examples",
            fontsize=12,
        )
        fig.colorbar(filled, ax=axes, shrink=0.8, aspect=25, label="predicted p(red class)")
        _save(fig, path)


def surface_paths(result: dict, path: Path) -> None:
    """Contours of a test surface with each optimizer's path, and ``f - f*`` per step."""
    s = result["surface"]
    runs = result["runs"]
    x0, x1, y0, y1 = s.view
    gx, gy = np.meshgrid(np.linspace(x0, x1, 400), np.linspace(y0, y1, 400))
    gap = s.f(gx, gy) - s.f_min
    with plt.rc_context(STYLE):
        fig, (a, b) = plt.subplots(1, 2, figsize=(14.5, 6.4), gridspec_kw={"width_ratios": [1.15, 1]})
        if s.levels == "log":
            levels = np.logspace(
                -3, np.ceil(np.log10(gap.max())), 2 * int(np.ceil(np.log10(gap.max())) + 3) + 1
            )
            cs = a.contourf(
                gx, gy, np.maximum(gap, 1e-3), levels=levels, norm=LogNorm(), cmap="Greys", alpha=0.6
            )
            a.contour(gx, gy, gap, levels=levels, colors="0.35", linewidths=0.4)
            fig.colorbar(cs, ax=a, label="f − f*  (log scale)", shrink=0.85, ticks=levels[::2])
        else:
            cs = a.contourf(gx, gy, gap, levels=s.levels or 20, cmap="Greys", alpha=0.6)
            a.contour(gx, gy, gap, levels=cs.levels, colors="0.35", linewidths=0.4)
            fig.colorbar(cs, ax=a, label="f − f*", shrink=0.85)
        # Paths that share a stretch (Rosenbrock's valley floor) stay visible: first drawn, widest.
        widths = np.linspace(4.5, 1.3, len(runs))
        for (name, run), lw in zip(runs.items(), widths):
            p = run["path"]
            a.plot(
                p[:, 0],
                p[:, 1],
                color=COLORS[name],
                lw=lw,
                solid_capstyle="round",
                label=f"{name} (lr {run['lr']:g})",
            )
            last = p[np.isfinite(p[:, 0])][-1]
            a.plot(*last, "s", color=COLORS[name], mec="k", ms=8, zorder=5)
        a.plot([], [], "s", color="w", mec="k", ms=8, label="where each path ends")
        a.plot(*s.start, "o", color="k", ms=9, zorder=6, label="start")
        for i, point in enumerate(s.saddles):
            a.contour(
                gx, gy, gap, levels=[s.f(*point) - s.f_min], colors="purple", linewidths=1.2, linestyles="--"
            )
            a.plot(
                *point,
                "X",
                color="purple",
                ms=12,
                mec="w",
                zorder=6,
                label="saddle point (dashed: its level)" if i == 0 else None,
            )
        for i, m in enumerate(s.minima):
            a.plot(*m, "*", color="gold", mec="k", ms=17, zorder=6, label="minimum" if i == 0 else None)
        a.set(
            xlim=(x0, x1),
            ylim=(y0, y1),
            xlabel="x",
            ylabel="y",
            title=f"{s.formula}: paths of {s.steps} updates",
        )
        a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4, fontsize=9.5)
        for name, run in runs.items():
            g = np.maximum(run["gap"], 1e-16)
            k = run["steps_to_target"]
            label = f"{name}: " + (f"{k} steps" if k is not None else f"not within {s.steps}")
            b.plot(np.arange(len(g)), g, color=COLORS[name], lw=2, label=label)
            if k is not None:
                b.plot(k, g[k], "o", color=COLORS[name], ms=7)
        b.axhline(s.target, color="k", ls="--", lw=1, label=f"target: f − f* < {s.target:g}")
        b.set(
            yscale="log",
            xlabel="update (step)",
            ylabel="f − f*  (distance to the minimum value)",
            title="Loss per step; dot = reached the target for good",
        )
        b.set_ylim(
            max(1e-12, np.nanmin([np.nanmin(np.maximum(r["gap"], 1e-16)) for r in runs.values()])), None
        )
        b.legend(loc="lower left")
        fig.suptitle(f"{s.title} — each optimizer at its best learning rate", fontsize=13)
        fig.tight_layout()
        _save(fig, path)
