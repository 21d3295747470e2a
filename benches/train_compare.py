"""One shuffled training epoch, end to end: ferroptim's ``fit`` against the usual ways.

Four workloads (issue 11's table), float32, Adam at lr 1e-3, the same He-initialised
weights for every contender that takes given weights:

- W1: the lecture's [2, 5, 2, 1] net (ReLU, ReLU, sigmoid + cross-entropy) on 300,000
  moons examples, batch 64;
- W2: the demo's 2-32-32-1 net on 1,000,000 spiral examples, batch 512;
- W3: softmax regression 64 -> 10 on 1,000,000 Gaussian examples whose labels are drawn
  from a softmax teacher, batch 1024;
- W4: the MLP 64-256-256-10 (ReLU, softmax) on the same data, batch 1024.

Contenders (a missing package skips its contender with a line saying so):

- **lecture NumPy**: the course's code -- examples as columns, ``np.random.permutation``
  and a column gather of the whole set, then slices (``random_mini_batches``), forward,
  cost, backward and the Adam update with its ``v``/``s`` dicts, all NumPy. Two
  deliberate departures keep it in float32 and out of Python lists: the permutation is
  not wrapped in ``list()`` and ReLU's derivative is a boolean mask, not ``np.int64``;
- **NumPy + ferroptim**: the same network written in rows with in-place NumPy, batches
  from ``fo.MiniBatches`` and the step from ``fo.Adam`` (ferroptim before ``fit``);
- **torch**: ``nn.Sequential``, ``Adam(fused=True)``, ``randperm`` + ``index_select``;
- **JAX + optax**: the whole step under ``jax.jit`` and the whole epoch (permutation,
  gather, forward, backward, ``optax.adam``) in one jitted ``lax.scan``; on W3 also with
  the epoch's batches gathered by NumPy and scanned over (the issue's "NumPy batches");
- **scikit-learn**: ``MLPClassifier(solver="adam", batch_size=b, alpha=0)``, one epoch
  per ``partial_fit``;
- **ferroptim fit**: ``fo.nn.MLP`` + ``fo.Adam`` + ``model.fit(..., epochs=1)``.

Every contender runs one warm-up epoch (compilation, caches), then ``--rounds``
interleaved epochs (the order rotates each round; each sample starts after gc and a
20 ms pause so the previous contender's spinning threads park); the tables give medians.
Every contender runs on ``--threads`` threads, set explicitly: ``fo.set_num_threads``,
``torch.set_num_threads``, threadpoolctl for NumPy's BLAS (NumPy and scikit-learn), and
for XLA, which sizes its pool by the CPUs the process may run on, the process's CPU
affinity (when the machine has more CPUs than ``--threads``). The NumPy sgemm floor is the
time of the epoch's matrix products alone (forward, both backward products) on the same
shapes through NumPy's sgemm, out= buffers and no Python per element.

    python benches/train_compare.py                      # the full run (several minutes)
    python benches/train_compare.py --markdown           # also the README table
    python benches/train_compare.py --quick              # tiny sizes: a smoke test
    /work/peers/bin/python benches/train_compare.py      # with torch, JAX and scikit-learn

Run it in an environment that has ferroptim (``pip install dist/ferroptim-*.whl``) and
whichever peers you want compared.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

import ferroptim as fo
from ferroptim.demo.data import moons, spirals

from _common import batch_sizes, fmt_s, he_init, import_peers, load_average, machine, setup_threads

LR = 1e-3
CONTENDERS = ["lecture", "numpy_fo", "torch", "jax", "jax_numpy", "sklearn", "fit", "floor"]
LABELS = {
    "lecture": "lecture NumPy",
    "numpy_fo": "NumPy + ferroptim batches and step",
    "torch": "torch fused Adam",
    "jax": "JAX + optax, epoch in lax.scan",
    "jax_numpy": "JAX + optax, lax.scan over NumPy batches",
    "sklearn": "scikit-learn MLPClassifier",
    "fit": "ferroptim fit",
    "floor": "NumPy sgemm floor (matmuls only)",
}


def teacher_softmax(m: int, seed: int, n: int = 64, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """X ~ N(0, 1) of shape (m, n) float32 and int64 labels drawn from the softmax of
    ``X @ T`` (T ~ N(0, 9/n), fixed by the seed): a well-specified softmax regression."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n), dtype=np.float32)
    T = rng.standard_normal((n, k)) * (3 / np.sqrt(n))
    y = np.argmax(X @ T + rng.gumbel(size=(m, k)), axis=1)  # Gumbel-max: a softmax draw
    return X, y.astype(np.int64)


