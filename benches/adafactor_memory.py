"""The optimizer state Adafactor saves against Adam on a 100M-parameter set of matrices.

``--matrices`` float32 matrices of ``--rows`` x ``--cols`` (25 of 2000 x 2000 = 100M
parameters by default) take one step of ``fo.Adam`` and of ``fo.Adafactor`` (and of torch's
``Adam`` and ``Adafactor`` where torch is installed). For each the table gives the bytes of
the optimizer's state (the sum of its arrays' ``nbytes``: Adam keeps ``exp_avg`` and
``exp_avg_sq``, 2 x 4 bytes per parameter; Adafactor keeps a row and a column average per
matrix, ``rows + cols`` values) and the growth of the process's resident memory from
before the optimizer to after its first step (each optimizer in a fresh process, after a
step on a small matrix has loaded its library's kernels), then the time of one more step
(best of ``--rounds``) with the load average.
Run: ``python benches/adafactor_memory.py`` (about 3 GB of memory at the default size).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import subprocess
import sys
import time

import numpy as np

import ferroptim as fo


def _resident_bytes() -> int:
    """The process's resident memory now (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _state_bytes(state) -> int:
    """The bytes of every array (NumPy or torch) in a ``{index: {name: value}}`` state."""
    total = 0
    for slots in state.values():
        for v in slots.values():
            total += v.nbytes if hasattr(v, "nbytes") else 0
    return total


def _run(make, step, rounds: int) -> tuple[int, int, float]:
    """(state bytes, resident memory growth from before the optimizer to after its first
    step, best time of a further step)."""
    gc.collect()  # the previous row's optimizer, freed before this one is measured
    before = _resident_bytes()
    opt = make()
    step(opt)
    grown = _resident_bytes() - before
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        step(opt)
        best = min(best, time.perf_counter() - t)
    state = opt.state if isinstance(opt.state, dict) else dict(enumerate(opt.state))
    if not isinstance(next(iter(state), 0), int):  # torch keys its state by tensor
        state = dict(enumerate(state.values()))
    return _state_bytes(state), grown, best


ROWS = ["ferroptim Adam", "ferroptim Adafactor", "torch Adam (foreach)", "torch Adafactor"]


def _one_row(a: argparse.Namespace, name: str) -> str:
    """The table's line for optimizer ``name``, measured in this process."""
    rng = np.random.default_rng(0)
    shape = (a.rows, a.cols)
    params = [rng.standard_normal(shape, dtype=np.float32) for _ in range(a.matrices)]
    grads = [rng.standard_normal(shape, dtype=np.float32) for _ in range(a.matrices)]
    n = sum(p.size for p in params)
    if name.startswith("ferroptim"):
        cls, lr = (fo.Adam, 1e-3) if "Adam" in name else (fo.Adafactor, 1e-2)
        cls([np.ones((4, 3), np.float32)], lr=lr).step([np.ones((4, 3), np.float32)])  # warm-up
        state, grown, best = _run(lambda: cls(params, lr=lr), lambda o: o.step(grads), a.rounds)
    else:
        import torch

        def make_torch(tensors):
            if "Adam" in name:
                return torch.optim.Adam(tensors, lr=1e-3, foreach=True)
            return torch.optim.Adafactor(tensors, lr=1e-2)

        small = torch.ones((4, 3), requires_grad=True)
        small.grad = torch.ones((4, 3))
        make_torch([small]).step()  # warm-up
        tparams = [torch.from_numpy(p).requires_grad_() for p in params]
        for p, g in zip(tparams, grads):
            p.grad = torch.from_numpy(g)
        state, grown, best = _run(lambda: make_torch(tparams), lambda o: o.step(), a.rounds)
    return (
        f"{name:<22} {state / 1e6:>9.2f} MB {state / n:>12.4f} B {grown / 1e6:>9.0f} MB {best * 1e3:>7.1f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrices", type=int, default=25)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--cols", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--row", choices=ROWS, help=argparse.SUPPRESS)  # one row, in a child process
    a = ap.parse_args()
    if a.row:
        print(_one_row(a, a.row))
        return
    n = a.matrices * a.rows * a.cols
    print(f"{a.matrices} float32 matrices of {a.rows} x {a.cols}: {n:,} parameters ({n * 4 / 1e6:,.0f} MB)")
    rows = ROWS
    if importlib.util.find_spec("torch") is None:
        print("(torch is not installed: its rows are left out)")
        rows = [r for r in ROWS if r.startswith("ferroptim")]
    print(f"{'optimizer':<22} {'state':>12} {'per parameter':>14} {'resident +':>12} {'step':>9}")
    args = [
        "--matrices",
        str(a.matrices),
        "--rows",
        str(a.rows),
        "--cols",
        str(a.cols),
        "--rounds",
        str(a.rounds),
    ]
    for name in rows:
        # each optimizer in a fresh process: the memory another one freed cannot hide its growth
        done = subprocess.run(
            [sys.executable, __file__, *args, "--row", name], capture_output=True, text=True
        )
        if done.returncode:
            raise SystemExit(f"{name}: {done.stderr.strip()}")
        print(done.stdout.strip(), flush=True)
    print("load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
