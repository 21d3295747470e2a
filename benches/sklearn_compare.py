"""Seconds per epoch and held-out accuracy: ferroptim.sklearn.MLPClassifier vs scikit-learn's.

Same settings for both (Adam, lr 1e-3, alpha 1e-4, hidden (100,) and (256, 256), batch 200 and
1024) on a synthetic 1,000,000 x 64 float32 binary problem (make_classification). Each
estimator trains ``--epochs`` epochs (max_iter, no early stop: tol=0); the time of the whole fit
divided by the epochs is the number shown. Run with a Python that has scikit-learn and the
ferroptim wheel::

    python benches/sklearn_compare.py                    # the README table
    python benches/sklearn_compare.py --rows 100000      # quicker
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkMLP

import ferroptim as fo
from ferroptim.sklearn import MLPClassifier as FoMLP


def run(cls, params, Xt, yt, Xv, yv, epochs):
    est = cls(max_iter=epochs, tol=0.0, n_iter_no_change=10**9, random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = time.perf_counter()
        est.fit(Xt, yt)
        seconds = (time.perf_counter() - t) / est.n_iter_
    return seconds, est.score(Xv, yv)


def sgemm_floor(sizes: list[int], batch: int, rows: int) -> float:
    """Seconds for one epoch's matrix products alone (forward, and both backward products of
    each layer but the first's input gradient) through NumPy's sgemm into out= buffers."""
    Ws = [np.zeros((sizes[i], sizes[i + 1]), np.float32) for i in range(len(sizes) - 1)]
    A = [np.zeros((batch, s), np.float32) for s in sizes]
    t = time.perf_counter()
    for _ in range(rows // batch):
        for i, W in enumerate(Ws):
            np.matmul(A[i], W, out=A[i + 1])
        for i, W in enumerate(Ws):
            if i > 0:
                np.matmul(A[i + 1], W.T, out=A[i])
            np.matmul(A[i].T, A[i + 1], out=W)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1, help="epochs per fit (both estimators)")
    args = ap.parse_args()
    X, y = make_classification(
        n_samples=args.rows + args.rows // 10,
        n_features=args.features,
        n_informative=args.features // 2,
        random_state=0,
    )
    X = X.astype(np.float32)
    Xt, Xv, yt, yv = train_test_split(X, y, test_size=args.rows // 10, random_state=0)
    print(
        f"# {len(Xt):,} x {args.features} float32 train, {len(Xv):,} held out; ferroptim {fo.__version__}, "
        f"{fo.get_num_threads()} threads, SIMD {fo.simd_level()}; {args.epochs} epoch(s) each; "
        f"load average {os.getloadavg()}"
    )
    print(
        "| hidden | batch | scikit-learn s/epoch | ferroptim s/epoch | speed-up | NumPy sgemm floor s "
        "| sklearn / floor | accuracy sklearn | accuracy ferroptim |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for hidden in [(100,), (256, 256)]:
        for batch in [200, 1024]:
            params = dict(hidden_layer_sizes=hidden, batch_size=batch, solver="adam")
            fo_s, fo_acc = run(FoMLP, params, Xt, yt, Xv, yv, args.epochs)
            sk_s, sk_acc = run(SkMLP, params, Xt, yt, Xv, yv, args.epochs)
            floor = sgemm_floor([args.features, *hidden, 1], batch, len(Xt))
            print(
                f"| {hidden} | {batch} | {sk_s:.2f} | {fo_s:.2f} | {sk_s / fo_s:.1f}x | {floor:.2f} | "
                f"{sk_s / floor:.1f}x | "
                f"{sk_acc:.4f} | {fo_acc:.4f} |",
                flush=True,
            )
    print(f"# load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
