"""solver="lbfgs": ferroptim.sklearn.MLPClassifier against scikit-learn's, seconds to fit and
held-out accuracy, the same settings (hidden (100,), alpha 1e-4, max_iter, random_state 0).

Both run SciPy's L-BFGS-B over the same packed parameters; the difference is the cost and
gradient over the whole data, ferroptim's fused network against scikit-learn's NumPy passes.
Ratios are from one run, with the load average printed::

    python benches/sklearn_lbfgs.py
    python benches/sklearn_lbfgs.py --rows 50000 --max-iter 50   # quicker
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkMLP

from ferroptim.sklearn import MLPClassifier as FoMLP

from _common import load_average


def fit(cls, X_tr, y_tr, X_te, y_te, max_iter: int) -> tuple[float, float, int]:
    est = cls(solver="lbfgs", hidden_layer_sizes=(100,), alpha=1e-4, max_iter=max_iter, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = time.perf_counter()
        est.fit(X_tr, y_tr)
        seconds = time.perf_counter() - t
    return seconds, est.score(X_te, y_te), est.n_iter_


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000, help="rows of the synthetic set")
    ap.add_argument("--max-iter", type=int, default=200)
    args = ap.parse_args()
    print(f"load average before: {load_average()}")
    X, y = load_digits(return_X_y=True)
    sets = {"digits (1,797 x 64)": train_test_split((X / 16.0).astype(np.float64), y, random_state=0)}
    X, y = make_classification(
        n_samples=args.rows, n_features=20, n_informative=10, n_classes=2, random_state=0
    )
    sets[f"make_classification ({args.rows:,} x 20, float32)"] = train_test_split(
        X.astype(np.float32), y, random_state=0
    )
    print("| data | scikit-learn s | ferroptim s | speed-up | iterations sk / fo | accuracy sk / fo |")
    print("|---|---:|---:|---:|---|---|")
    for name, (X_tr, X_te, y_tr, y_te) in sets.items():
        sk = fit(SkMLP, X_tr, y_tr, X_te, y_te, args.max_iter)
        fo = fit(FoMLP, X_tr, y_tr, X_te, y_te, args.max_iter)
        print(
            f"| {name} | {sk[0]:.2f} | {fo[0]:.2f} | {sk[0] / fo[0]:.2f}x | {sk[2]} / {fo[2]} "
            f"| {sk[1]:.4f} / {fo[1]:.4f} |"
        )
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