@dataclass
class Workload:
    """One row of the table: a network, its data and the targets for ``fit``.

    ``targets`` are ``(contender, factor)``: fit must be ``factor`` times faster;
    ``floor_factor``: fit within that factor of the sgemm floor (None: no target)."""

    key: str
    title: str
    sizes: list
    output: str  # "sigmoid" (binary cross-entropy, Y (m, 1) float32) or "softmax" (int labels)
    m: int
    batch: int
    quick_m: int
    targets: list
    floor_factor: float | None = None
    jax_variants: tuple = ("jax",)

    def data(self, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if self.key == "W1":
            return moons(m, seed)
        if self.key == "W2":
            return spirals(m, seed)
        return teacher_softmax(m, seed, self.sizes[0], self.sizes[-1])


WORKLOADS = {
    "W1": Workload("W1", "lecture net [2,5,2,1], batch 64", [2, 5, 2, 1], "sigmoid", m=300_000, batch=64,
                   quick_m=2_000, targets=[("lecture", 40.0), ("jax", 5.0)]),
    "W2": Workload("W2", "2-32-32-1 (the demo's), batch 512", [2, 32, 32, 1], "sigmoid", m=1_000_000,
                   batch=512, quick_m=4_096, targets=[("lecture", 5.0), ("jax", 1.5), ("torch", 8.0)]),
    "W3": Workload("W3", "softmax regression 64->10, batch 1024", [64, 10], "softmax", m=1_000_000,
                   batch=1024, quick_m=4_096, targets=[("torch", 2.5), ("jax", 2.0)],
                   jax_variants=("jax", "jax_numpy")),
    "W4": Workload("W4", "MLP 64-256-256-10, batch 1024", [64, 256, 256, 10], "softmax", m=1_000_000,
                   batch=1024, quick_m=4_096, targets=[("torch", 1.1), ("jax", 1.1)], floor_factor=1.3),
}  # fmt: skip


# --- the contenders: each has epoch() -> (seconds, mean cost per example, updates) ----------


class LectureNumPy:
    """The course's mini-batch Adam code (examples as columns), generalised to L layers."""

    def __init__(self, w: Workload, X, y, init, seed):
        self.output = w.output
        self.X = np.ascontiguousarray(X.T)  # (n_x, m), the course's layout
        if w.output == "sigmoid":
            self.Y = np.ascontiguousarray(y.T)  # (1, m)
        else:
            self.Y = np.zeros((w.sizes[-1], len(X)), np.float32)  # one-hot (k, m)
            self.Y[y, np.arange(len(X))] = 1
        self.parameters = {}
        for l, (W, b) in enumerate(init, start=1):
            self.parameters[f"W{l}"] = np.ascontiguousarray(W.T)
            self.parameters[f"b{l}"] = b.reshape(-1, 1).copy()
        self.L = len(init)
        self.v = {f"d{k}": np.zeros_like(p) for k, p in self.parameters.items()}
        self.s = {f"d{k}": np.zeros_like(p) for k, p in self.parameters.items()}
        self.t, self.seed, self.batch = 0, seed, w.batch

    @staticmethod
    def random_mini_batches(X, Y, mini_batch_size, seed):
        np.random.seed(seed)
        m = X.shape[1]
        permutation = np.random.permutation(m)
        shuffled_X = X[:, permutation]
        shuffled_Y = Y[:, permutation]
        mini_batches = []
        num_complete_minibatches = math.floor(m / mini_batch_size)
        for k in range(num_complete_minibatches):
            mini_batch_X = shuffled_X[:, k * mini_batch_size : (k + 1) * mini_batch_size]
            mini_batch_Y = shuffled_Y[:, k * mini_batch_size : (k + 1) * mini_batch_size]
            mini_batches.append((mini_batch_X, mini_batch_Y))
        if m % mini_batch_size != 0:
            mini_batch_X = shuffled_X[:, num_complete_minibatches * mini_batch_size :]
            mini_batch_Y = shuffled_Y[:, num_complete_minibatches * mini_batch_size :]
            mini_batches.append((mini_batch_X, mini_batch_Y))
        return mini_batches

    def forward_propagation(self, X):
        caches = [X]
        A = X
        for l in range(1, self.L + 1):
            Z = np.dot(self.parameters[f"W{l}"], A) + self.parameters[f"b{l}"]
            if l < self.L:
                A = np.maximum(0, Z)  # relu
            elif self.output == "sigmoid":
                A = 1 / (1 + np.exp(-Z))
            else:
                e = np.exp(Z - np.max(Z, axis=0, keepdims=True))
                A = e / np.sum(e, axis=0, keepdims=True)
            caches.append(A)
        return A, caches

    def compute_cost(self, AL, Y):
        if self.output == "sigmoid":
            logprobs = np.multiply(-np.log(AL), Y) + np.multiply(-np.log(1 - AL), 1 - Y)
        else:
            logprobs = -np.multiply(np.log(AL), Y)
        return np.sum(logprobs)  # summed over the batch; divided by m once per epoch

    def backward_propagation(self, X, Y, caches):
        m = X.shape[1]
        grads = {}
        dZ = 1.0 / m * (caches[-1] - Y)  # sigmoid + cross-entropy, and softmax + cross-entropy
        for l in range(self.L, 0, -1):
            A_prev = caches[l - 1]
            grads[f"dW{l}"] = np.dot(dZ, A_prev.T)
            grads[f"db{l}"] = np.sum(dZ, axis=1, keepdims=True)
            if l > 1:
                dA = np.dot(self.parameters[f"W{l}"].T, dZ)
                dZ = np.multiply(dA, A_prev > 0)
        return grads

    def update_parameters_with_adam(self, grads, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-8):
        t, v, s = self.t, self.v, self.s
        for l in range(1, self.L + 1):
            for p in ("W", "b"):
                d = f"d{p}{l}"
                v[d] = beta1 * v[d] + (1 - beta1) * grads[d]
                v_corrected = v[d] / (1 - beta1**t)
                s[d] = beta2 * s[d] + (1 - beta2) * np.power(grads[d], 2)
                s_corrected = s[d] / (1 - beta2**t)
                self.parameters[f"{p}{l}"] = self.parameters[f"{p}{l}"] - learning_rate * v_corrected / (
                    np.sqrt(s_corrected) + epsilon
                )

    def epoch(self):
        start = time.perf_counter()
        self.seed += 1
        minibatches = self.random_mini_batches(self.X, self.Y, self.batch, self.seed)
        cost_total = 0.0
        for minibatch_X, minibatch_Y in minibatches:
            AL, caches = self.forward_propagation(minibatch_X)
            cost_total += self.compute_cost(AL, minibatch_Y)
            grads = self.backward_propagation(minibatch_X, minibatch_Y, caches)
            self.t += 1
            self.update_parameters_with_adam(grads, LR)
        cost_avg = cost_total / self.X.shape[1]
        return time.perf_counter() - start, float(cost_avg), len(minibatches)


def numpy_loss_and_grad(params: dict, L: int, output: str, Xb, yb) -> tuple[float, dict]:
    """Mean cross-entropy of a batch (rows) and its gradients, NumPy in place where it can."""
    inputs = []
    A = Xb
    for l in range(1, L + 1):
        inputs.append(A)
        Z = A @ params[f"W{l}"]
        Z += params[f"b{l}"]
        A = np.maximum(Z, 0, out=Z) if l < L else Z
    b = len(Xb)
    if output == "sigmoid":
        z = A
        cost = float(np.mean(np.maximum(z, 0) - yb * z + np.log1p(np.exp(-np.abs(z)))))
        e = np.exp(-np.abs(z))
        dZ = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
        dZ -= yb
    else:
        A -= A.max(axis=1, keepdims=True)
        rows = np.arange(b)
        E = np.exp(A)
        S = E.sum(axis=1, keepdims=True)
        cost = float(np.mean(np.log(S[:, 0]) - A[rows, yb]))
        dZ = E
        dZ /= S
        dZ[rows, yb] -= 1
    dZ *= np.float32(1 / b)
    grads = {}
    for l in range(L, 0, -1):
        A_prev = inputs[l - 1]
        grads[f"W{l}"] = A_prev.T @ dZ
        grads[f"b{l}"] = dZ.sum(axis=0)
        if l > 1:
            dZ = dZ @ params[f"W{l}"].T
            dZ *= A_prev > 0
    return cost, grads


class NumPyFerroptim:
    """Rows, in-place NumPy forward/backward, ``fo.MiniBatches`` and ``fo.Adam``."""

    def __init__(self, w: Workload, X, y, init, seed):
        self.params = {}
        for l, (W, b) in enumerate(init, start=1):
            self.params[f"W{l}"], self.params[f"b{l}"] = W.copy(), b.copy()
        self.L, self.output, self.m = len(init), w.output, len(X)
        self.batches = fo.MiniBatches(X, y, batch_size=w.batch, seed=seed)
        self.opt = fo.Adam(self.params, lr=LR)

    def epoch(self):
        start = time.perf_counter()
        total, updates = 0.0, 0
        for Xb, yb in self.batches:
            cost, grads = numpy_loss_and_grad(self.params, self.L, self.output, Xb, yb)
            self.opt.step(grads)
            total += cost * len(Xb)
            updates += 1
        return time.perf_counter() - start, total / self.m, updates


class Torch:
    """``nn.Sequential``, fused Adam, ``randperm`` + ``index_select``."""

    def __init__(self, w: Workload, X, y, init, seed, torch):
        self.torch = torch
        layers = []
        for l, (W, b) in enumerate(init, start=1):
            lin = torch.nn.Linear(*W.shape)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W.T.copy()))
                lin.bias.copy_(torch.from_numpy(b))
            layers.append(lin)
            if l < len(init):
                layers.append(torch.nn.ReLU())
        self.model = torch.nn.Sequential(*layers)
        self.loss = torch.nn.BCEWithLogitsLoss() if w.output == "sigmoid" else torch.nn.CrossEntropyLoss()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR, fused=True)
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)
        self.gen = torch.Generator().manual_seed(seed)
        self.batch = w.batch

    def epoch(self):
        torch = self.torch
        start = time.perf_counter()
        m, b = len(self.X), self.batch
        perm = torch.randperm(m, generator=self.gen)
        total = torch.zeros(())
        updates = 0
        for i in range(0, m, b):
            idx = perm[i : i + b]
            xb, yb = self.X.index_select(0, idx), self.y.index_select(0, idx)
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss(self.model(xb), yb)
            loss.backward()
            self.opt.step()
            total += loss.detach() * len(idx)
            updates += 1
        cost = total.item() / m
        return time.perf_counter() - start, cost, updates


