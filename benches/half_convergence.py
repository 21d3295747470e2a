"""Does bfloat16 (or float16) optimizer state train as well as float32 state?

On the demo's two tasks -- the spirals (2-32-32-1, Adam lr 3e-3, batch 512) and the
course's preset (moons, [2, 5, 2, 1], Adam lr0 = 0.01 with the course's staircase decay,
batch 64, 5000 epochs) -- this trains the same network from the same initialisation on the
same batches with each state dtype, for several seeds, and prints the held-out accuracy of
each run, the mean and standard deviation over seeds, and the mean difference to float32
state with its spread. Rounding is to nearest even (no stochastic rounding): if the
difference is inside the seed-to-seed spread, that rounding is enough.

Run: ``python benches/half_convergence.py`` (``--quick``: 3 seeds and smaller runs).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import ferroptim as fo
from ferroptim.demo import data
from ferroptim.nn import MLP

STATE_DTYPES = ("float32", "bfloat16")


def spirals(seed: int, state_dtype: str, m: int, epochs: int) -> float:
    X, Y = data.spirals(m, seed)
    Xt, Yt = data.spirals(50_000, seed + 10_000)
    model = MLP([2, 32, 32, 1], hidden="relu", output="sigmoid", dtype=np.float32, seed=seed)
    opt = fo.Adam(model.params, lr=3e-3, state_dtype=state_dtype)
    model.fit(X, Y, opt, batch_size=512, epochs=epochs, seed=seed)
    return model.score(Xt, Yt)


def course(seed: int, state_dtype: str, epochs: int) -> float:
    X, Y = data.moons(300, seed)
    Xt, Yt = data.moons(10_000, seed + 10_000)
    model = MLP([2, 5, 2, 1], hidden="relu", output="sigmoid", dtype=np.float32, seed=seed)
    updates_per_epoch = -(-300 // 64)
    lr = fo.schedules.InverseTimeDecay(0.01, 1.0, 1000 * updates_per_epoch, True)
    opt = fo.Adam(model.params, lr=lr, state_dtype=state_dtype)
    model.fit(X, Y, opt, batch_size=64, epochs=epochs, seed=seed)
    return model.score(Xt, Yt)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=None)
    args = ap.parse_args(argv)
    seeds = range(args.seeds or (3 if args.quick else 8))
    tasks = {
        "spirals": lambda s, d: spirals(
            s, d, m=50_000 if args.quick else 200_000, epochs=5 if args.quick else 40
        ),
        "course": lambda s, d: course(s, d, epochs=1000 if args.quick else 5000),
    }
    for name, run in tasks.items():
        t0 = time.perf_counter()
        acc = {d: [run(s, d) for s in seeds] for d in STATE_DTYPES}
        diff = [b - a for a, b in zip(acc["float32"], acc["bfloat16"])]
        print(f"{name} ({len(seeds)} seeds, {time.perf_counter() - t0:.0f} s):")
        for d in STATE_DTYPES:
            runs = " ".join(f"{a:.4f}" for a in acc[d])
            print(
                f"  {d:9s} state: {statistics.mean(acc[d]):.4f} ± {statistics.stdev(acc[d]):.4f}   [{runs}]"
            )
        print(f"  bfloat16 - float32: {statistics.mean(diff):+.4f} ± {statistics.stdev(diff):.4f} (per seed)")


if __name__ == "__main__":
    main()
