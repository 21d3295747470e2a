"""ferroptim's ``fit`` against torch on a grid of fully-connected networks (issue 27).

The grid: hidden activation {relu, tanh, sigmoid, leaky_relu} x output {sigmoid + binary
cross-entropy, softmax with 10 classes, softmax with 100 classes, identity + squared error}
x dtype {float32, float64} x shape {3-16-k, 8-64-64-k, 32-256-256-256-k, 100-1024-k,
64-128-128-128-128-k} x batch {1, 32, 128, 512, 4096, all rows} x threads {1, 2}. The output
width k is set by the output: 1 for sigmoid, 10 or 100 for softmax, and for identity the
width the shape is named with (1, 8, 1, 10, 10). 1,920 cells; ``--quick`` runs 16 of them
(every activation and output, both dtypes, every batch; shapes in turn), plus the relu twin
of each other cell that has >= 4 MFLOP per update, on 2 threads.

Each cell trains one shuffled epoch, Adam at lr 1e-3, from the same He-initialised weights
and on the same data (X ~ N(0, 1); labels from a fixed random teacher):

- **fit**: ``fo.nn.MLP(sizes, hidden=..., output=..., dtype=...)`` + ``fo.Adam`` +
  ``model.fit(X, Y, opt, batch_size=b, epochs=1)`` (``batch_size=None`` for all rows); the
  warm-up call checks the data, the timed ones pass ``check_input=False``;
- **torch**: ``nn.Sequential`` of ``Linear`` and ``ReLU`` / ``Tanh`` / ``Sigmoid`` /
  ``LeakyReLU(0.01)``, ``BCEWithLogitsLoss`` / ``CrossEntropyLoss`` (int64 labels) /
  ``MSELoss``, ``Adam(fused=True)``, ``randperm`` + ``index_select`` per batch (all rows:
  the data as it is, no gather). torch's ``MSELoss`` is twice ferroptim's identity cost
  ``1/(2 m k) sum (a - y)^2``; the costs printed are ferroptim's definition;
- **JAX + optax** where installed (``--no-jax`` leaves it out): ``optax.adam``, the whole
  epoch one jitted ``lax.scan`` as in ``train_compare.py`` (compiled in the warm-up), float64
  through ``jax_enable_x64``.

Dropout and batch-norm rows (``--layers dropout batchnorm``; the default is the plain
network): the same cells with ``MLP(dropout=0.2)`` against ``nn.Dropout(0.2)`` after each
hidden activation, or ``MLP(batch_norm=True)`` against ``nn.Linear(bias=False)`` +
``nn.BatchNorm1d`` before it (momentum 0.1, eps 1e-5 on both; no batch-1 cells, and a cell
whose last batch would hold one row loses that row: batch norm cannot train on one). JAX
runs the plain rows only. The summary gives their torch / fit per kind and the cells under
1.5x torch.

Every contender's cost of all rows at the initial weights is computed first; a cell whose
contenders disagree there (relative 1e-3) says ``COSTS DIFFER``: they would not be training
the same network on the same data.

Rows per cell: an epoch costs ``F = 6 x sum_l n_{l-1} n_l`` FLOP per example (forward,
and the two backward products per layer), so a cell gets ``rows = budget / F`` examples,
clamped to [min_rows, max_rows] and, for mini-batches, to at most ``max_updates`` batches
(at least one): every cell takes a bounded time, batch-1 cells train on fewer rows. The
defaults (full grid: 2 GFLOP, [8,192, 1,000,000] rows, 2,000 updates; ``--quick``: 0.2
GFLOP, [1,024, 100,000], 200) and each cell's rows are printed.

Each contender runs one warm-up epoch, then ``--rounds`` interleaved epochs (the order
rotates each round; each sample after gc and a 20 ms pause); the cells give medians. Per
cell: fit and torch seconds per epoch, torch / fit, fit's GFLOP/s (``F x rows / seconds``)
and its percentage of the large-GEMM rate measured in the same run (NumPy's ``matmul`` of
two 2048 x 2048 matrices on the same threads: sgemm for float32 cells, dgemm for float64),
measured before the cells (the percentages are of that rate) and again after them (a drift
check: a loaded machine shows there).

Threads are set explicitly, as in ``train_compare.py``: ``fo.set_num_threads``,
``torch.set_num_threads``, threadpoolctl for NumPy's BLAS, the CPU affinity. Each thread
count runs in a process of its own (``--threads 1 2`` runs this script once per count).

The summary: torch / fit min / median / max per hidden activation, the worst cell, and the
cells that miss issue 27's targets: every cell >= 1.5x torch or >= 70% of the GEMM rate,
none slower than torch, the median >= 3x torch; every cell with >= 4 MFLOP per update on
2 threads at >= 50% of the GEMM rate, and there tanh and sigmoid within 1.3x of the same
cell with relu.

    python benches/nn_grid.py --quick                    # a sample, under 2 minutes
    python benches/nn_grid.py --markdown --json grid.json  # the whole grid (about an hour)
    python benches/nn_grid.py --hidden tanh --shapes 100-1024-10 --batches 128 --threads 2
    python benches/nn_grid.py --list                     # the cells and their rows only
    python benches/nn_grid.py --quick --layers dropout batchnorm  # the regularized rows
    /work/peers/bin/python benches/nn_grid.py --quick    # with torch

A missing torch skips its contender with a line saying so (fit alone is still measured).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np

import ferroptim as fo

from _common import batch_sizes, fmt_s, he_init, import_peers, load_average, machine, setup_threads

LR = 1e-3
HIDDEN = ("relu", "tanh", "sigmoid", "leaky_relu")
# name -> (ferroptim's output, output width; None: the shape's own width)
OUTPUTS = {"sigmoid": ("sigmoid", 1), "softmax10": ("softmax", 10), "softmax100": ("softmax", 100),
           "identity": ("identity", None)}  # fmt: skip
DTYPES = ("float32", "float64")
SHAPES = ("3-16-1", "8-64-64-8", "32-256-256-256-1", "100-1024-10", "64-128-128-128-128-10")
BATCHES = (1, 32, 128, 512, 4096, None)  # None: all rows (batch gradient descent)
THREADS = (1, 2)
LAYERS = ("plain", "dropout", "batchnorm")  # the regularization of the hidden layers
DROPOUT = 0.2
GEMM_N = 2048
BIG_UPDATE = 4e6  # FLOP per update from which the 50%-of-GEMM target applies

# budget (FLOP per epoch), min_rows, max_rows, max_updates
SIZING = {"full": (2e9, 8_192, 1_000_000, 2_000), "quick": (2e8, 1_024, 100_000, 200)}
TARGETS = {"ratio": 1.5, "pct": 70.0, "median": 3.0, "big_pct": 50.0, "act": 1.3}


@dataclass
class Cell:
    """One cell: a network, its data's rows, a batch size and a thread count."""

    hidden: str
    output: str  # a key of OUTPUTS
    dtype: str
    shape: str  # a name in SHAPES
    batch: int | None
    threads: int
    rows: int = 0
    result: dict = field(default_factory=dict)
    layers: str = "plain"  # one of LAYERS

    @property
    def sizes(self) -> list:
        sizes = [int(s) for s in self.shape.split("-")]
        width = OUTPUTS[self.output][1]
        return sizes[:-1] + [width if width is not None else sizes[-1]]

    @property
    def flops_per_example(self) -> int:
        """6 x sum_l n_{l-1} n_l: the forward product and the two backward ones per layer."""
        s = self.sizes
        return 6 * sum(i * o for i, o in zip(s[:-1], s[1:]))

    @property
    def batch_rows(self) -> int:
        return self.rows if self.batch is None else min(self.batch, self.rows)

    @property
    def flops_per_update(self) -> int:
        return self.flops_per_example * self.batch_rows

    @property
    def updates(self) -> int:
        return len(batch_sizes(self.rows, self.batch_rows))

    def name(self, threads: bool = True) -> str:
        b = "all" if self.batch is None else str(self.batch)
        net = "-".join(map(str, self.sizes))
        extra = "" if self.layers == "plain" else f"+{self.layers}"
        return f"{self.hidden}/{self.output}/{self.dtype}/{net}{extra}/b{b}" + (
            f"/t{self.threads}" if threads else ""
        )

    def twin(self, hidden: str) -> tuple:
        """The key of the same cell with another hidden activation."""
        return (hidden, self.output, self.dtype, self.shape, self.batch, self.threads, self.layers)

    @property
    def key(self) -> tuple:
        return self.twin(self.hidden)


