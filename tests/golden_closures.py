"""The objectives and gradients of the recorded torch LBFGS and Muon trajectories
(tests/golden/torch_closures.*), as closed formulas (no random generator), so that
scripts/make_golden.py and tests/test_golden_closures.py compute the same float64 values on
every NumPy version; float32 cases round them to float32.
"""

import numpy as np

LBFGS_STEPS = 3
MUON_STEPS = 8
LBFGS_CONFIGS = [
    {},
    {"line_search_fn": "strong_wolfe"},
    {"lr": 0.5, "max_iter": 6, "history_size": 3, "line_search_fn": "strong_wolfe"},
]
MUON_SHAPES = [(6, 20), (20, 6)]
MUON_CONFIGS = [{"lr": 0.02}, {"lr": 0.02, "nesterov": False, "adjust_lr_fn": "match_rms_adamw"}]


def rosenbrock(params):
    """The n-dimensional Rosenbrock function of one flat parameter, and its gradient."""
    (x,) = params
    a, b = x[:-1].astype(np.float64), x[1:].astype(np.float64)
    g = np.zeros(len(x))
    g[:-1] = -400.0 * a * (b - a * a) - 2.0 * (1.0 - a)
    g[1:] += 200.0 * (b - a * a)
    return float(np.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2)), [g.astype(x.dtype)]


_I = np.arange(24, dtype=np.float64)
_A = np.cos(0.7 * _I[:, None] * np.arange(1, 5) + 0.3).reshape(24, 4)
_Y = np.sin(0.45 * _I) + 0.1 * _I / 24


def least_squares(params):
    """0.5 mean((A w + b - y)^2) of a fixed (24, 4) A, and its gradients."""
    w, b = params
    r = _A @ w.astype(np.float64) + float(b[0]) - _Y
    loss = 0.5 * np.mean(r * r)
    return float(loss), [(_A.T @ r / len(r)).astype(w.dtype), np.array([r.mean()], dtype=b.dtype)]


PROBLEMS = {"rosenbrock": rosenbrock, "least_squares": least_squares}


def lbfgs_init(problem, dtype):
    if problem == "rosenbrock":
        return [np.array([-1.2, 1.0, -0.5, 0.8], dtype=dtype)]
    return [np.zeros(4, dtype=dtype), np.zeros(1, dtype=dtype)]


def muon_inputs(shape, dtype):
    """(initial parameter, gradients[step]) of a Muon case."""
    n = shape[0] * shape[1]
    i = np.arange(n, dtype=np.float64)
    init = np.cos(1.1 * i + 0.2).reshape(shape).astype(dtype)
    t = np.arange(1, MUON_STEPS + 1, dtype=np.float64)[:, None]
    grads = (np.sin(0.37 * (i + 1) * t) * (1.0 + 0.5 * np.cos(0.3 * i))).reshape((MUON_STEPS, *shape))
    return init, grads.astype(dtype)