class Jax:
    """optax.adam; one jitted call per epoch: ``lax.scan`` over its batches.

    ``numpy_batches=False``: the permutation (``jax.random.permutation``) and the gather
    run inside the jitted epoch; True: NumPy permutes and gathers the epoch's batches into
    one (batches, b, n) array that the jitted epoch scans over."""

    def __init__(self, w: Workload, X, y, init, seed, jax, optax, numpy_batches=False):
        jnp = jax.numpy
        self.jax, self.numpy_batches = jax, numpy_batches
        self.params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in init]
        self.tx = optax.adam(LR)
        self.state = self.tx.init(self.params)
        ylab = y.astype(np.int32) if w.output == "softmax" else y
        self.Xnp, self.ynp = X, ylab
        self.X, self.y = jax.device_put(X), jax.device_put(ylab)
        self.key = jax.random.PRNGKey(seed)
        self.rng = np.random.default_rng(seed)
        m, b = len(X), w.batch
        self.m, self.b, nb, rem = m, b, m // b, m % b
        self.updates = nb + (1 if rem else 0)
        sigmoid = w.output == "sigmoid"

        def loss_fn(params, xb, yb):
            a = xb
            for W, bias in params[:-1]:
                a = jax.nn.relu(a @ W + bias)
            z = a @ params[-1][0] + params[-1][1]
            if sigmoid:
                return optax.sigmoid_binary_cross_entropy(z, yb).mean()
            return optax.softmax_cross_entropy_with_integer_labels(z, yb).mean()

        def step(carry, batch):
            params, state = carry
            xb, yb = batch
            loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
            updates, state = self.tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        def epoch_in_jit(params, state, key, X, y):
            perm = jax.random.permutation(key, m)
            full = perm[: nb * b].reshape(nb, b)

            def body(carry, idx):
                return step(carry, (X[idx], y[idx]))

            carry, losses = jax.lax.scan(body, (params, state), full)
            total = losses.sum() * b
            if rem:
                idx = perm[nb * b :]
                carry, last = step(carry, (X[idx], y[idx]))
                total = total + last * rem
            return carry, total / m

        def epoch_over_batches(params, state, Xs, ys, Xr, yr):
            carry, losses = jax.lax.scan(step, (params, state), (Xs, ys))
            total = losses.sum() * b
            if rem:
                carry, last = step(carry, (Xr, yr))
                total = total + last * rem
            return carry, total / m

        self.epoch_in_jit = jax.jit(epoch_in_jit, donate_argnums=(0, 1))
        self.epoch_over_batches = jax.jit(epoch_over_batches, donate_argnums=(0, 1))

    def epoch(self):
        jax = self.jax
        start = time.perf_counter()
        if self.numpy_batches:
            perm = self.rng.permutation(self.m)
            nb = self.m // self.b
            full = perm[: nb * self.b]
            Xs = self.Xnp[full].reshape(nb, self.b, -1)
            ys = self.ynp[full].reshape((nb, self.b) + self.ynp.shape[1:])
            rest = perm[nb * self.b :]
            (self.params, self.state), cost = self.epoch_over_batches(
                self.params, self.state, Xs, ys, self.Xnp[rest], self.ynp[rest]
            )
        else:
            self.key, sub = jax.random.split(self.key)
            (self.params, self.state), cost = self.epoch_in_jit(self.params, self.state, sub, self.X, self.y)
        cost = float(jax.block_until_ready(cost))
        return time.perf_counter() - start, cost, self.updates


