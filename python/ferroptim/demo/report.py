"""The demo's outputs besides the figures: the results table (terminal and Markdown),
``results.json`` with every number, ``report.md``, and a description of the machine."""

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
