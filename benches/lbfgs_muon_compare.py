"""fo.LBFGS and fo.Muon against torch.optim.LBFGS and torch.optim.Muon, on CPU.

LBFGS: Rosenbrock's function in n dimensions from x = (-1.2, 1, -1.2, 1, ...), the same NumPy
closure for both (torch's sets ``.grad`` from it), ``steps`` steps of ``max_iter=100`` with the
strong-Wolfe line search: seconds, the final loss and evaluations. The closure costs the
same in both, so the ratio is the optimizers' own cost plus one closure's per evaluation.

Muon: one step (after a warm-up step) of a float32 (rows, cols) parameter, torch's bfloat16
Newton–Schulz iteration against ours in bfloat16 (torch's roundings, products summed in
float64) and in float32.

    python benches/lbfgs_muon_compare.py [--threads 1] [--quick]

Ratios are torch's seconds over ferroptim's (above 1: ferroptim faster), from one run; the
load average is printed with them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import ferroptim as fo

from _common import import_peers, load_average, setup_threads


def rosenbrock(x: np.ndarray) -> tuple[float, np.ndarray]:
    a, b = x[:-1], x[1:]
    g = np.zeros_like(x)
    g[:-1] = -400.0 * a * (b - a * a) - 2.0 * (1.0 - a)
    g[1:] += 200.0 * (b - a * a)
    return float(np.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2)), g


def start(n: int) -> np.ndarray:
    x = np.ones(n)
    x[::2] = -1.2
    return x


def lbfgs_fo(n: int, steps: int) -> tuple[float, float, int]:
    x = start(n)
    opt = fo.LBFGS([x], max_iter=100, line_search_fn="strong_wolfe")
    evals = [0]

    def closure():
        evals[0] += 1
        loss, g = rosenbrock(x)
        return loss, [g]

    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step(closure)
    return time.perf_counter() - t0, rosenbrock(x)[0], evals[0]


def lbfgs_torch(torch, n: int, steps: int) -> tuple[float, float, int]:
    x = torch.tensor(start(n))
    opt = torch.optim.LBFGS([x], max_iter=100, line_search_fn="strong_wolfe")
    evals = [0]

    def closure():
        evals[0] += 1
        loss, g = rosenbrock(x.numpy())
        x.grad = torch.from_numpy(g)
        return torch.tensor(loss, dtype=torch.float64)

    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step(closure)
    return time.perf_counter() - t0, rosenbrock(x.numpy())[0], evals[0]


def muon_fo(shape: tuple[int, int], ns_dtype: str, repeats: int) -> float:
    rng = np.random.default_rng(0)
    p = rng.normal(size=shape).astype(np.float32)
    g = rng.normal(size=shape).astype(np.float32)
    opt = fo.Muon([p], lr=0.02, ns_dtype=ns_dtype)
    opt.step([g])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        opt.step([g])
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def muon_torch(torch, shape: tuple[int, int], repeats: int) -> float:
    rng = np.random.default_rng(0)
    p = torch.tensor(rng.normal(size=shape).astype(np.float32))
    p.grad = torch.tensor(rng.normal(size=shape).astype(np.float32))
    opt = torch.optim.Muon([p], lr=0.02)
    opt.step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="small sizes only")
    args = ap.parse_args()
    notes = setup_threads(args.threads)
    torch = import_peers(args.threads, notes, wanted=("torch",)).get("torch")
    print(f"threads {args.threads}, load average before {load_average()}")
    for note in notes:
        print("note:", note)

    print("\nLBFGS, Rosenbrock, strong Wolfe, max_iter=100")
    print(
        f"{'n':>8} {'steps':>5} | {'fo s':>8} {'loss':>9} {'evals':>5} | {'torch s':>8} {'loss':>9} {'evals':>5} | ratio"
    )
    for n, steps in [(2, 1), (1_000, 3)] + ([] if args.quick else [(100_000, 3)]):
        s, loss, ev = lbfgs_fo(n, steps)
        row = f"{n:>8} {steps:>5} | {s:8.4f} {loss:9.2e} {ev:>5}"
        if torch is not None:
            ts, tloss, tev = lbfgs_torch(torch, n, steps)
            row += f" | {ts:8.4f} {tloss:9.2e} {tev:>5} | {ts / s:5.2f}"
        print(row)

    print("\nMuon, one step of a float32 (rows, cols) parameter (median)")
    print(f"{'shape':>12} | {'fo bf16 s':>9} {'fo f32 s':>9} | {'torch s':>9} | ratio bf16, f32")
    shapes = [(64, 256), (256, 256)] + ([] if args.quick else [(512, 1024), (1024, 1024), (2000, 2000)])
    for shape in shapes:
        repeats = 5 if shape[0] * shape[1] >= 512 * 1024 else 20
        bf, f32 = muon_fo(shape, "bfloat16", repeats), muon_fo(shape, "float32", repeats)
        row = f"{str(shape):>12} | {bf:9.5f} {f32:9.5f}"
        if torch is not None:
            t = muon_torch(torch, shape, repeats)
            row += f" | {t:9.5f} | {t / bf:5.2f}, {t / f32:5.2f}"
        print(row)
    print(f"\nload average after {load_average()}")


if __name__ == "__main__":
    main()