class Sklearn:
    """``MLPClassifier(solver="adam")``; ``partial_fit`` runs one shuffled epoch."""

    def __init__(self, w: Workload, X, y, init, seed, neural_network):
        self.clf = neural_network.MLPClassifier(
            hidden_layer_sizes=tuple(w.sizes[1:-1]),
            activation="relu",
            solver="adam",
            alpha=0.0,
            batch_size=w.batch,
            learning_rate_init=LR,
            shuffle=True,
            random_state=seed,
        )
        self.X, self.y = X, (y.ravel().astype(np.int64) if w.output == "sigmoid" else y)
        self.classes = np.arange(max(2, w.sizes[-1]))
        self.updates = len(batch_sizes(len(X), w.batch))

    def epoch(self):
        start = time.perf_counter()
        self.clf.partial_fit(self.X, self.y, classes=self.classes)
        return time.perf_counter() - start, float(self.clf.loss_), self.updates


class Fit:
    """``fo.nn.MLP`` + ``fo.Adam`` + ``model.fit(X, Y, opt, batch_size=b, epochs=1)``; the
    model keeps its epoch counter, so each call trains the next shuffled epoch. The warm-up
    call checks the data; the timed calls pass ``check_input=False``, as one
    ``fit(epochs=n)`` call checks once."""

    def __init__(self, w: Workload, X, y, init, seed):
        self.model = fo.nn.MLP(w.sizes, hidden="relu", output=w.output, dtype=np.float32, seed=seed)
        for l, (W, b) in enumerate(init, start=1):
            self.model.params[f"W{l}"][...] = W
            self.model.params[f"b{l}"][...] = b
        self.opt = fo.Adam(self.model.params, lr=LR)
        self.X, self.y, self.batch = X, y, w.batch
        self.sizes = np.asarray(batch_sizes(len(X), w.batch), dtype=np.float64)
        self.checked = False

    def epoch(self, timing: bool = False):
        start = time.perf_counter()
        history = self.model.fit(
            self.X,
            self.y,
            self.opt,
            batch_size=self.batch,
            epochs=1,
            timing=timing,
            check_input=not self.checked,
        )
        seconds = time.perf_counter() - start
        self.checked = True
        self.last_history = history
        return seconds, float(history.costs @ self.sizes / len(self.X)), len(history.costs)

    def breakdown(self) -> dict:
        """One more epoch with ``timing=True`` (not one of the timed ones): the share of
        its wall time in gather / forward / backward / step, and the rest ("other")."""
        seconds, _, _ = self.epoch(timing=True)
        parts = {k: float(np.sum(v)) for k, v in self.last_history.timing.items()}
        parts["other"] = max(seconds - sum(parts.values()), 0.0)
        return {k: v / seconds for k, v in parts.items()}


