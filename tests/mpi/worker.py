"""Run by tests/test_distributed.py under `mpiexec -n 2`; writes its results as .npz files."""

import sys

import numpy as np

import ferroptim as fo
from ferroptim import distributed as dist

mode, out = sys.argv[1], sys.argv[2]
comm = dist.world()
rank, size = comm.Get_rank(), comm.Get_size()

if mode == "collectives":
    params = {"W": np.full((3, 2), float(rank), np.float32), "b": np.full(2, 10.0 + rank)}
    dist.broadcast_parameters(params)
    grads = [np.full((3, 2), rank + 1.0, np.float32), np.arange(2.0) * (rank + 1)]
    dist.allreduce_gradients(grads)
    np.savez(f"{out}/collectives-{rank}.npz", W=params["W"], b=params["b"], g0=grads[0], g1=grads[1])

elif mode == "optimizer":
    # Each rank starts from different values: the wrapper's broadcast makes them equal.
    rng = np.random.default_rng(rank)
    params = [rng.normal(size=(4, 3)), rng.normal(size=3).astype(np.float32)]
    opt = dist.DistributedOptimizer(fo.Adam(params, lr=0.05))
    for t in range(5):
        g = np.random.default_rng(100 * t + rank)
        opt.step([g.normal(size=(4, 3)), g.normal(size=3).astype(np.float32)])
    np.savez(f"{out}/optimizer-{rank}.npz", p0=params[0], p1=params[1], comm=opt.comm_seconds)

elif mode == "abort":
    opt = dist.DistributedOptimizer(fo.SGD([np.zeros(3)], lr=0.1))
    if rank == 1:
        raise RuntimeError("rank 1 fails on purpose")
    opt.step([np.ones(3)])  # rank 0 would wait here forever without the abort
    print("rank 0 was not stopped", flush=True)