def rows_for(flops_per_example: int, batch: int | None, sizing: tuple) -> int:
    """``budget / F`` clamped to [min_rows, max_rows], then for mini-batches to at most
    ``max_updates`` batches and at least one."""
    budget, lo, hi, max_updates = sizing
    rows = int(min(max(budget / flops_per_example, lo), hi))
    if batch is not None:
        rows = max(min(rows, batch * max_updates), batch)
    return rows


def grid(args) -> list:
    """The cells to run: the whole grid or the quick sample, filtered by the options."""
    hidden, outputs = args.hidden or HIDDEN, args.outputs or list(OUTPUTS)
    dtypes, shapes = args.dtypes or DTYPES, args.shapes or SHAPES
    batches = [None if b == "all" else int(b) for b in args.batches] if args.batches else BATCHES
    if args.quick:
        sample = []
        for i, (h, o) in enumerate(itertools.product(HIDDEN, OUTPUTS)):
            d, s, b = DTYPES[(i + i // 4) % 2], SHAPES[i % len(SHAPES)], BATCHES[i % len(BATCHES)]
            if h in hidden and o in outputs and d in dtypes and s in shapes and b in batches:
                sample.append((h, o, d, s, b))
        combos = sample
    else:  # the activation innermost: the cells the 1.3x target compares run one after another
        combos = [
            (h, o, d, s, b) for o, d, s, b, h in itertools.product(outputs, dtypes, shapes, batches, hidden)
        ]
    sizing = sizing_of(args)
    cells = []
    for t in args.threads:
        for layers in args.layers:
            for h, o, d, s, b in combos:
                if layers == "batchnorm" and b == 1:  # one row cannot be normalized in training
                    continue
                cells.append(Cell(h, o, d, s, b, t, layers=layers))
                rows = rows_for(cells[-1].flops_per_example, b, sizing)
                if layers == "batchnorm" and b is not None and rows % b == 1:
                    rows -= 1  # no last batch of one row
                cells[-1].rows = rows
    if args.quick:  # the relu twin the 1.3x target compares with, right after its cell
        have = {c.key for c in cells}
        for i in range(len(cells) - 1, -1, -1):
            c = cells[i]
            if c.hidden != "relu" and c.flops_per_update >= BIG_UPDATE and c.twin("relu") not in have:
                cells.insert(
                    i + 1,
                    Cell("relu", c.output, c.dtype, c.shape, c.batch, c.threads, c.rows, layers=c.layers),
                )
                have.add(c.twin("relu"))
    return cells


def sizing_of(args) -> tuple:
    budget, lo, hi, upd = SIZING["quick" if args.quick else "full"]
    return (
        budget if args.budget is None else args.budget * 1e9,
        lo if args.min_rows is None else args.min_rows,
        hi if args.max_rows is None else args.max_rows,
        upd if args.max_updates is None else args.max_updates,
    )


# --- data and contenders --------------------------------------------------------------------


def make_data(cell: Cell, seed: int) -> tuple:
    """X (rows, n_0) ~ N(0, 1) of the cell's dtype, and targets from a random linear teacher
    ``z = X T`` (T ~ N(0, 9 / n_0)): sigmoid: (rows, 1) 0/1 with logistic noise; softmax:
    int64 labels ``argmax(z + Gumbel noise)`` (a softmax draw); identity: ``tanh(z)``
    (rows, k). Built in chunks of rows, so 100 classes never need a (rows, 100) float64."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(cell.dtype)
    sizes, rows = cell.sizes, cell.rows
    n, k = sizes[0], sizes[-1]
    X = rng.standard_normal((rows, n), dtype=dt)
    T = (rng.standard_normal((n, k)) * (3 / np.sqrt(n))).astype(dt)
    kind = OUTPUTS[cell.output][0]
    Y = np.empty(rows, np.int64) if kind == "softmax" else np.empty((rows, k), dt)
    for i in range(0, rows, 65_536):
        z = X[i : i + 65_536] @ T
        if kind == "sigmoid":
            Y[i : i + 65_536] = z + rng.logistic(size=z.shape) > 0
        elif kind == "softmax":
            Y[i : i + 65_536] = np.argmax(z + rng.gumbel(size=z.shape), axis=1)
        else:
            Y[i : i + 65_536] = np.tanh(z)
    return X, Y


class Fit:
    """``fo.nn.MLP`` + ``fo.Adam`` + ``model.fit(..., epochs=1)`` (the model keeps its epoch
    counter: each call trains the next shuffled epoch)."""

    def __init__(self, cell: Cell, X, Y, init, seed):
        self.model = fo.nn.MLP(
            cell.sizes, hidden=cell.hidden, output=OUTPUTS[cell.output][0], dtype=cell.dtype, seed=seed,
            dropout=DROPOUT if cell.layers == "dropout" else 0.0, batch_norm=cell.layers == "batchnorm",
        )  # fmt: skip
        for l, (W, b) in enumerate(init, start=1):
            self.model.params[f"W{l}"][...] = W
            if f"b{l}" in self.model.params:  # a batch-normalized layer has beta (0) instead
                self.model.params[f"b{l}"][...] = b
        self.opt = fo.Adam(self.model.params, lr=LR)
        self.X, self.Y, self.batch = X, Y, cell.batch
        self.sizes = np.asarray(batch_sizes(len(X), cell.batch_rows), dtype=np.float64)
        self.checked = False

    def cost(self) -> float:
        """The mean cost of all rows at the current weights."""
        return float(self.model.cost(self.X, self.Y))

    def epoch(self) -> tuple:
        start = time.perf_counter()
        history = self.model.fit(
            self.X, self.Y, self.opt, batch_size=self.batch, epochs=1, check_input=not self.checked
        )
        seconds = time.perf_counter() - start
        self.checked = True
        return seconds, float(history.costs @ self.sizes / len(self.X))


class Torch:
    """``nn.Sequential``, fused Adam, ``randperm`` + ``index_select``."""

    def __init__(self, cell: Cell, X, Y, init, seed, torch):
        self.torch = torch
        nn = torch.nn
        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
               "leaky_relu": lambda: nn.LeakyReLU(0.01)}[cell.hidden]  # fmt: skip
        dt = {"float32": torch.float32, "float64": torch.float64}[cell.dtype]
        layers = []
        for l, (W, b) in enumerate(init, start=1):
            hidden = l < len(init)
            norm = hidden and cell.layers == "batchnorm"
            lin = nn.Linear(*W.shape, bias=not norm, dtype=dt)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
                if not norm:
                    lin.bias.copy_(torch.from_numpy(b))
            layers.append(lin)
            if norm:
                layers.append(nn.BatchNorm1d(W.shape[1], momentum=0.1, eps=1e-5, dtype=dt))
            if hidden:
                layers.append(act())
            if hidden and cell.layers == "dropout":
                layers.append(nn.Dropout(DROPOUT))
        self.model = nn.Sequential(*layers)
        kind = OUTPUTS[cell.output][0]
        self.loss = {"sigmoid": nn.BCEWithLogitsLoss, "softmax": nn.CrossEntropyLoss, "identity": nn.MSELoss}[
            kind
        ]()
        self.cost_scale = 0.5 if kind == "identity" else 1.0  # MSELoss = 2 x ferroptim's cost
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR, fused=True)
        self.X, self.Y = torch.from_numpy(X), torch.from_numpy(Y)
        self.gen = torch.Generator().manual_seed(seed)
        self.batch = cell.batch_rows

    def cost(self) -> float:
        """In eval mode (no dropout; batch norm on its running statistics), as fit's cost."""
        self.model.eval()
        try:
            with self.torch.no_grad():
                return float(self.loss(self.model(self.X), self.Y)) * self.cost_scale
        finally:
            self.model.train()

    def epoch(self) -> tuple:
        torch = self.torch
        start = time.perf_counter()
        m, b = len(self.X), self.batch
        total = torch.zeros((), dtype=torch.float64)
        if b >= m:  # all rows: batch gradient descent on the data as it is
            batches = [(self.X, self.Y)]
        else:
            perm = torch.randperm(m, generator=self.gen)
            batches = (
                (self.X.index_select(0, idx), self.Y.index_select(0, idx))
                for idx in (perm[i : i + b] for i in range(0, m, b))
            )
        for xb, yb in batches:
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss(self.model(xb), yb)
            loss.backward()
            self.opt.step()
            total += loss.detach() * len(xb)
        cost = total.item() / m * self.cost_scale
        return time.perf_counter() - start, cost


class Jax:
    """JAX + optax: ``optax.adam``, the whole epoch (``jax.random.permutation``, the gather,
    forward, backward, the update) one jitted ``lax.scan`` over its batches, as
    ``train_compare.py``'s JAX contender; all rows: one jitted step on the data as it is.
    The identity cost is written as ferroptim's, ``0.5 * mean((z - y)^2)``."""

    def __init__(self, cell: Cell, X, Y, init, seed, jax, optax):
        jnp = jax.numpy
        self.jax = jax
        act = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid,
               "leaky_relu": lambda z: jax.nn.leaky_relu(z, 0.01)}[cell.hidden]  # fmt: skip
        kind = OUTPUTS[cell.output][0]
        self.params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in init]
        tx = optax.adam(LR)
        self.state = tx.init(self.params)
        self.X, self.Y = jax.device_put(X), jax.device_put(Y)
        self.key = jax.random.PRNGKey(seed)
        m, b = len(X), cell.batch_rows
        nb, rem = m // b, m % b

        def loss_fn(params, xb, yb):
            a = xb
            for W, bias in params[:-1]:
                a = act(a @ W + bias)
            z = a @ params[-1][0] + params[-1][1]
            if kind == "sigmoid":
                return optax.sigmoid_binary_cross_entropy(z, yb).mean()
            if kind == "softmax":
                return optax.softmax_cross_entropy_with_integer_labels(z, yb).mean()
            return 0.5 * jnp.mean((z - yb) ** 2)

        def step(carry, batch):
            params, state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        def epoch(params, state, key, X, Y):
            if nb == 1 and rem == 0:  # all rows
                carry, loss = step((params, state), (X, Y))
                return carry, loss
            perm = jax.random.permutation(key, m)
            carry, losses = jax.lax.scan(
                lambda c, idx: step(c, (X[idx], Y[idx])), (params, state), perm[: nb * b].reshape(nb, b)
            )
            total = losses.sum() * b
            if rem:
                idx = perm[nb * b :]
                carry, last = step(carry, (X[idx], Y[idx]))
                total = total + last * rem
            return carry, total / m

        self.epoch_fn = jax.jit(epoch, donate_argnums=(0, 1))
        self.loss_fn = jax.jit(loss_fn)

    def cost(self) -> float:
        return float(self.loss_fn(self.params, self.X, self.Y))

    def epoch(self) -> tuple:
        jax = self.jax
        start = time.perf_counter()
        self.key, sub = jax.random.split(self.key)
        (self.params, self.state), cost = self.epoch_fn(self.params, self.state, sub, self.X, self.Y)
        cost = float(jax.block_until_ready(cost))
        return time.perf_counter() - start, cost


