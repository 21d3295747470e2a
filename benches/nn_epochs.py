"""Seconds per epoch of ``MLP.fit`` on the four workloads of issue 11 (W1-W4), float32, Adam
lr 1e-3, after a warm-up epoch; median of ``--rounds`` epochs, with the share of the epoch
spent in gather / forward / backward / step. Run: ``python benches/nn_epochs.py``.
"""

import argparse
import os
import time

import numpy as np

import ferroptim as fo

WORKLOADS = {
    "W1": dict(sizes=[2, 5, 2, 1], hidden="relu", output="sigmoid", m=300_000, batch=64, target="<= 0.016 s"),
    "W2": dict(
        sizes=[2, 32, 32, 1], hidden="relu", output="sigmoid", m=1_000_000, batch=512, target="<= 0.128 s"
    ),
    "W3": dict(sizes=[64, 10], hidden="relu", output="softmax", m=1_000_000, batch=1024, target="<= 0.145 s"),
    "W4": dict(
        sizes=[64, 256, 256, 10], hidden="relu", output="softmax", m=1_000_000, batch=1024, target="<= 2.86 s"
    ),
}


def data(w, rng):
    n0, k = w["sizes"][0], w["sizes"][-1]
    X = rng.standard_normal((w["m"], n0), dtype=np.float32)
    if w["output"] == "softmax":
        Y = rng.integers(0, k, w["m"])
    else:
        Y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)
    return X, Y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=list(WORKLOADS))
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        fo.set_num_threads(a.threads)
    print(f"load average {os.getloadavg()}, threads {fo.get_num_threads()}, simd {fo.simd_level()}")
    rng = np.random.default_rng(0)
    for name in a.only:
        w = WORKLOADS[name]
        X, Y = data(w, rng)
        model = fo.nn.MLP(w["sizes"], hidden=w["hidden"], output=w["output"], seed=0)
        opt = fo.Adam(model.params, lr=1e-3)
        model.fit(X, Y, opt, batch_size=w["batch"], epochs=1)  # warm-up
        times, parts = [], []
        for _ in range(a.rounds):
            t = time.perf_counter()
            h = model.fit(X, Y, opt, batch_size=w["batch"], epochs=1, timing=True, check_input=False)
            times.append(time.perf_counter() - t)
            parts.append([h.timing[k][0] for k in ("gather", "forward", "backward", "step")])
        med = float(np.median(times))
        p = np.median(np.array(parts), axis=0)
        share = " ".join(f"{k} {v / med:.0%}" for k, v in zip(("gather", "forward", "backward", "step"), p))
        n_up = len(h.costs)
        print(
            f"{name} {w['sizes']} m={w['m']} b={w['batch']}: {med:.4f} s/epoch ({n_up / med:,.0f} updates/s, "
            f"{med / n_up * 1e6:.2f} us/update), final cost {h.epoch_costs[-1]:.4f}; {share}; target {w['target']}"
        )


if __name__ == "__main__":
    main()
