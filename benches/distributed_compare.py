"""Time per step spent in communication by DistributedOptimizer, for the MLP sets of
benches/compare.py. Run under MPI, e.g. ``mpiexec -n 2 python benches/distributed_compare.py``
(``make bench`` does, with one thread per rank).

For each set it reports, on rank 0, the median time of a plain Adam step and of a
DistributedOptimizer step, and the part of the latter spent averaging the gradients (pack
in Rust, one Allreduce per dtype, unpack; ``DistributedOptimizer.comm_seconds``), measured
in the same run.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import ferroptim as fo
from ferroptim import distributed as dist

SETS = {
    "MLP 784-512-512-10": [(512, 784), (512,), (512, 512), (512,), (10, 512), (10,)],
    "MLP 64-256-256-10": [(256, 64), (256,), (256, 256), (256,), (10, 256), (10,)],
    "net [2,5,2,1]": [(5, 2), (5, 1), (2, 5), (2, 1), (1, 2), (1, 1)],
}


def median_time(fn, comm, calls, rounds=7):
    samples = []
    for _ in range(rounds):
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - t0) / calls)
    return statistics.median(samples)


def main():
    comm = dist.world()
    rank, size = comm.Get_rank(), comm.Get_size()
    rows = []
    for name, shapes in SETS.items():
        rng = np.random.default_rng(rank)
        params = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        grads = [rng.standard_normal(s, dtype=np.float32) * 1e-3 for s in shapes]
        n = sum(p.size for p in params)
        calls = 2000 if n < 1000 else 200 if n < 100_000 else 50
        plain = fo.Adam([p.copy() for p in params], lr=1e-4)
        wrapped = dist.DistributedOptimizer(fo.Adam(params, lr=1e-4))
        t_plain = median_time(lambda: plain.step(grads), comm, calls)
        wrapped.step(grads)  # warm up
        before = wrapped.comm_seconds
        t_dist = median_time(lambda: wrapped.step(grads), comm, calls)
        t_comm = (wrapped.comm_seconds - before) / (7 * calls)
        rows.append((name, n, t_plain, t_dist, t_comm))
    if rank == 0:
        print(f"{size} ranks, {fo.get_num_threads()} thread(s) per rank, float32 Adam")
        print(
            f"{'set':22} {'params':>8} {'Adam step':>11} {'distributed step':>17} {'of which averaging':>19}"
        )
        for name, n, a, d, c in rows:
            print(f"{name:22} {n:8d} {a * 1e6:9.1f} µs {d * 1e6:15.1f} µs {c * 1e6:17.1f} µs")


if __name__ == "__main__":
    main()
