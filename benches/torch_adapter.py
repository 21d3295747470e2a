"""ferroptim.torch against torch.optim's fused and foreach kernels, in one process. Needs torch.

Two parts (``--what``):

- **steps**: the optimizer step alone on the same parameters (nn.Parameters with their
  .grad set once), alternating round by round so each contender sees the same machine
  state, each sample after a 20 ms pause that lets the other's spinning worker threads
  park. Prints, per parameter set and optimizer, the median time per step of each
  contender. ``--big`` adds one 100M-parameter tensor (about 2 GB per contender with
  Adam's state).
- **loops**: whole torch training epochs where only the optimizer differs: the README's
  W1-W4 networks (benches/train_compare.py's workloads: data, sizes, batch sizes and
  He-initialised weights; its torch contender's ``nn.Sequential``, ``randperm`` +
  ``index_select`` loop) trained by ``ferroptim.torch.Adam``, ``torch.optim.Adam(fused=True)``
  and ``torch.optim.Adam(foreach=True)`` at lr 1e-3, float32. Three sets of the three
  models, each set built in a rotated order (where a model lies in memory moves its epoch by
  a few percent), one warm-up epoch each, then ``--loop-rounds`` interleaved epochs (round k
  runs set k mod 3 in its order; gc and a 20 ms pause before each). Each epoch also sums the time spent in ``opt.step()`` (two clock reads per
  update), so the table shows what the step is of the epoch and what the epoch would cost
  with a free step, the bound on any optimizer's gain.

    python benches/torch_adapter.py                         # steps, then the four loops
    python benches/torch_adapter.py --what steps --big      # with the 100M-parameter set
    python benches/torch_adapter.py --what loops --workloads W1 --markdown

Ratios are torch's median over ferroptim.torch's from the same run (> 1: ferroptim.torch is
faster); the load average is printed before and after each part.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

import numpy as np
from train_compare import LR, WORKLOADS, Torch

from _common import fmt_s, he_init, load_average, machine, setup_threads

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


def run_steps(torch, fot, sets: dict, rounds: int) -> None:
    """The step-alone table: one line per parameter set and optimizer."""
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
            for _ in range(rounds):
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
            bf16 = med.get("ferroptim.torch bf16 state")
            if bf16 and "torch fused" in med:
                cells += f"  [torch fused / bf16 state: {med['torch fused'] / bf16:.2f}x]"
            print(f"{set_name:26} {opt_name:13} {cells}", flush=True)
            del runners
            gc.collect()


# --- whole training loops: only the optimizer differs ------------------------------------

LOOP_CONTENDERS = {
    "ferroptim.torch": lambda torch, fot, params: fot.Adam(params, lr=LR),
    "torch fused": lambda torch, fot, params: torch.optim.Adam(params, lr=LR, fused=True),
    "torch foreach": lambda torch, fot, params: torch.optim.Adam(params, lr=LR, foreach=True),
}


class TorchLoop(Torch):
    """benches/train_compare.py's torch contender (its ``nn.Sequential``, loss, data and
    ``randperm`` + ``index_select`` batches, the same generator seed) with the optimizer
    ``make_opt(parameters)``; ``epoch`` also returns the seconds spent in ``opt.step()``."""

    def __init__(self, w, X, y, init, seed, torch, make_opt):
        super().__init__(w, X, y, init, seed, torch)
        self.opt = make_opt(self.model.parameters())

    def epoch(self):
        torch = self.torch
        clock = time.perf_counter
        start = clock()
        m, b = len(self.X), self.batch
        perm = torch.randperm(m, generator=self.gen)
        total = torch.zeros(())
        in_step = 0.0
        for i in range(0, m, b):
            idx = perm[i : i + b]
            xb, yb = self.X.index_select(0, idx), self.y.index_select(0, idx)
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss(self.model(xb), yb)
            loss.backward()
            t0 = clock()
            self.opt.step()
            in_step += clock() - t0
            total += loss.detach() * len(idx)
        return clock() - start, total.item() / m, in_step


def profile_step(torch, fot, key: str = "W1", calls: int = 20_000) -> dict:
    """Where ferroptim.torch's step spends its time on workload ``key``'s parameters (the
    .grad set once, warm caches): the whole ``opt.step()``, the Rust pass alone
    (``Engine.step`` on NumPy views made beforehand) and the NumPy views of the gradients,
    the part that torch's ``zero_grad(set_to_none=True)`` makes the adapter redo every step;
    µs per step."""
    init = he_init(WORKLOADS[key].sizes, 0)
    params = []
    for W, b in init:
        for a in (W.T.copy(), b):
            p = torch.nn.Parameter(torch.from_numpy(a))
            p.grad = torch.ones_like(p) * 1e-3
            params.append(p)
    opt = fot.Adam(params, lr=LR)
    grads = [p.grad.numpy() for p in params]
    engine, groups = opt._engine, opt.param_groups

    def timed(f):
        for _ in range(calls // 10):
            f()
        t0 = time.perf_counter()
        for _ in range(calls):
            f()
        return (time.perf_counter() - t0) / calls * 1e6

    return {
        "opt.step()": timed(opt.step),
        "the Rust pass": timed(lambda: engine.step(grads, groups)),
        "the gradients' NumPy views": timed(lambda: [p.grad.numpy() for p in params]),
    }


def run_loop(torch, fot, key: str, m: int | None, rounds: int, seed: int = 0) -> dict:
    """One workload's epochs: per contender the median epoch, the median time in the step,
    the costs of the last epoch (the same batches and weights: they agree to rounding)."""
    w = WORKLOADS[key]
    m = m or w.m
    X, y = w.data(m, seed)
    if w.output == "softmax":
        y = y.astype(np.int64)
    init = he_init(w.sizes, seed)
    order = list(LOOP_CONTENDERS)
    # One set of models per rotation of the contenders, built in that rotated order: where
    # a model's memory lies changes its epoch by several percent (W4 measured 0.93x with
    # ferroptim.torch's model built first and 1.04x with torch fused's), so each contender
    # is built first in one set, and round k runs set k mod 3, its contenders in its order.
    sets = []
    for r in range(len(order)):
        rotated = order[r:] + order[:r]
        sets.append(
            {
                label: TorchLoop(
                    w, X, y, init, seed, torch, lambda ps, f=LOOP_CONTENDERS[label]: f(torch, fot, ps)
                )
                for label in rotated
            }
        )
    for runners in sets:  # warm-up epoch
        for r in runners.values():
            r.epoch()
    epochs: dict[str, list] = {k: [] for k in order}
    steps: dict[str, list] = {k: [] for k in order}
    costs: dict[str, float] = {}
    for k in range(rounds):
        runners = sets[k % len(sets)]
        for label in runners:
            gc.collect()
            time.sleep(0.02)
            seconds, costs[label], in_step = runners[label].epoch()
            epochs[label].append(seconds)
            steps[label].append(in_step)
    out = {"workload": key, "title": w.title, "m": m, "updates": -(-m // w.batch), "contenders": {}}
    for label in order:
        e, s = statistics.median(epochs[label]), statistics.median(steps[label])
        out["contenders"][label] = {"epoch": e, "step": s, "rest": e - s, "cost": costs[label]}
    return out


def print_loop(r: dict) -> None:
    c = r["contenders"]
    ours = c["ferroptim.torch"]
    print(f"\n{r['workload']}: {r['title']}, m = {r['m']:,}, {r['updates']:,} updates per epoch")
    print(
        f"  {'':17}{'s/epoch':>10} {'vs ours':>8} {'in step':>10} {'µs/step':>8} {'step share':>10} {'rest':>10}  last epoch's cost"
    )
    for label, v in c.items():
        ratio = "" if label == "ferroptim.torch" else f"{v['epoch'] / ours['epoch']:.2f}x"
        print(
            f"  {label:17}{fmt_s(v['epoch']):>10} {ratio:>8} {fmt_s(v['step']):>10}"
            f" {v['step'] / r['updates'] * 1e6:8.1f} {v['step'] / v['epoch']:10.0%} {fmt_s(v['rest']):>10}  {v['cost']:.6f}"
        )
    fused = c["torch fused"]
    print(
        f"  with a free step, the most any optimizer could gain over torch fused here: "
        f"{fused['epoch'] / ours['rest']:.2f}x (torch fused's epoch over ours less its step)"
    )


def print_loop_markdown(results: list) -> None:
    print(
        "\n| workload | ferroptim.torch Adam | torch Adam fused | torch Adam foreach "
        "| fused / ours | foreach / ours | step µs: ours / fused | ceiling (free step) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        c = r["contenders"]
        o, f, fe = c["ferroptim.torch"], c["torch fused"], c["torch foreach"]
        n = r["updates"]
        print(
            f"| {r['workload']}: {r['title']}, m = {r['m']:,} | {o['epoch']:.3f} s | {f['epoch']:.3f} s "
            f"| {fe['epoch']:.3f} s | **{f['epoch'] / o['epoch']:.2f}x** | {fe['epoch'] / o['epoch']:.2f}x "
            f"| {o['step'] / n * 1e6:.1f} / {f['step'] / n * 1e6:.1f} | {f['epoch'] / o['rest']:.2f}x |"
        )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", choices=("steps", "loops", "all"), default="all")
    ap.add_argument("--rounds", type=int, default=15, help="samples of each step (default 15)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--big", action="store_true", help="add the 100M-parameter set to the steps")
    ap.add_argument("--workloads", nargs="*", choices=list(WORKLOADS), help="loops: default all four")
    ap.add_argument("--loop-rounds", type=int, default=5, help="timed epochs per contender (>= 3; default 5)")
    ap.add_argument(
        "--examples", type=int, default=None, help="loops: m of every workload (default: the README's)"
    )
    ap.add_argument("--markdown", action="store_true", help="also print the loops' table in Markdown")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.loop_rounds < 3:
        ap.error("--rounds must be >= 1 and --loop-rounds >= 3 (a median of at least three)")
    if args.examples is not None and args.examples < 1:
        ap.error("--examples must be >= 1")
    setup_threads(args.threads)
    import torch

    import ferroptim.torch as fot

    torch.set_num_threads(args.threads)
    print(machine({"torch": torch, "blas": "n/a"}, args.threads))
    if args.what in ("steps", "all"):
        before = load_average()
        print(f"\nThe step alone; load average before: {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}")
        run_steps(torch, fot, {**SETS, **(BIG if args.big else {})}, args.rounds)
        after = load_average()
        print(f"load average after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
        print("(x): that contender's median time over ferroptim.torch's; > 1 means ferroptim.torch is faster")
    if args.what in ("loops", "all"):
        before = load_average()
        print(
            f"\nWhole training epochs, float32, Adam lr {LR:g}, {args.threads} threads; warm-up epoch, then the "
            f"median of {args.loop_rounds} interleaved rounds; load average before: "
            f"{before[0]:.2f} {before[1]:.2f} {before[2]:.2f}",
            flush=True,
        )
        prof = profile_step(torch, fot)
        print(
            "ferroptim.torch's Adam step on W1's six tensors alone, µs: "
            + ", ".join(f"{k} {v:.1f}" for k, v in prof.items())
        )
        results = []
        for key in args.workloads or list(WORKLOADS):
            results.append(run_loop(torch, fot, key, args.examples, args.loop_rounds))
            print_loop(results[-1])
            print(f"  load average now: {load_average()[0]:.2f}", flush=True)
        after = load_average()
        print(f"\nload average after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
        if args.markdown:
            print_loop_markdown(results)
            print(
                f"\n{machine({'torch': torch, 'blas': 'n/a'}, args.threads)}; load average {before[0]:.2f} before, "
                f"{after[0]:.2f} after; `python benches/torch_adapter.py {' '.join(sys.argv[1:] if argv is None else argv)}`"
            )


if __name__ == "__main__":
    main()
