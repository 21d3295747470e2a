"""One shuffled epoch of mini-batches: ferroptim.MiniBatches against the usual ways.

Every way shuffles the samples and copies each batch's rows of X (float32) and of the int64
labels y into contiguous arrays; the time of the shuffle is included, except for the plain
gather, which is the floor: the same rows (ferroptim's permutation of this epoch) copied by
plain threads (one per ferroptim thread, each its share of the batches, one memcpy per row,
into a reused buffer) with no shuffle, no prefetch, no Python per batch.

Competitors are measured interleaved, `--repeats` times each; the table shows medians.
torch (index_select with randperm, and DataLoader over a TensorDataset) runs when
importable; DataLoader collates one sample at a time, so only `--dataloader-batches`
batches are timed and the epoch time is extrapolated.

    python benches/minibatch_compare.py                       # 5,000,000 x 64, batch 1024
    python benches/minibatch_compare.py --samples 200000      # a quick run
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import ferroptim as fo
from ferroptim import _core

try:
    import torch
except ImportError:  # pragma: no cover - torch is optional
    torch = None


def ferroptim_epoch(batches: fo.MiniBatches) -> float:
    t = time.perf_counter()
    for Xb, yb in batches:
        pass
    return time.perf_counter() - t


def plain_epoch(X, y, perm, b, threads) -> float:
    t = time.perf_counter()
    _core._plain_gather([X, y], perm, b, threads)
    return time.perf_counter() - t


def numpy_epoch(X, y, b, rng) -> float:
    t = time.perf_counter()
    perm = rng.permutation(len(X))
    for i in range(0, len(X), b):
        idx = perm[i : i + b]
        X[idx], y[idx]
    return time.perf_counter() - t


def index_select_epoch(Xt, yt, b) -> float:
    t = time.perf_counter()
    perm = torch.randperm(len(Xt))
    for i in range(0, len(Xt), b):
        idx = perm[i : i + b]
        torch.index_select(Xt, 0, idx), torch.index_select(yt, 0, idx)
    return time.perf_counter() - t


def dataloader_epoch(Xt, yt, b, batches) -> float:
    """Times `batches` batches (iterator creation included) and scales to one epoch."""
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Xt, yt), batch_size=b, shuffle=True)
    t = time.perf_counter()
    for k, (Xb, yb) in enumerate(loader):
        if k + 1 == batches:
            break
    return (time.perf_counter() - t) * len(loader) / batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=5_000_000, help="m, rows of X")
    ap.add_argument("--features", type=int, default=64, help="columns of X")
    ap.add_argument("--batch", type=int, default=1024, help="samples per batch")
    ap.add_argument("--repeats", type=int, default=5, help="epochs timed per competitor")
    ap.add_argument("--threads", type=int, default=None, help="ferroptim/torch threads")
    ap.add_argument("--dataloader-batches", type=int, default=100, help="batches timed")
    ap.add_argument("--no-torch", action="store_true", help="skip the torch competitors")
    args = ap.parse_args()

    if args.threads:
        fo.set_num_threads(args.threads)
    threads = fo.get_num_threads()
    use_torch = torch is not None and not args.no_torch
    if use_torch:
        torch.set_num_threads(threads)
    m, d, b = args.samples, args.features, args.batch

    rng = np.random.default_rng(0)
    X = rng.standard_normal((m, d), dtype=np.float32)
    y = rng.integers(0, 10, m, dtype=np.int64)
    batches = fo.MiniBatches(X, y, batch_size=b, seed=0)
    reused = fo.MiniBatches(X, y, batch_size=b, seed=0, reuse_buffers=True)

    # The batches are the rows of the documented permutation.
    perm = batches.indices(0)
    Xb, yb = next(iter(batches))
    assert np.array_equal(Xb, X[perm[:b]]) and np.array_equal(yb, y[perm[:b]])
    batches.load_state_dict({"seed": 0, "epoch": 0, "position": 0})

    runs = {
        "ferroptim MiniBatches": lambda: ferroptim_epoch(batches),
        "ferroptim MiniBatches(reuse_buffers=True)": lambda: ferroptim_epoch(reused),
        "plain gather of the same rows (floor)": lambda: plain_epoch(X, y, perm, b, threads),
        "NumPy X[perm[i:i+b]]": lambda: numpy_epoch(X, y, b, rng),
    }
    if use_torch:
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        runs["torch randperm + index_select"] = lambda: index_select_epoch(Xt, yt, b)
        runs[f"torch DataLoader (extrapolated from {args.dataloader_batches} batches)"] = lambda: (
            dataloader_epoch(Xt, yt, b, args.dataloader_batches)
        )

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(run())
    med = {name: statistics.median(ts) for name, ts in times.items()}

    ours = med["ferroptim MiniBatches"]
    print(
        f"one shuffled epoch: X {m:,} x {d} float32 + int64 labels, batch {b}, "
        f"{threads} threads, median of {args.repeats}"
        + ("" if use_torch else " (torch not importable or --no-torch)")
    )
    if hasattr(os, "getloadavg"):
        # Other processes' load skews every competitor, torch's OpenMP threads the most.
        print(f"1-min load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    width = max(map(len, med)) + 2
    print(f"{'':{width}}{'s/epoch':>9}  {'min':>7}  {'max':>7}  {'vs ferroptim':>12}")
    for name, t in med.items():
        ts = times[name]
        print(f"{name:{width}}{t:9.3f}  {min(ts):7.3f}  {max(ts):7.3f}  {t / ours:11.2f}x")

    print("targets:")
    floor = med["plain gather of the same rows (floor)"]
    checks = [
        ("8x faster than NumPy fancy indexing", med["NumPy X[perm[i:i+b]]"] / ours, 8.0, True),
        ("within 1.3x of the plain gather", ours / floor, 1.3, False),
    ]
    if use_torch:
        checks.insert(
            0,
            (
                "2.5x faster than torch index_select",
                med["torch randperm + index_select"] / ours,
                2.5,
                True,
            ),
        )
    for what, ratio, goal, higher in checks:
        met = ratio >= goal if higher else ratio <= goal
        print(f"  {what}: {ratio:.2f}x {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
