"""Run by tests/test_reliability_py.py under `mpiexec -n 2`: failure handling and the
wrappers' composition over MPI. Each mode prints what it checks; the test reads it."""

import copy
import os
import pickle
import sys
import threading

import numpy as np

import ferroptim as fo
from ferroptim import distributed as dist

mode, out = sys.argv[1], sys.argv[2]
comm = dist.world()
rank, size = comm.Get_rank(), comm.Get_size()


def say(*args):
    # One write per line, so the lines of the two ranks do not interleave.
    sys.stdout.write(" ".join([f"rank {rank}:", *map(str, args)]) + "\n")
    sys.stdout.flush()


if mode == "sys-exit":
    opt = dist.DistributedOptimizer(fo.SGD([np.zeros(3)], lr=0.1))
    if rank == 1:
        sys.exit(3)
    opt.step([np.ones(3)])  # rank 0 would wait here forever without the abort
    say("was not stopped")

elif mode == "thread-error":
    opt = dist.DistributedOptimizer(fo.SGD([np.zeros(3)], lr=0.1))
    if rank == 1:

        def load():
            raise RuntimeError("the loader thread of rank 1 fails on purpose")

        threading.Thread(target=load).start()
        threading.Event().wait(120)  # waits for data that never comes
    opt.step([np.ones(3)])
    say("was not stopped")

elif mode == "normal-exits":
    # sys.exit(0) everywhere, and a SystemExit(2) caught and survived: no abort.
    opt = dist.DistributedOptimizer(fo.SGD([np.zeros(3)], lr=0.1))
    try:
        sys.exit(2)
    except SystemExit:
        pass
    opt.step([np.ones(3)])
    say("finished")
    sys.exit(0)

elif mode == "checkpoint-errors":
    # Every rank must see the same error, and the job must go on (no hang).
    w = np.zeros(3)
    for what, call in [
        ("save", lambda: dist.save_checkpoint(f"{out}/no-such-dir/ckpt.pkl", params=[w])),
        ("load", lambda: dist.load_checkpoint(f"{out}/missing.pkl", params=[w])),
        ("save-device", lambda: dist.save_checkpoint(f"{out}/fifo", params=[w])),
    ]:
        if what == "save-device" and rank == 0:
            os.mkfifo(f"{out}/fifo")
        try:
            call()
            say(what, "no error")
        except Exception as e:
            say(what, type(e).__name__)
    dist.save_checkpoint(f"{out}/ok.pkl", params=[np.full(3, float(rank))])
    v = np.zeros(3)
    dist.load_checkpoint(f"{out}/ok.pkl", params=[v])
    say("loaded", v.tolist())

elif mode == "add-param-group":
    # Ranks start from different values; both add a group (different values again) after
    # wrapping, via the optimizer inside and via the wrapper. The new parameters must be
    # broadcast from rank 0 and their gradients averaged.
    rng = np.random.default_rng(rank)
    p = [rng.normal(size=3)]
    q = [rng.normal(size=2)]
    r = [rng.normal(size=(2, 2)).astype(np.float32)]
    inner = fo.Adam(p, lr=0.1)
    opt = dist.DistributedOptimizer(inner)
    g = np.random.default_rng(10 + rank)
    opt.step([g.normal(size=3)])
    inner.add_param_group({"params": q, "lr": 0.05})
    opt.step([g.normal(size=3), g.normal(size=2)])
    opt.add_param_group({"params": r})
    for _ in range(2):
        opt.step([g.normal(size=3), g.normal(size=2), g.normal(size=(2, 2)).astype(np.float32)])
    np.savez(f"{out}/add-{rank}.npz", p=p[0], q=q[0], r=r[0])
    say("finished")

elif mode == "compose":
    # DistributedOptimizer around GradientAccumulation / Lookahead and the other way round.
    def grads(t, r):
        g = np.random.default_rng(1000 * t + r)
        return [g.normal(size=4), g.normal(size=3).astype(np.float32)]

    results = {}
    for order in ("dist(acc)", "acc(dist)", "dist(look)", "look(dist)"):
        rng = np.random.default_rng(rank)  # different on each rank: broadcast makes them equal
        params = [rng.normal(size=4), rng.normal(size=3).astype(np.float32)]
        base = fo.Adam(params, lr=0.05)
        if order == "dist(acc)":
            opt = dist.DistributedOptimizer(fo.GradientAccumulation(base, steps=2))
        elif order == "acc(dist)":
            opt = fo.GradientAccumulation(dist.DistributedOptimizer(base), steps=2)
        elif order == "dist(look)":
            opt = dist.DistributedOptimizer(fo.Lookahead(base, sync_period=2, slow_step_size=0.5))
        else:
            opt = fo.Lookahead(dist.DistributedOptimizer(base), sync_period=2, slow_step_size=0.5)
        for t in range(6):
            opt.step(grads(t, rank))
        results[order] = [a.copy() for a in params]
        state = opt.state_dict()
        opt.load_state_dict(state)
    np.savez(
        f"{out}/compose-{rank}.npz", **{f"{k}-{i}": a for k, v in results.items() for i, a in enumerate(v)}
    )
    # A DistributedOptimizer over COMM_WORLD pickles and deep-copies (without a broadcast).
    w = [np.full(2, 1.0)]
    d = dist.DistributedOptimizer(fo.SGD(w, lr=0.5))
    w2, d2 = copy.deepcopy((w, d))
    w3, d3 = pickle.loads(pickle.dumps((w, d)))
    for ds in (d2, d3):
        ds.step([np.full(2, float(rank))])  # mean 0.5: 1 - 0.5 * 0.5
    say("copies", w2[0].tolist(), w3[0].tolist(), w[0].tolist())
