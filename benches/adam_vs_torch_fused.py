"""ferroptim Adam against torch's fused Adam, head to head: only these two, alternating
round by round in one process, so both see the same machine state, each sample after a
20 ms pause that lets the other's spinning worker threads (torch's OpenMP, our pool) park.
Needs torch.

    python benches/adam_vs_torch_fused.py [--rounds 15]

Prints, per parameter set, the median and minimum time per step of each and the ratio of
the medians (float32, all cores).
"""

import argparse
import os
import statistics
import time

import numpy as np
import torch

import ferroptim as fo

SETS = {
    "1x100M": [(100_000_000,)],
    "MLP 784-512-512-10": [(512, 784), (512,), (512, 512), (512,), (10, 512), (10,)],
    "MLP 64-256-256-10": [(256, 64), (256,), (256, 256), (256,), (10, 256), (10,)],
    "net [2,5,2,1]": [(5, 2), (5, 1), (2, 5), (2, 1), (1, 2), (1, 1)],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    print(
        f"ferroptim {fo.__version__} ({fo.simd_level()}, {fo.get_num_threads()} threads), "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    for name, shapes in SETS.items():
        ps = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        gs = [rng.standard_normal(s, dtype=np.float32) * 1e-2 for s in shapes]
        opt = fo.Adam(ps, lr=1e-3)
        tps = [torch.from_numpy(p.copy()).requires_grad_() for p in ps]
        for tp, g in zip(tps, gs):
            tp.grad = torch.from_numpy(g.copy())
        topt = torch.optim.Adam(tps, lr=1e-3, fused=True)
        n = sum(p.size for p in ps)
        calls = 20000 if n < 100 else 1000 if n < 100_000 else 200 if n < 10_000_000 else 2
        runners = (("ferroptim", lambda: opt.step(gs)), ("torch fused", topt.step))
        for _, f in runners:
            for _ in range(min(calls, 50)):
                f()
        times = {label: [] for label, _ in runners}
        for _ in range(args.rounds):
            for label, f in runners:
                time.sleep(0.02)
                t0 = time.perf_counter()
                for _ in range(calls):
                    f()
                times[label].append((time.perf_counter() - t0) / calls)
        a, b = (statistics.median(times[k]) for k in ("ferroptim", "torch fused"))

        def us(t):
            return f"{t * 1e6:9.1f} µs"

        print(
            f"{name:20} ferroptim {us(a)} (min {us(min(times['ferroptim']))})  "
            f"torch fused {us(b)} (min {us(min(times['torch fused']))})  torch/ferroptim {b / a:4.1f}x"
        )


if __name__ == "__main__":
    main()