class SgemmFloor:
    """The epoch's matrix products alone through NumPy's sgemm, into reused buffers:
    per batch of b rows, ``A_{l-1} @ W_l`` for every layer, ``A_{l-1}.T @ dZ_l`` for every
    layer and ``dZ_l @ W_l.T`` for l >= 2."""

    def __init__(self, w: Workload, m: int):
        rng = np.random.default_rng(0)
        self.sizes = batch_sizes(m, w.batch)
        self.shapes = {}
        for b in set(self.sizes):
            layers = []
            for i, o in zip(w.sizes[:-1], w.sizes[1:]):
                f32 = np.float32
                A = rng.standard_normal((b, i), dtype=f32)
                W = rng.standard_normal((i, o), dtype=f32)
                dZ = rng.standard_normal((b, o), dtype=f32)
                layers.append((A, W, dZ, np.empty((b, o), f32), np.empty((i, o), f32), np.empty((b, i), f32)))
            self.shapes[b] = layers
        self.flops = sum(
            2 * b * i * o * (3 if l > 0 else 2)
            for b in self.sizes
            for l, (i, o) in enumerate(zip(w.sizes[:-1], w.sizes[1:]))
        )

    def epoch(self):
        start = time.perf_counter()
        for b in self.sizes:
            for l, (A, W, dZ, Z, dW, dA) in enumerate(self.shapes[b]):
                np.matmul(A, W, out=Z)
                np.matmul(A.T, dZ, out=dW)
                if l > 0:
                    np.matmul(dZ, W.T, out=dA)
        return time.perf_counter() - start, float("nan"), len(self.sizes)


