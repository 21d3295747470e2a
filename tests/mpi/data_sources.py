"""Run under mpiexec -n 2: each rank reads its shard of a Parquet source for two epochs and
rank 0 writes every rank's row ids of each epoch to OUT/ids.npz."""

import sys

import numpy as np
from mpi4py import MPI

import ferroptim as fo

path, out = sys.argv[1], sys.argv[2]
comm = MPI.COMM_WORLD
src = fo.data.Parquet(path, features=["id"], labels="y", dtype=np.float64, shuffle_buffer=2)
batches = fo.MiniBatches(src, batch_size=7, seed=11, shard=(comm.rank, comm.size))
ids = [np.concatenate([xb[:, 0] for xb, _ in batches]).astype(np.int64) for _ in range(2)]
everyone = comm.gather(ids, root=0)
if comm.rank == 0:
    np.savez(f"{out}/ids.npz", **{f"r{r}e{e}": everyone[r][e] for r in range(comm.size) for e in range(2)})
