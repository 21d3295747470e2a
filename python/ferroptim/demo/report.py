"""The demo's outputs besides the figures: the results table (terminal and Markdown), what
learning-rate decay did in the run (computed, never assumed), ``results.json`` (every
number, curves binned so it stays small) and ``curves.npz`` (every update's cost and time,
the trained weights, the surfaces' full paths), ``report.md``, and a description of the
machine."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = [
    "optimizer",
    "lr",
    "batch size",
    "epochs",
    "updates",
    "final cost",
    "train acc",
    "held-out acc",
    "wall time",
    "time/epoch",
]


def _lr(run: dict) -> str:
    return f"{run['lr']:g}" + (" decay" if run["decay"] else "")


def table_rows(runs: list[dict]) -> list[list[str]]:
    """One row of strings per run, in the order of ``COLUMNS``. Epochs are fractional
    where the budget ended an epoch early; time per epoch is then extrapolated."""
    rows = []
    for r in runs:
        rows.append(
            [
                r["optimizer"],
                _lr(r),
                r["batch_label"],
                epochs_text(r["epochs"]),
                f"{r['updates']:,}",
                f"{r['final_cost']:.4f}",
                f"{r['train_accuracy']:.2%}",
                f"{r['heldout_accuracy']:.2%}",
                f"{r['train_seconds']:.2f} s",
                _duration(r["seconds_per_epoch"]),
            ]
        )
    return rows


def epochs_text(epochs: float) -> str:
    """Whole epochs as an integer, else 3 significant digits (1 decimal from 100 on)."""
    if epochs == round(epochs):
        return f"{round(epochs):,}"
    return f"{epochs:#.3g}" if epochs < 100 else f"{epochs:,.1f}"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def text_table(runs: list[dict]) -> str:
    """The table for the terminal, columns aligned (text left, numbers right)."""
    rows = [COLUMNS] + table_rows(runs)
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    left = {0, 1, 2}

    def fmt(row):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([fmt(rows[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]])


def markdown_table(runs: list[dict]) -> str:
    """The same table in Markdown."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * (len(COLUMNS) - 3)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(runs)]
    return "\n".join(lines)


def machine_info() -> dict:
    """CPU, cores, memory, load, OS and the versions of everything the demo used (the
    package's one machine description, :func:`ferroptim._machine.machine_info`)."""
    import matplotlib

    from .._machine import machine_info as describe

    return describe({"matplotlib": matplotlib.__version__})