# --- running ------------------------------------------------------------------------------


@dataclass
class Result:
    times: list = field(default_factory=list)
    costs: list = field(default_factory=list)
    updates: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def build(key: str, w: Workload, X, y, init, seed, peers):
    if key == "lecture":
        return LectureNumPy(w, X, y, init, seed)
    if key == "numpy_fo":
        return NumPyFerroptim(w, X, y, init, seed)
    if key == "torch":
        return Torch(w, X, y, init, seed, peers["torch"]) if "torch" in peers else None
    if key in ("jax", "jax_numpy"):
        if "jax" not in peers or key not in w.jax_variants:
            return None
        return Jax(w, X, y, init, seed, peers["jax"], peers["optax"], numpy_batches=key == "jax_numpy")
    if key == "sklearn":
        return Sklearn(w, X, y, init, seed, peers["sklearn"]) if "sklearn" in peers else None
    if key == "fit":
        return Fit(w, X, y, init, seed) if hasattr(fo, "nn") else None
    if key == "floor":
        return SgemmFloor(w, len(X))
    raise ValueError(key)


def run_workload(w: Workload, m: int, rounds: int, contenders: list, peers: dict, seed: int = 0) -> dict:
    X, y = w.data(m, seed)
    if w.output == "softmax":
        y = y.astype(np.int64)
    init = he_init(w.sizes, seed)
    runners = {}
    for key in contenders:
        r = build(key, w, X, y, init, seed, peers)
        if r is not None:
            runners[key] = r
    results = {key: Result() for key in runners}
    first_cost = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's ConvergenceWarning, the course's log(0)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            for key, r in runners.items():  # warm-up epoch
                _, first_cost[key], results[key].updates = r.epoch()
            order = list(runners)
            for k in range(rounds):
                for key in order[k % len(order) :] + order[: k % len(order)]:
                    gc.collect()
                    time.sleep(0.02)  # let the previous contender's spinning threads park
                    seconds, cost, _ = runners[key].epoch()
                    results[key].times.append(seconds)
                    results[key].costs.append(cost)
    out = {
        "workload": w.key,
        "title": w.title,
        "m": m,
        "batch": w.batch,
        "contenders": {
            key: {
                "label": LABELS[key],
                "seconds": res.median,
                "min": min(res.times),
                "max": max(res.times),
                "times": res.times,
                "updates": res.updates,
                "updates_per_s": res.updates / res.median,
                "warmup_cost": first_cost[key],
                "final_cost": res.costs[-1],
            }
            for key, res in results.items()
        },
    }
    if "floor" in runners:
        out["contenders"]["floor"]["gflops"] = runners["floor"].flops / results["floor"].median / 1e9
    if "fit" in runners:
        with np.errstate(all="ignore"):
            out["fit_breakdown"] = runners["fit"].breakdown()
    out["targets"] = targets(w, out["contenders"])
    return out


