"""The small NumPy network of the distributed tests, shared by the MPI workers and the
single-process reference."""

import numpy as np

EPOCHS = 3
GLOBAL_BATCH = 64
SEED = 7


def data(m=4096):
    """Two noisy interleaved half-circles: X (m, 2) float64, y (m, 1) in {0, 1}."""
    rng = np.random.default_rng(123)
    y = rng.integers(0, 2, m)
    t = rng.uniform(0, np.pi, m)
    X = np.stack([np.cos(t) + y, np.sin(t) * (1 - 2 * y) + 0.5 * y], axis=1)
    return X + rng.normal(scale=0.1, size=X.shape), y[:, None].astype(np.float64)


def init(seed):
    rng = np.random.default_rng(seed)
    return {
        "W1": rng.normal(size=(2, 16)) * 0.5,
        "b1": np.zeros(16),
        "W2": rng.normal(size=(16, 1)) * 0.5,
        "b2": np.zeros(1),
    }


def loss_grads(p, X, y):
    """Gradients of the mean binary cross-entropy of a 2-16-1 tanh network."""
    h = np.tanh(X @ p["W1"] + p["b1"])
    out = 1 / (1 + np.exp(-(h @ p["W2"] + p["b2"])))
    d2 = (out - y) / len(X)
    d1 = (d2 @ p["W2"].T) * (1 - h * h)
    return {"W1": X.T @ d1, "b1": d1.sum(0), "W2": h.T @ d2, "b2": d2.sum(0)}
