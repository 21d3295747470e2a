"""The optimizer step alone through ferroptim.torch, against torch.optim's fused and foreach
steps on the same parameters (nn.Parameters with their .grad set once), all in one process,
alternating round by round so each sees the same machine state, each sample after a 20 ms
pause that lets the other's spinning worker threads park. Needs torch.

    python benches/torch_adapter.py [--rounds 15] [--threads N] [--big]

Prints, per parameter set and optimizer, the median time per step of each contender and
torch's median over ferroptim.torch's (> 1: ferroptim.torch is faster), and the load
average before and after. ``--big`` adds one 100M-parameter tensor (about 2 GB per
contender with Adam's state).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from _common import load_average, machine, setup_threads

SETS = {
    "85K: MLP 64-256-256-10": [(256, 64), (256,), (256, 256), (256,), (10, 256), (10,)],
    "670K: MLP 784-512-512-10": [(512, 784), (512,), (512, 512), (512,), (10, 512), (10,)],
}
BIG = {"100M: one tensor": [(100_000_000,)]}
OPTIMIZERS = {
    "Adam": ("Adam", {"lr": 1e-3}),
    "AdamW": ("AdamW", {"lr": 1e-3}),
    "SGD-momentum": ("SGD", {"lr": 1e-3, "momentum": 0.9}),
}


def params_with_grads(torch, shapes, seed):
    rng = np.random.default_rng(seed)
    ps = []
    for s in shapes:
        p = torch.nn.Parameter(torch.from_numpy(rng.standard_normal(s, dtype=np.float32)))
        p.grad = torch.from_numpy(rng.standard_normal(s, dtype=np.float32) * 1e-2)
        ps.append(p)
    return ps


def contenders(torch, fot, shapes, name, h):
    """(label, step function) for each contender, each over its own copy of the parameters."""
    out = [("ferroptim.torch", getattr(fot, name)(params_with_grads(torch, shapes, 0), **h).step)]
    if name != "SGD":
        opt = getattr(fot, name)(params_with_grads(torch, shapes, 0), state_dtype="bfloat16", **h)
        out.append(("ferroptim.torch bf16 state", opt.step))
    for kernel in ("fused", "foreach"):
        try:
            opt = getattr(torch.optim, name)(params_with_grads(torch, shapes, 0), **{kernel: True}, **h)
            opt.step()
        except (RuntimeError, ValueError) as e:  # a torch without this kernel on CPU
            print(f"  torch {kernel} {name}: not available ({e})")
            continue
        out.append((f"torch {kernel}", opt.step))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--big", action="store_true", help="add the 100M-parameter set")
    args = ap.parse_args()
    setup_threads(args.threads)
    import torch

    import ferroptim.torch as fot

    torch.set_num_threads(args.threads)
    before = load_average()
    print(machine({"torch": torch, "blas": "n/a"}, args.threads))
    print(f"load average before: {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}")
    sets = {**SETS, **(BIG if args.big else {})}
    for set_name, shapes in sets.items():
        for opt_name, (name, h) in OPTIMIZERS.items():
            runners = contenders(torch, fot, shapes, name, h)
            for _, f in runners:
                f()
            t0 = time.perf_counter()
            runners[0][1]()
            # about 50 ms of ferroptim.torch's steps per sample
            calls = max(1, int(0.05 / max(time.perf_counter() - t0, 1e-7)))
            for _, f in runners:
                for _ in range(min(calls, 20)):
                    f()
            times: dict[str, list] = {label: [] for label, _ in runners}
            for _ in range(args.rounds):
                for label, f in runners:
                    time.sleep(0.02)
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        f()
                    times[label].append((time.perf_counter() - t0) / calls)
            med = {k: statistics.median(v) for k, v in times.items()}
            ours = med["ferroptim.torch"]
            cells = "  ".join(
                f"{k} {v * 1e6:8.1f} µs" + ("" if k == "ferroptim.torch" else f" ({v / ours:4.2f}x)")
                for k, v in med.items()
            )
            print(f"{set_name:26} {opt_name:13} {cells}", flush=True)
    after = load_average()
    print(f"load average after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
    print("(x): that contender's median time over ferroptim.torch's; > 1 means ferroptim.torch is faster")


if __name__ == "__main__":
    main()
