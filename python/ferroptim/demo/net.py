r"""The user's part of the demo: a small fully connected network in plain NumPy.

Examples are rows (X of shape (m, n_x), Y of shape (m, 1)); the course writes the same
network with examples as columns. For layer ``l = 1..L`` with ``A_0 = X``::

    Z_l = A_{l-1} @ W_l + b_l          W_l: (n_{l-1}, n_l), b_l: (n_l,)
    A_l = relu(Z_l)  for l < L,        p = sigmoid(Z_L)
    J   = mean over the batch of  -(y log p + (1 - y) log(1 - p))      (binary cross-entropy)

The cost is computed from ``Z_L`` directly (``softplus(z) - y z``), which never takes the
log of 0, and the backward pass starts from ``dJ/dZ_L = (p - y) / m``.
"""

from __future__ import annotations

import numpy as np

Params = dict  # name ("W1", "b1", ...) -> float32 array


def init_params(sizes: list[int], seed: int) -> Params:
    """He-initialised weights and zero biases: ``W_l ~ N(0, 2 / n_{l-1})``, float32.

    Args:
        sizes: layer widths ``[n_x, n_1, ..., n_L]``, e.g. the course's ``[2, 5, 2, 1]``.
        seed: seed of the NumPy generator.

    Returns:
        ``{"W1": (n_x, n_1), "b1": (n_1,), ...}``: the arrays an optimizer updates in place.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{l}"] = (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(np.float32)
        params[f"b{l}"] = np.zeros(n_out, dtype=np.float32)
    return params


def _logits(params: Params, X: np.ndarray, keep: list | None = None) -> np.ndarray:
    """``Z_L`` for the rows of X; appends each layer's input ``A_{l-1}`` to ``keep``."""
    L = len(params) // 2
    A = X
    for l in range(1, L + 1):
        if keep is not None:
            keep.append(A)
        Z = A @ params[f"W{l}"]
        Z += params[f"b{l}"]
        A = np.maximum(Z, 0, out=Z) if l < L else Z
    return A


def _cross_entropy(z: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy of labels y given logits z: ``softplus(z) - y z``."""
    return float(np.mean(np.maximum(z, 0) - y * z + np.log1p(np.exp(-np.abs(z)))))


def forward_backward(params: Params, X: np.ndarray, Y: np.ndarray) -> tuple[float, Params]:
    """The cost J of a batch and its gradients (backpropagation).

    Args:
        params: the network (see :func:`init_params`).
        X: (b, n_x) float32 inputs.
        Y: (b, 1) float32 labels in {0, 1}.

    Returns:
        ``(J, grads)``: J in nats per example, and ``grads`` with the keys and shapes of
        ``params`` (``dJ/dW_l``, ``dJ/db_l``), ready for ``optimizer.step(grads)``.
    """
    inputs: list = []
    z = _logits(params, X, inputs)
    cost = _cross_entropy(z, Y)
    e = np.exp(-np.abs(z))
    p = np.where(z >= 0, 1 / (1 + e), e / (1 + e))  # sigmoid(z), without overflow
    dZ = (p - Y) / np.float32(len(X))
    grads = {}
    for l in range(len(inputs), 0, -1):
        A_prev = inputs[l - 1]
        grads[f"W{l}"] = A_prev.T @ dZ
        grads[f"b{l}"] = dZ.sum(axis=0)
        if l > 1:
            dZ = dZ @ params[f"W{l}"].T
            dZ *= A_prev > 0  # relu'(Z_{l-1}): A_{l-1} = relu(Z_{l-1}) > 0 exactly where Z_{l-1} > 0
    return cost, grads


def predict_proba(params: Params, X: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """``p = sigmoid(Z_L)``, the predicted probability of class 1, shape (m,), computed
    ``chunk`` rows at a time (bounded memory for millions of rows)."""
    out = np.empty(len(X), dtype=np.float32)
    for i in range(0, len(X), chunk):
        z = _logits(params, X[i : i + chunk])[:, 0]
        out[i : i + chunk] = 0.5 * (1 + np.tanh(0.5 * z))
    return out


def evaluate(params: Params, X: np.ndarray, Y: np.ndarray, chunk: int = 1 << 18) -> tuple[float, float]:
    """Cost J (mean binary cross-entropy, nats per example) and accuracy (fraction of
    examples whose ``p > 0.5`` matches Y) over all rows of X, ``chunk`` rows at a time."""
    total, correct = 0.0, 0
    for i in range(0, len(X), chunk):
        z, y = _logits(params, X[i : i + chunk]), Y[i : i + chunk]
        total += _cross_entropy(z, y) * len(z)
        correct += int(np.count_nonzero((z > 0) == (y > 0.5)))
    return total / len(X), correct / len(X)