SHORT = {"lecture": "lecture NumPy", "torch": "torch", "jax": "JAX"}


def targets(w: Workload, c: dict) -> list:
    """The issue's targets for fit: ``{"what", "short", "ratio", "goal", "met"}`` each, with
    ``ratio`` (peer / fit, or fit / floor) and ``met`` None when fit or the peer is missing.
    Against JAX, the faster of its variants counts."""
    rows = []
    fit = c.get("fit", {}).get("seconds")
    for peer, goal in w.targets:
        best = [c[k]["seconds"] for k in ((peer,) if peer != "jax" else ("jax", "jax_numpy")) if k in c]
        ratio = min(best) / fit if best and fit else None
        met = None if ratio is None else ratio >= goal
        rows.append(
            {
                "what": f">= {goal:g}x faster than {SHORT[peer]}",
                "short": f"vs {SHORT[peer]}",
                "ratio": ratio,
                "goal": f">= {goal:g}x",
                "met": met,
            }
        )
    if w.floor_factor:
        floor = c.get("floor", {}).get("seconds")
        ratio = fit / floor if fit and floor else None
        met = None if ratio is None else ratio <= w.floor_factor
        rows.append(
            {
                "what": f"within {w.floor_factor:g}x of the sgemm floor",
                "short": "/ sgemm floor",
                "ratio": ratio,
                "goal": f"<= {w.floor_factor:g}x",
                "met": met,
            }
        )
    return rows


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}x"


def print_text(r: dict) -> None:
    print(
        f"\n{r['workload']}: {r['title']}, m = {r['m']:,}, {len(batch_sizes(r['m'], r['batch'])):,} updates per epoch"
    )
    c = r["contenders"]
    width = max(len(v["label"]) for v in c.values()) + 2
    print(
        f"  {'':{width}}{'s/epoch':>10} {'min':>9} {'max':>9} {'updates/s':>11}  cost: warm-up -> last epoch"
    )
    for v in c.values():
        cost = "" if math.isnan(v["warmup_cost"]) else f"{v['warmup_cost']:.4f} -> {v['final_cost']:.4f}"
        extra = f"  ({v['gflops']:.1f} GFLOP/s)" if "gflops" in v else ""
        print(
            f"  {v['label']:{width}}{fmt_s(v['seconds']):>10} {fmt_s(v['min']):>9} {fmt_s(v['max']):>9}"
            f" {v['updates_per_s']:11,.0f}  {cost}{extra}"
        )
    if "fit" in c:
        b = r["fit_breakdown"]
        print("  fit's epoch (one more, timing=True): " + ", ".join(f"{k} {v:.0%}" for k, v in b.items()))
    for t in r["targets"]:
        state = "n/a (fit or the peer not measured)" if t["met"] is None else "met" if t["met"] else "MISSED"
        print(f"  target: fit {t['what']}: {fmt_ratio(t['ratio'])} {state}")


