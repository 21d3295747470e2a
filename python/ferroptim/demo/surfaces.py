r"""The lecture's closing point made visible: GD, Momentum, RMSprop and Adam on 2-D test
surfaces with a saddle point, a plateau, and Rosenbrock's curved valley.

Each optimizer is a ferroptim optimizer over one parameter array ``w = [x, y]`` (float64),
fed the surface's analytic gradient. Each runs at its best learning rate from a grid
(powers of ten times 1 and 3): the one that brings ``f - f*`` below the surface's target for
good in the fewest steps (else the lowest final ``f - f*``) without the loss ever rising
above its starting value. So every optimizer is shown at its best, and a slow escape is the
method's, not a badly chosen rate's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import optim
from ..optim.lbfgs import LBFGS
from .train import OPTIMIZERS as FOUR

# The rest of the family races too (a table, not the figures): torch's defaults otherwise.
FAMILY: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "AdamW": (optim.AdamW, {}),
    "Adagrad": (optim.Adagrad, {}),
    "Adadelta": (optim.Adadelta, {}),
    "Adamax": (optim.Adamax, {}),
    "NAdam": (optim.NAdam, {}),
    "RAdam": (optim.RAdam, {}),
    "Lion": (optim.Lion, {}),
    # sign steps: each coordinate's step grows while its gradient's sign holds, whatever
    # the gradient's size
    "Rprop": (optim.Rprop, {}),
    # a curvature model from the last gradients, each iteration with a strong-Wolfe line
    # search: its "steps" are gradient evaluations (see run_path)
    "LBFGS": (LBFGS, {"max_iter": 1, "max_eval": 25, "line_search_fn": "strong_wolfe"}),
}
OPTIMIZERS = {**FOUR, **FAMILY}

GRID = [c * 10.0**e for e in range(-5, 2) for c in (1, 3)]  # 1e-5 .. 30


@dataclass(frozen=True)
class Surface:
    """A 2-D loss ``f(x, y)`` with its gradient, a start, the minimum value and a view.

    Args:
        key: file-name stem, e.g. ``saddle``.
        title: the plot title.
        formula: ``f`` as text.
        f: ``(x, y) -> f``, vectorised over NumPy arrays.
        grad: ``(x, y) -> (df/dx, df/dy)``.
        start: the starting point.
        minima: the global minimisers (for the plot).
        f_min: the minimum value ``f*``.
        target: "reached the minimum" means ``f - f* < target`` from then on.
        steps: updates per run.
        view: ``(xmin, xmax, ymin, ymax)`` of the contour plot.
        levels: the values of ``f - f*`` to draw contours at: a sequence, ``"log"`` for
            decades, or None for 20 even steps.
        saddles: saddle points to mark.
    """

    key: str
    title: str
    formula: str
    f: Callable
    grad: Callable
    start: tuple
    minima: tuple
    f_min: float
    target: float
    steps: int
    view: tuple
    levels: object = None
    saddles: tuple = ()


C = 0.1  # the saddle's weak negative curvature


SURFACES = [
    Surface(
        key="saddle",
        title="A saddle point: steep in x, weakly curved down in y",
        formula=f"f = x²/2 + {C:g} (y⁴/4 − y²/2)",
        f=lambda x, y: 0.5 * x**2 + C * (0.25 * y**4 - 0.5 * y**2),
        grad=lambda x, y: (x, C * (y**3 - y)),
        start=(0.6, 1e-6),
        minima=((0.0, 1.0), (0.0, -1.0)),
        f_min=-C / 4,
        target=C / 8,
        steps=400,
        view=(-0.8, 0.8, -1.4, 1.4),
        levels=tuple(C / 4 * np.array([0, 0.1, 0.3, 0.5, 0.7, 0.85, 1, 1.15, 1.3, 1.6, 2, 3, 4, 6, 9, 13])),
        saddles=((0.0, 0.0),),
    ),
    Surface(
        key="plateau",
        title="A plateau around a well: the gradient far out is nearly zero",
        formula="f = 1 − exp(−(x² + y²)/2)",
        f=lambda x, y: 1 - np.exp(-0.5 * (x**2 + y**2)),
        grad=lambda x, y: (x * np.exp(-0.5 * (x**2 + y**2)), y * np.exp(-0.5 * (x**2 + y**2))),
        start=(3.4, 2.0),
        minima=((0.0, 0.0),),
        f_min=0.0,
        target=0.1,
        steps=400,
        view=(-2.0, 4.5, -2.0, 3.0),
    ),
    Surface(
        key="rosenbrock",
        title="Rosenbrock's banana valley: curved, steep walls, flat floor",
        formula="f = (1 − x)² + 100 (y − x²)²",
        f=lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2,
        grad=lambda x, y: (-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)),
        start=(-1.5, 2.0),
        minima=((1.0, 1.0),),
        f_min=0.0,
        target=1e-3,
        steps=3000,
        view=(-2.0, 2.0, -1.0, 3.0),
        levels="log",
    ),
]


def run_path(surface: Surface, optimizer: str, lr: float) -> dict:
    """The path of one optimizer at one learning rate: ``steps`` updates from the start.

    A step is one gradient evaluation: for LBFGS, whose iterations (``max_iter=1`` per
    ``step``) each evaluate the gradient at the line search's trial points, the path holds
    the iterate it had reached before each evaluation (the same point while its line search
    runs, the new one at its last evaluation), and the evaluation at the point where the last line search ended is not counted
    again.

    Returns:
        ``{"path": (steps + 1, 2) array of points, "gap": f - f* at each point,
        "steps_to_target": first step after which f - f* < target for good (None if never),
        "final_gap", "diverged"}``; ``diverged`` means the loss became infinite or rose
        above its starting value.
    """
    cls, fixed = OPTIMIZERS[optimizer]
    w = np.array(surface.start, dtype=np.float64)
    opt = cls([w], lr=lr, **fixed)
    path = np.empty((surface.steps + 1, 2))
    path[0] = w
    evaluations = [0]
    last: dict[tuple, tuple[float, list[np.ndarray]]] = {}

    def closure() -> tuple[float, list[np.ndarray]]:
        # a step of max_iter=1 starts by evaluating where the last one's line search ended:
        # that value is kept, not counted twice
        point = (float(w[0]), float(w[1]))
        if point not in last:
            evaluations[0] += 1
            last.clear()
            last[point] = (float(surface.f(*point)), [np.array(surface.grad(*point))])
        loss, grads = last[point]
        return loss, [g.copy() for g in grads]

    with np.errstate(all="ignore"):
        k = 0
        while k < surface.steps:
            before = w.copy()
            if isinstance(opt, LBFGS):
                opt.step(closure)
                upto = min(evaluations[0], surface.steps)
            else:
                opt.step([np.array(surface.grad(w[0], w[1]))])
                upto = k + 1
            if upto == k:  # LBFGS found nothing left to do (a zero or tiny gradient)
                path[k + 1 :] = w
                break
            path[k + 1 : upto] = before  # while the line search evaluates
            path[upto] = w
            k = upto
            if not np.all(np.isfinite(w)) or np.abs(w).max() > 1e6:
                path[k:] = np.nan
                break
        gap = surface.f(path[:, 0], path[:, 1]) - surface.f_min
    diverged = not np.all(np.isfinite(gap)) or gap.max() > gap[0]
    above = np.nonzero(~(gap < surface.target))[0]
    reached = None if diverged or len(above) == len(gap) or above[-1] == len(gap) - 1 else int(above[-1] + 1)
    return {
        "path": path,
        "gap": gap,
        "steps_to_target": reached,
        "final_gap": float(gap[-1]),
        "diverged": diverged,
    }


def best_path(surface: Surface, optimizer: str) -> dict:
    """Runs every learning rate of ``GRID`` and returns the best run (fewest steps to the
    minimum, else lowest final gap), with ``lr`` and the whole ``sweep`` (lr, steps to the
    minimum, final gap) added."""
    runs = [(lr, run_path(surface, optimizer, lr)) for lr in GRID]

    def rank(item):
        r = item[1]
        if r["diverged"]:
            return (2, 0.0)
        if r["steps_to_target"] is not None:
            return (0, r["steps_to_target"])
        return (1, r["final_gap"])

    lr, best = min(runs, key=rank)
    sweep = [
        {
            "lr": lr_,
            "steps_to_target": r["steps_to_target"],
            "final_gap": None if r["diverged"] else r["final_gap"],
        }
        for lr_, r in runs
    ]
    return {**best, "lr": lr, "sweep": sweep}


def race(optimizers: list[str]) -> list[dict]:
    """Every optimizer at its best learning rate on every surface.

    Returns:
        One dict per surface: ``surface`` (a :class:`Surface`) and ``runs``, a dict
        optimizer -> :func:`best_path` result.
    """
    return [{"surface": s, "runs": {o: best_path(s, o) for o in optimizers}} for s in SURFACES]