def gemm_rate(dtype: str, n: int = GEMM_N, reps: int = 5) -> float:
    """GFLOP/s of NumPy's ``matmul`` of two n x n matrices (2 n^3 FLOP), the best of ``reps``
    after one warm-up, on the threads threadpoolctl set."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    c = np.empty((n, n), dtype)
    np.matmul(a, b, out=c)
    best = math.inf
    for _ in range(reps):
        start = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def run_cell(cell: Cell, rounds: int, peers: dict, gemm: dict, seed: int = 0) -> dict:
    X, Y = make_data(cell, seed)
    init = he_init(cell.sizes, seed, np.dtype(cell.dtype))
    runners = {}
    if hasattr(fo, "nn"):
        runners["fit"] = Fit(cell, X, Y, init, seed)
    if "torch" in peers:
        runners["torch"] = Torch(cell, X, Y, init, seed, peers["torch"])
    if "jax" in peers and cell.layers == "plain":
        runners["jax"] = Jax(cell, X, Y, init, seed, peers["jax"], peers["optax"])
    times = {key: [] for key in runners}
    initial = {key: r.cost() for key, r in runners.items()}  # the same weights, data and cost?
    warmup = {key: r.epoch()[1] for key, r in runners.items()}
    last = dict(warmup)
    order = list(runners)
    for k in range(rounds):
        for key in order[k % len(order) :] + order[: k % len(order)]:
            gc.collect()
            time.sleep(0.02)  # let the previous contender's spinning threads park
            seconds, last[key] = runners[key].epoch()
            times[key].append(seconds)
    r = {key: statistics.median(t) for key, t in times.items()}
    out = {
        "fit_s": r.get("fit"),
        "torch_s": r.get("torch"),
        "jax_s": r.get("jax"),
        "times": times,
        "initial_cost": initial,
        "warmup_cost": warmup,
        "final_cost": last,
    }
    out["ratio"] = r["torch"] / r["fit"] if "fit" in r and "torch" in r else None
    out["jax_ratio"] = r["jax"] / r["fit"] if "fit" in r and "jax" in r else None
    if "fit" in r:
        out["gflops"] = cell.flops_per_example * cell.rows / r["fit"] / 1e9
        out["pct_gemm"] = 100 * out["gflops"] / gemm[cell.dtype]
    else:
        out["gflops"] = out["pct_gemm"] = None
    return out


# --- printing ---------------------------------------------------------------------------------

HEADER = (
    f"{'hidden/output/dtype/network/batch':<50} {'rows':>9} {'updates':>7} {'MFLOP/upd':>9}"
    f" {'fit':>9} {'torch':>9} {'torch/fit':>9} {'GFLOP/s':>8} {'% gemm':>6}  [JAX s/epoch (JAX/fit)]  cost warm-up -> last (fit, torch, JAX)"
)


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}x"


def cell_line(c: Cell) -> str:
    r = c.result
    g = "—" if r["gflops"] is None else f"{r['gflops']:.1f}"
    p = "—" if r["pct_gemm"] is None else f"{r['pct_gemm']:.0f}%"
    costs = ", ".join(f"{r['warmup_cost'][k]:.4g} -> {r['final_cost'][k]:.4g}" for k in r["warmup_cost"])
    first = r["initial_cost"].get("fit")
    if first is not None and any(
        not math.isclose(v, first, rel_tol=1e-3) for v in r["initial_cost"].values()
    ):  # a peer that does not train the same network on the same data
        costs += "  COSTS DIFFER at the initial weights: " + ", ".join(
            f"{k} {v:.6g}" for k, v in r["initial_cost"].items()
        )
    if r["jax_s"] is not None:
        costs = f"JAX {fmt_s(r['jax_s'])} ({fmt_ratio(r['jax_ratio'])})  " + costs
    return (
        f"{c.name(threads=False):<50} {c.rows:>9,} {c.updates:>7,} {c.flops_per_update / 1e6:>9.3g}"
        f" {fmt_s(r['fit_s']):>9} {fmt_s(r['torch_s']):>9} {fmt_ratio(r['ratio']):>9} {g:>8} {p:>6}  {costs}"
    )


def summarize(cells: list) -> dict:
    """Per (threads, hidden): torch / fit min / median / max; the worst cell; the cells that
    miss each target (a target is None where nothing it needs was measured)."""
    rated = [c for c in cells if c.result.get("ratio") is not None]
    per = {}
    for t in sorted({c.threads for c in cells}):
        for h in HIDDEN:
            group = [c.result for c in cells if c.threads == t and c.hidden == h and c.result["fit_s"]]
            if not group:
                continue
            rs = [r["ratio"] for r in group if r["ratio"] is not None]
            js = [r["jax_ratio"] for r in group if r.get("jax_ratio") is not None]
            per[f"{h}, {t} thread{'s' if t > 1 else ''}"] = {
                "cells": len(group),
                "min": min(rs, default=None),
                "median": statistics.median(rs) if rs else None,
                "max": max(rs, default=None),
                "jax_median": statistics.median(js) if js else None,
                "pct_gemm_median": statistics.median(r["pct_gemm"] for r in group),
            }
    worst = min(rated, key=lambda c: c.result["ratio"], default=None)
    jaxed = [c for c in cells if c.result.get("jax_ratio") is not None]
    worst_jax = min(jaxed, key=lambda c: c.result["jax_ratio"], default=None)
    by_key = {c.key: c for c in cells}
    misses = {}
    T = TARGETS
    if rated:
        misses["every cell >= 1.5x torch or >= 70% of the GEMM rate"] = [
            c.name() for c in rated if c.result["ratio"] < T["ratio"] and c.result["pct_gemm"] < T["pct"]
        ]
        misses["no cell slower than torch"] = [c.name() for c in rated if c.result["ratio"] < 1]
        median = statistics.median(c.result["ratio"] for c in rated)
        misses[f"median cell >= 3x torch (median {median:.2f}x)"] = (
            [] if median >= T["median"] else ["median"]
        )
    for layers in LAYERS[1:]:
        extra = [c for c in rated if c.layers == layers]
        if extra:
            rs = sorted(c.result["ratio"] for c in extra)
            misses[f"{layers} rows >= 1.5x torch (min {rs[0]:.2f}x, median {statistics.median(rs):.2f}x)"] = [
                f"{c.name()} ({c.result['ratio']:.2f}x)" for c in extra if c.result["ratio"] < T["ratio"]
            ]
    big = [c for c in cells if c.threads == 2 and c.flops_per_update >= BIG_UPDATE and c.result["fit_s"]]
    if big:
        misses[">= 4 MFLOP per update (2 threads): >= 50% of the GEMM rate"] = [
            f"{c.name()} ({c.result['pct_gemm']:.0f}%)" for c in big if c.result["pct_gemm"] < T["big_pct"]
        ]
        pairs = [(c, by_key.get(c.twin("relu"))) for c in big if c.hidden in ("tanh", "sigmoid")]
        pairs = [(c, r) for c, r in pairs if r is not None and r.result["fit_s"]]
        if pairs:
            misses["there, tanh and sigmoid within 1.3x of relu's time"] = [
                f"{c.name()} ({c.result['fit_s'] / r.result['fit_s']:.2f}x relu)"
                for c, r in pairs
                if c.result["fit_s"] > T["act"] * r.result["fit_s"]
            ]
    return {
        "per_activation": per,
        "worst": None if worst is None else {"cell": worst.name(), "ratio": worst.result["ratio"]},
        "worst_jax": None
        if worst_jax is None
        else {"cell": worst_jax.name(), "ratio": worst_jax.result["jax_ratio"]},
        "misses": misses,
        "cells": len(cells),
        "rated": len(rated),
    }


def per_activation_rows(s: dict) -> tuple:
    """The per-activation table's header and rows (a JAX column only where JAX ran)."""
    jax = any(v["jax_median"] is not None for v in s["per_activation"].values())
    head = ["hidden, threads", "cells", "torch / fit min", "median", "max"]
    head += ["JAX / fit median"] if jax else []
    head += ["fit's median % of GEMM rate"]
    rows = []
    for name, v in s["per_activation"].items():
        row = [name, str(v["cells"]), fmt_ratio(v["min"]), fmt_ratio(v["median"]), fmt_ratio(v["max"])]
        row += [fmt_ratio(v["jax_median"])] if jax else []
        rows.append([*row, f"{v['pct_gemm_median']:.0f}%"])
    return head, rows


