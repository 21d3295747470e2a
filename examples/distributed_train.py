"""Data-parallel training of a NumPy network with ferroptim over MPI.

    mpiexec -n 2 python examples/distributed_train.py            # 2 processes, this machine
    mpiexec -f hosts -n 8 python examples/distributed_train.py   # 8 processes over the hosts

Every rank builds the same data (in a real job each would open the same .npy files, e.g.
with np.load(..., mmap_mode="r")), takes its interleaved shard of every shuffled epoch, and
steps with the gradients averaged over all ranks: the run is the one a single process
would make with a batch of --batch-size. Rank 0 prints progress and writes a checkpoint
after every epoch; --resume continues from it.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import ferroptim as fo
from ferroptim import distributed as dist


def make_data(m: int, seed: int = 0):
    """Two noisy spirals: X (m, 2) float32, y (m, 1) float32 in {0, 1}."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, m)
    t = rng.uniform(0.25, 1.0, m) * 3 * np.pi
    r = t / (3 * np.pi)
    X = np.stack([r * np.cos(t + np.pi * y), r * np.sin(t + np.pi * y)], axis=1)
    X += rng.normal(scale=0.03, size=X.shape)
    return X.astype(np.float32), y[:, None].astype(np.float32)


def init(sizes, seed):
    rng = np.random.default_rng(seed)
    p = {}
    for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), 1):
        p[f"W{l}"] = (rng.normal(size=(a, b)) * np.sqrt(2 / a)).astype(np.float32)
        p[f"b{l}"] = np.zeros(b, np.float32)
    return p


def forward_backward(p, X, y):
    """Mean binary cross-entropy of a ReLU MLP with a sigmoid output, and its gradients."""
    L = len(p) // 2
    A, cache = X, []
    for l in range(1, L + 1):
        Z = A @ p[f"W{l}"] + p[f"b{l}"]
        cache.append((A, Z))
        A = np.maximum(Z, 0) if l < L else 1 / (1 + np.exp(-Z))
    cost = float(-np.mean(y * np.log(A + 1e-7) + (1 - y) * np.log(1 - A + 1e-7)))
    g, dZ = {}, (A - y) / len(X)
    for l in range(L, 0, -1):
        A_prev, _ = cache[l - 1]
        g[f"W{l}"], g[f"b{l}"] = A_prev.T @ dZ, dZ.sum(0)
        if l > 1:
            dZ = (dZ @ p[f"W{l}"].T) * (cache[l - 2][1] > 0)
    return cost, g


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=1024, help="global batch, over all ranks")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--checkpoint", default="distributed_train.ckpt")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()

    comm = dist.world()
    rank, size = comm.Get_rank(), comm.Get_size()
    if args.batch_size % size:
        raise SystemExit(f"--batch-size must be a multiple of the {size} ranks")
    X, y = make_data(args.examples)
    params = init([2, 64, 64, 1], seed=0)
    opt = dist.DistributedOptimizer(fo.Adam(params, lr=args.lr))  # broadcasts rank 0's params
    batches = fo.MiniBatches(X, y, batch_size=args.batch_size // size, seed=1, shard=(rank, size))
    smooth = fo.EWA(0.98)
    if args.resume and os.path.exists(args.checkpoint):
        dist.load_checkpoint(args.checkpoint, params=params, optimizer=opt, batches=batches, cost=smooth)

    while batches.epoch < args.epochs:
        epoch, t0 = batches.epoch, time.perf_counter()
        for Xb, yb in batches:
            cost, grads = forward_backward(params, Xb, yb)
            opt.step(grads)
            smooth.update(cost)
        dist.save_checkpoint(args.checkpoint, params=params, optimizer=opt, batches=batches, cost=smooth)
        if rank == 0:
            print(
                f"epoch {epoch + 1}/{args.epochs}: smoothed cost {smooth.value:.4f}, "
                f"{time.perf_counter() - t0:.2f} s, {opt.comm_seconds:.2f} s in communication so far",
                flush=True,
            )


if __name__ == "__main__":
    main()