def _plain(x: Any) -> Any:
    """``x`` with NumPy arrays and scalars as lists and numbers, non-finite floats as None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write_json(results: dict, path: Path) -> None:
    """``results`` as strict JSON (no NaN)."""
    with open(path, "w") as f:
        json.dump(_plain(results), f, allow_nan=False)


def surface_table(races: list[dict]) -> str:
    """Markdown: per surface and optimizer, the learning rate and steps to the target."""
    names = list(races[0]["runs"])
    lines = ["| surface | target | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for race in races:
        s = race["surface"]
        cells = []
        for name in names:
            r = race["runs"][name]
            k = r["steps_to_target"]
            cells.append(
                f"{k} steps (lr {r['lr']:g})"
                if k is not None
                else f"not in {s.steps} (lr {r['lr']:g}, f − f* = {r['final_gap']:.2g})"
            )
        lines.append(f"| {s.key}: `{s.formula}` | f − f* < {s.target:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_markdown(path: Path, sections: list[tuple[str, str]], title: str, intro: str) -> None:
    """``report.md``: a title, an introduction, and (heading, body) sections."""
    parts = [f"# {title}", "", intro, ""]
    for heading, body in sections:
        parts += [f"## {heading}", "", body.strip(), ""]
    path.write_text("\n".join(parts))


def figure(name: str, caption: str) -> str:
    """Markdown that embeds ``name`` (a PNG next to report.md) with a caption."""
    return f"![{name}]({name})\n\n*{caption}*\n"


# -- what decay did -------------------------------------------------------------------------

#: A run whose mini-batch cost fell by more than this over its last tenth was still descending.
STILL_FALLING = 0.05


def late_drop(costs) -> float | None:
    """How much the mini-batch cost fell over the last tenth of a run: ``1 - mean(last
    tenth) / mean(the tenth before)`` (0.2 = fell 20%; negative = rose); None under 20 updates."""
    c = np.asarray(costs, dtype=float)
    k = len(c) // 10
    if k < 2:
        return None
    before, last = float(np.mean(c[-2 * k : -k])), float(np.mean(c[-k:]))
    return 1 - last / before if before > 0 else None


def _costs(run: dict):
    if "batch_costs" in run:
        return run["batch_costs"]
    return run.get("cost_curve", {}).get("mean", [])


def decay_findings(runs: list[dict]) -> list[dict]:
    """Each run with a decay beside the constant-rate run of the same optimizer and batch
    size: ``optimizer``, ``constant`` and ``decay`` (the runs), ``helped`` (decay's final
    cost over the whole training set is lower), and ``late_drop`` of each (see
    :func:`late_drop`). Runs without such a partner are left out."""
    out = []
    for d in runs:
        if not d["decay"]:
            continue
        partner = [
            c
            for c in runs
            if not c["decay"] and c["optimizer"] == d["optimizer"] and c["batch_size"] == d["batch_size"]
        ]
        if not partner:
            continue
        c = partner[0]
        out.append(
            {
                "optimizer": d["optimizer"],
                "constant": c,
                "decay": d,
                "helped": d["final_cost"] < c["final_cost"],
                "late_drop": {"constant": late_drop(_costs(c)), "decay": late_drop(_costs(d))},
            }
        )
    return out


def _change(f: dict) -> str:
    c, d = f["constant"], f["decay"]
    return (
        f"cost {c['final_cost']:.4f} → {d['final_cost']:.4f}, held-out accuracy "
        f"{c['heldout_accuracy']:.2%} → {d['heldout_accuracy']:.2%}"
    )


def _why_not(f: dict) -> str:
    """Why decay did not lower this final cost, from the two runs' last tenths."""
    dc, dd = f["late_drop"]["constant"], f["late_drop"]["decay"]
    if dd is not None and dd > STILL_FALLING:
        return (
            f"with decay it was still descending when the budget ended (its mini-batch cost fell "
            f"{dd:.0%} over the last tenth of the run): progress, not noise, limited it, and the "
            "smaller late steps slowed it; a larger lr0, a slower decay or a longer budget lets decay pay off"
        )
    if dc is not None and dc > STILL_FALLING:
        return (
            f"the constant rate was still descending at the end (−{dc:.0%} over the last tenth) while "
            "the decayed rate had levelled off higher: its steps became small too soon"
        )
    return (
        "both had levelled off (their costs changed by "
        + ", ".join(f"{x:+.0%}" if x is not None else "?" for x in (-(dc or 0), -(dd or 0)))
        + " over the last tenth): at this budget the constant rate's noise was not what held it "
        "back, so smaller steps gained nothing"
    )


