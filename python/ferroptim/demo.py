"""Train a small NumPy network on synthetic data with ferroptim and print its cost falling.

The network (forward and backward pass) is plain NumPy; ferroptim's Adam updates its
arrays in place once per mini-batch.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from . import optim


def make_data(m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals with noise: X (m, 2) float32, y (m, 1) float32 in {0, 1}."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=m)
    t = rng.uniform(0.25, 1.0, size=m) * 3 * np.pi
    r = t / (3 * np.pi)
    angle = t + np.pi * y
    X = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
    X += rng.normal(scale=0.03, size=X.shape)
    return X.astype(np.float32), y.reshape(-1, 1).astype(np.float32)


def init_params(sizes: list[int], seed: int) -> dict[str, np.ndarray]:
    """He-initialised weights W{l} (n_in, n_out) and zero biases b{l} (n_out,), float32."""
    rng = np.random.default_rng(seed)
    params = {}
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{l}"] = (rng.normal(size=(n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(np.float32)
        params[f"b{l}"] = np.zeros(n_out, dtype=np.float32)
    return params


def forward_backward(params: dict, X: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
    """Binary cross-entropy of a ReLU MLP with a sigmoid output, and its gradients."""
    L = len(params) // 2
    A, cache = X, []
    for l in range(1, L + 1):
        Z = A @ params[f"W{l}"] + params[f"b{l}"]
        cache.append((A, Z))
        A = np.maximum(Z, 0) if l < L else 1 / (1 + np.exp(-Z))
    m = X.shape[0]
    eps = 1e-7
    cost = float(-np.mean(y * np.log(A + eps) + (1 - y) * np.log(1 - A + eps)))
    grads = {}
    dZ = (A - y) / m
    for l in range(L, 0, -1):
        A_prev, Z = cache[l - 1]
        grads[f"W{l}"] = A_prev.T @ dZ
        grads[f"b{l}"] = dZ.sum(axis=0)
        if l > 1:
            dZ = (dZ @ params[f"W{l}"].T) * (cache[l - 2][1] > 0)
    return cost, grads


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--examples", type=int, default=200_000, help="number of training examples")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    if args.examples < 1 or args.epochs < 1 or args.batch_size < 1 or not args.lr > 0:
        print("ferroptim demo: --examples, --epochs, --batch-size must be >= 1 and --lr > 0")
        return 2
    X, y = make_data(args.examples, args.seed)
    params = init_params([2, 64, 64, 1], args.seed)
    opt = optim.Adam(params, lr=args.lr)
    rng = np.random.default_rng(args.seed)
    print(f"Adam, {args.examples} examples, mini-batches of {args.batch_size}")
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        perm = rng.permutation(args.examples)
        for i in range(0, args.examples, args.batch_size):
            idx = perm[i : i + args.batch_size]
            _, grads = forward_backward(params, X[idx], y[idx])
            opt.step(grads)
        cost, _ = forward_backward(params, X, y)
        print(f"epoch {epoch}: cost {cost:.4f}  ({time.perf_counter() - t0:.2f} s)")
    return 0
