"""Run by tests/test_distributed.py under `mpiexec -n 2`; writes its results as .npz files."""

import os
import sys

import numpy as np

import ferroptim as fo
from ferroptim import distributed as dist

sys.path.insert(0, os.path.dirname(__file__))

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

elif mode in ("train", "resume"):
    # Each rank takes its interleaved shard of every epoch in batches of B / size; the
    # wrapper averages the gradients. "resume" stops mid-epoch, checkpoints, rebuilds every
    # object from scratch, loads the checkpoint and goes on.
    from model import EPOCHS, GLOBAL_BATCH, SEED, data, init, loss_grads

    X, y = data()
    ids = np.arange(len(X))

    def build(seed):
        params = init(seed)  # different on each rank: the wrapper broadcasts rank 0's
        opt = dist.DistributedOptimizer(fo.Adam(params, lr=0.01))
        batches = fo.MiniBatches(X, y, ids, batch_size=GLOBAL_BATCH // size, seed=SEED, shard=(rank, size))
        return params, opt, batches

    params, opt, batches = build(seed=rank)
    seen = {}
    stop_at = (1, 10) if mode == "resume" else None
    while batches.epoch < EPOCHS:
        epoch = batches.epoch
        for k, (Xb, yb, ib) in enumerate(batches):
            seen.setdefault(epoch, []).append(ib)
            opt.step(loss_grads(params, Xb, yb))
            if (epoch, k) == stop_at:
                dist.save_checkpoint(f"{out}/ckpt.pkl", params=params, optimizer=opt, batches=batches)
                params, opt, batches = build(seed=1000 + rank)
                dist.load_checkpoint(f"{out}/ckpt.pkl", params=params, optimizer=opt, batches=batches)
                break
    np.savez(f"{out}/{mode}-{rank}.npz", **params, **{f"seen{e}": np.concatenate(v) for e, v in seen.items()})