def decay_summary(runs: list[dict]) -> str:
    """A paragraph on what learning-rate decay did in ``runs``: for which optimizers it
    lowered the final cost (with the numbers) and, for each where it did not, why — all
    computed from the runs. Empty when no run has a constant-rate partner."""
    findings = decay_findings(runs)
    if not findings:
        return ""
    formula = findings[0]["decay"]["decay"]["formula"]
    helped = [f for f in findings if f["helped"]]
    missed = [f for f in findings if not f["helped"]]
    head = f"Learning-rate decay (lr = {formula})"
    if not missed:
        names = [f["optimizer"] for f in helped]
        which = (
            "all four optimizers"
            if len(names) == 4
            else " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        )
        text = (
            f"{head} lowered the final cost for {which}, as the lecture says: large steps early make "
            "progress, small steps late stop the mini-batches' noise from bouncing the weights around "
            "the minimum. " + "; ".join(f"{f['optimizer']}: {_change(f)}" for f in helped) + "."
        )
        return text
    parts = []
    if helped:
        parts.append(
            f"{head} lowered the final cost for "
            + "; ".join(f"{f['optimizer']} ({_change(f)})" for f in helped)
            + "."
        )
        lead = "It did not for"
    else:
        lead = f"{head} did not lower the final cost for any optimizer in this run:"
    parts.append(
        f"{lead} " + "; ".join(f"{f['optimizer']} ({_change(f)}): {_why_not(f)}" for f in missed) + "."
    )
    return " ".join(parts)


# -- results.json and curves.npz ----------------------------------------------------------

#: Points per curve in results.json (binned means, minima and maxima of consecutive updates).
CURVE_POINTS = 300
#: Points per optimizer path on a test surface in results.json.
PATH_POINTS = 201


def _round(values) -> list:
    """Floats to 6 significant digits (float32 keeps about 7)."""
    return [float(f"{v:.6g}") for v in np.asarray(values, dtype=float).ravel()]


def curve(costs, seconds, points: int = CURVE_POINTS) -> dict:
    """The cost of every update in at most ``points`` bins of consecutive updates: per bin
    ``update`` (its first update's index), ``seconds`` (training time then), and the
    ``mean``, ``min`` and ``max`` of its costs."""
    c = np.asarray(costs, dtype=float)
    s = np.asarray(seconds, dtype=float)
    if len(c) == 0:
        return {"update": [], "seconds": [], "mean": [], "min": [], "max": []}
    starts = np.unique(np.linspace(0, len(c), min(points, len(c)) + 1).astype(np.int64))[:-1]
    return {
        "update": starts.tolist(),
        "seconds": _round(s[starts]) if len(s) == len(c) else [],
        "mean": _round(np.add.reduceat(c, starts) / np.diff(np.append(starts, len(c)))),
        "min": _round(np.minimum.reduceat(c, starts)),
        "max": _round(np.maximum.reduceat(c, starts)),
    }


def thinned(path, points: int = PATH_POINTS) -> list:
    """At most ``points`` rows of ``path`` (evenly spaced, the first and the last kept)."""
    p = np.asarray(path, dtype=float)
    if len(p) <= points:
        return [_round(row) for row in p]
    rows = np.unique(np.linspace(0, len(p) - 1, points).round().astype(np.int64))
    return [_round(p[i]) for i in rows]


def split_arrays(results: dict) -> tuple[dict, dict]:
    """``results`` for results.json and the arrays for curves.npz.

    In the JSON copy each run's ``batch_costs`` and ``update_seconds`` become a
    ``cost_curve`` (:func:`curve`), its ``params`` go to the arrays only, and each surface
    path keeps :data:`PATH_POINTS` rows (``path_steps`` says which). The arrays hold them
    whole: ``runs/<name>/batch_costs`` and ``update_seconds`` (float32), ``runs/<name>/<W1,
    b1, ...>``, ``surfaces/<key>/<optimizer>/path``. ``results`` is not modified.
    """
    arrays: dict[str, np.ndarray] = {}
    out = dict(results)
    runs = []
    for r in results.get("runs", []):
        r = dict(r)
        name = r["name"]
        costs, seconds = r.pop("batch_costs", []), r.pop("update_seconds", [])
        arrays[f"runs/{name}/batch_costs"] = np.asarray(costs, dtype=np.float32)
        arrays[f"runs/{name}/update_seconds"] = np.asarray(seconds, dtype=np.float32)
        for k, v in (r.pop("params", None) or {}).items():
            arrays[f"runs/{name}/{k}"] = np.asarray(v)
        r["cost_curve"] = curve(costs, seconds)
        runs.append(r)
    out["runs"] = runs
    surfaces = []
    for s in results.get("surfaces", []):
        s = dict(s)
        thin = {}
        for name, r in s["runs"].items():
            r = dict(r)
            path = np.asarray(r["path"], dtype=float)
            arrays[f"surfaces/{s['key']}/{name}/path"] = path
            r["path"] = thinned(path)
            if len(path) > PATH_POINTS:
                r["path_steps"] = np.unique(
                    np.linspace(0, len(path) - 1, PATH_POINTS).round().astype(int)
                ).tolist()
            thin[name] = r
        s["runs"] = thin
        surfaces.append(s)
    out["surfaces"] = surfaces
    return out, arrays