def print_summary(s: dict, limit: int) -> None:
    print(f"\nSummary: {s['cells']} cells, {s['rated']} with both fit and torch")
    head, rows = per_activation_rows(s)
    if rows:
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        for r in [head, *rows]:
            print(
                "  "
                + "  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths)))
            )
    if s["worst"]:
        print(f"  worst cell: {s['worst']['cell']} at {s['worst']['ratio']:.2f}x torch")
    if s["worst_jax"]:
        print(f"  worst cell against JAX: {s['worst_jax']['cell']} at {s['worst_jax']['ratio']:.2f}x JAX")
    for target, missed in s["misses"].items():
        print(f"  target: {target}: " + ("met" if not missed else f"MISSED by {len(missed)} cell(s)"))
        for name in missed[:limit]:
            print(f"    {name}")
        if len(missed) > limit:
            print(f"    ... and {len(missed) - limit} more (all in --json)")


def print_markdown(s: dict, machine_line: str, command: str) -> None:
    head, rows = per_activation_rows(s)
    print("\n| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if s["worst"]:
        print(f"\nWorst cell: `{s['worst']['cell']}` at {s['worst']['ratio']:.2f}x torch.")
    if s["worst_jax"]:
        print(f"Worst cell against JAX: `{s['worst_jax']['cell']}` at {s['worst_jax']['ratio']:.2f}x JAX.")
    for target, missed in s["misses"].items():
        print(f"- {target}: " + ("met" if not missed else f"missed by {len(missed)} cell(s)"))
    print(f"\n{machine_line}; `{command}`")


# --- running ----------------------------------------------------------------------------------


def child_argv(args, threads: int, path: str) -> list:
    """This run's options for one thread count, its cells written to ``path``."""
    argv = ["--threads", str(threads), "--json", path, "--rounds", str(args.rounds), "--cells-only"]
    argv += ["--quick"] if args.quick else []
    argv += ["--no-jax"] if args.no_jax else []
    for name in ("hidden", "outputs", "dtypes", "shapes", "batches", "layers"):
        if getattr(args, name):
            argv += [f"--{name}", *getattr(args, name)]
    for name in ("budget", "min_rows", "max_rows", "max_updates"):
        if getattr(args, name) is not None:
            argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return argv


def run_one_thread_count(args, cells: list) -> dict:
    """Runs ``cells`` (all of one thread count) in this process; prints each as it ends."""
    threads = args.threads[0]
    notes = setup_threads(threads)
    peers = import_peers(threads, notes, wanted=("torch",) if args.no_jax else ("torch", "jax"))
    if "jax" in peers:
        peers["jax"].config.update("jax_enable_x64", True)  # float64 cells; float32 ones stay float32
    machine_line = machine(peers, threads)
    print(f"Machine: {machine_line}")
    print(
        f"Threads: {threads} for every contender (fo.set_num_threads, torch.set_num_threads, "
        "threadpoolctl, CPU affinity)"
    )
    for note in notes:
        print(f"  {note}")
    print(
        f"One shuffled epoch, Adam lr {LR:g}; warm-up epoch, then median of {args.rounds} interleaved rounds"
    )
    gemm = {d: gemm_rate(d) for d in DTYPES}
    print(
        f"GEMM rate before the cells ({GEMM_N}^3, NumPy, {threads} threads): "
        f"sgemm {gemm['float32']:.1f} GFLOP/s, dgemm {gemm['float64']:.1f} GFLOP/s"
    )
    print(HEADER, flush=True)
    for c in cells:
        c.result = run_cell(c, args.rounds, peers, gemm)
        print(cell_line(c), flush=True)
    after = {d: gemm_rate(d) for d in DTYPES}
    print(
        f"GEMM rate after the cells: sgemm {after['float32']:.1f} GFLOP/s, dgemm {after['float64']:.1f} GFLOP/s"
        " (the cells' percentages are of the rate before them)"
    )
    return {
        "threads": threads,
        "machine": machine_line,
        "notes": notes,
        "gemm_before": gemm,
        "gemm_after": after,
        "cells": [asdict(c) for c in cells],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a sample of the grid (under 2 minutes)")
    ap.add_argument("--hidden", nargs="+", choices=HIDDEN)
    ap.add_argument("--outputs", nargs="+", choices=list(OUTPUTS))
    ap.add_argument("--dtypes", nargs="+", choices=DTYPES)
    ap.add_argument("--shapes", nargs="+", choices=SHAPES, help="named with their identity output width")
    ap.add_argument("--batches", nargs="+", choices=[*(str(b) for b in BATCHES if b), "all"])
    ap.add_argument("--threads", nargs="+", type=int, help="default 1 2 (quick: 2)")
    ap.add_argument(
        "--layers", nargs="+", choices=LAYERS, default=["plain"],
        help="plain, dropout (0.2) and/or batchnorm rows (default plain)",
    )  # fmt: skip
    ap.add_argument("--rounds", type=int, default=3, help="timed epochs per contender (>= 3, default 3)")
    ap.add_argument("--budget", type=float, help="GFLOP per epoch (default 2, quick 0.2)")
    ap.add_argument("--min-rows", type=int, help="default 8192 (quick 1024)")
    ap.add_argument("--max-rows", type=int, help="default 1,000,000 (quick 100,000)")
    ap.add_argument("--max-updates", type=int, help="batches per epoch at most (default 2000, quick 200)")
    ap.add_argument("--no-jax", action="store_true", help="leave JAX out (it compiles every cell: seconds)")
    ap.add_argument("--list", action="store_true", help="print the cells and their rows, run nothing")
    ap.add_argument("--markdown", action="store_true", help="also print the summary table for the README")
    ap.add_argument("--json", metavar="PATH", help="write every cell to PATH")
    ap.add_argument("--limit", type=int, default=40, help="cells listed per missed target (default 40)")
    ap.add_argument("--cells-only", action="store_true", help=argparse.SUPPRESS)  # one thread count's child
    args = ap.parse_args(argv)
    if args.rounds < 3:
        ap.error("--rounds must be >= 3 (a median of at least three)")
    args.threads = args.threads or ([2] if args.quick else list(THREADS))
    if min(args.threads) < 1:
        ap.error("--threads must be >= 1")
    for name in ("budget", "min_rows", "max_rows", "max_updates"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            ap.error(f"--{name.replace('_', '-')} must be > 0")

    cells = grid(args)
    if args.list:
        for c in cells:
            print(
                f"{c.name():<55} rows {c.rows:>9,}  updates {c.updates:>6,}  "
                f"{c.flops_per_example * c.rows / 1e9:.3g} GFLOP/epoch"
            )
        print(f"{len(cells)} cells")
        return 0
    if args.cells_only:
        run = run_one_thread_count(args, cells)
        with open(args.json, "w") as f:
            json.dump(run, f)
        return 0

    load = load_average()
    print(f"1/5/15-min load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{len(cells)} cells; rows per cell: {rows_rule(sizing_of(args))}", flush=True)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in args.threads:
            path = os.path.join(tmp, f"threads{t}.json")
            print(f"\n== {t} thread{'s' if t > 1 else ''} ==", flush=True)
            done = subprocess.run([sys.executable, os.path.abspath(__file__), *child_argv(args, t, path)])
            if done.returncode:
                print(f"the run on {t} threads failed (exit {done.returncode})")
                return done.returncode
            with open(path) as f:
                runs.append(json.load(f))
    after = load_average()
    print(f"\n1/5/15-min load average after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
    done_cells = []
    for run in runs:
        for d in run["cells"]:
            done_cells.append(Cell(**d))
    summary = summarize(done_cells)
    print_summary(summary, args.limit)
    command = "python benches/nn_grid.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.markdown:
        machine_line = " / ".join(dict.fromkeys(run["machine"] for run in runs))
        print_markdown(
            summary,
            f"{machine_line}; load average {load[0]:.2f} before, {after[0]:.2f} after",
            command.strip(),
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "command": command.strip(),
                    "rounds": args.rounds,
                    "sizing": dict(
                        zip(("budget_flop", "min_rows", "max_rows", "max_updates"), sizing_of(args))
                    ),
                    "load_before": load,
                    "load_after": after,
                    "runs": runs,
                    "summary": summary,
                },
                f,
                indent=1,
            )
    return 0


def rows_rule(sizing: tuple) -> str:
    budget, lo, hi, upd = sizing
    return (
        f"{budget / 1e9:g} GFLOP per epoch / (6 x sum n_(l-1) n_l FLOP per example), "
        f"clamped to [{lo:,}, {hi:,}], at most {upd:,} batches (at least one)"
    )


if __name__ == "__main__":
    sys.exit(main())