def print_markdown(results: list) -> None:
    cols = ["lecture", "numpy_fo", "torch", "jax", "sklearn", "fit"]
    names = [
        "lecture NumPy",
        "NumPy + ferroptim",
        "torch fused",
        "JAX + optax (lax.scan)",
        "scikit-learn",
        "**ferroptim fit**",
    ]
    print("\n| workload | " + " | ".join(names) + " | fit vs targets |")
    print("|---|" + "---:|" * len(cols) + "---|")
    for r in results:
        c = r["contenders"]
        cells = []
        for k in cols:
            if (
                k == "jax"
                and "jax_numpy" in c
                and ("jax" not in c or c["jax_numpy"]["seconds"] < c["jax"]["seconds"])
            ):
                cells.append(f"{c['jax_numpy']['seconds']:.3f} (NumPy batches)")
            elif k in c:
                cell = f"{c[k]['seconds']:.3f}"
                cells.append(f"**{cell}**" if k == "fit" else cell)
            else:
                cells.append("—")
        tg = "; ".join(
            f"{t['short']} {fmt_ratio(t['ratio'])} ({t['goal']}"
            + ("" if t["met"] is None else " ✓" if t["met"] else " ✗")
            + ")"
            for t in r["targets"]
        )
        if "floor" in c:
            tg += f" (sgemm floor {c['floor']['seconds']:.3f} s)"
        print(f"| {r['workload']}: {r['title']}, m = {r['m']:,} | " + " | ".join(cells) + f" | {tg} |")
    shares = [r for r in results if "fit_breakdown" in r]
    if shares:
        parts = list(shares[0]["fit_breakdown"])
        print("\n| fit's epoch | " + " | ".join(parts) + " |")
        print("|---|" + "---:|" * len(parts))
        for r in shares:
            print(f"| {r['workload']} | " + " | ".join(f"{r['fit_breakdown'][k]:.0%}" for k in parts) + " |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", nargs="*", choices=list(WORKLOADS), help="default: all four")
    ap.add_argument("--contenders", nargs="*", choices=CONTENDERS, help="default: every importable one")
    ap.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="timed epochs per contender, interleaved (>= 3; default 5, quick 3)",
    )
    ap.add_argument("--threads", type=int, default=2, help="threads of every contender (default 2)")
    ap.add_argument(
        "--quick", action="store_true", help="a few thousand examples per workload (a smoke test)"
    )
    ap.add_argument("--examples", type=int, default=None, help="m of every workload (default: the issue's)")
    ap.add_argument("--markdown", action="store_true", help="also print the README table")
    ap.add_argument("--json", metavar="PATH", help="write every number to PATH")
    args = ap.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 5)
    if rounds < 3:
        ap.error("--rounds must be >= 3 (a median of at least three)")
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    if args.examples is not None and args.examples < 1:
        ap.error("--examples must be >= 1")

    notes = setup_threads(args.threads)
    peers = import_peers(args.threads, notes)
    load = load_average()
    print(f"Machine: {machine(peers, args.threads)}")
    print(
        f"Threads: {args.threads} for every contender (fo.set_num_threads, torch.set_num_threads, threadpoolctl, CPU affinity)"
    )
    for note in notes:
        print(f"  {note}")
    print(
        f"One shuffled epoch, float32, Adam lr {LR:g}; warm-up epoch, then median of {rounds} interleaved rounds"
    )
    print(f"1/5/15-min load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)

    contenders = args.contenders or CONTENDERS
    results = []
    for key in args.workloads or list(WORKLOADS):
        w = WORKLOADS[key]
        m = args.examples or (w.quick_m if args.quick else w.m)
        r = run_workload(w, m, rounds, contenders, peers)
        results.append(r)
        print_text(r)
        print(f"  load average now: {load_average()[0]:.2f}", flush=True)

    after = load_average()
    print(f"\n1/5/15-min load average after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
    if args.markdown:
        print_markdown(results)
        print(
            f"\n{machine(peers, args.threads)}; load average {load[0]:.2f} before, {after[0]:.2f} after; "
            f"`python benches/train_compare.py {' '.join(sys.argv[1:] if argv is None else argv)}`"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": machine(peers, args.threads),
                    "date": time.strftime("%Y-%m-%d", time.gmtime()),
                    "threads": args.threads,
                    "rounds": rounds,
                    "load_before": load,
                    "load_after": after,
                    "notes": notes,
                    "results": results,
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
