"""Gradient checking as the course teaches it: :meth:`ferroptim.nn.MLP.gradient_check`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .model import MLP


def float64_copy(model: MLP) -> MLP:
    """A float64 copy of ``model``: the same architecture, ``alpha``, counters and seed,
    its parameters converted (exactly) to float64."""
    from .model import MLP

    st = model.__getstate__()
    arch = dict(st["architecture"], dtype=np.float64)
    sd = dict(
        st["state_dict"],
        params={k: v.astype(np.float64) for k, v in model.params.items()},
        buffers={k: v.astype(np.float64) for k, v in model.buffers.items()},
    )
    copy = MLP.__new__(MLP)
    copy.__setstate__({"architecture": arch, "state_dict": sd, "extra": dict(st["extra"])})
    return copy


def gradient_check(model: MLP, X: Any, Y: Any, eps: float = 1e-7) -> dict[str, float]:
    """See :meth:`ferroptim.nn.MLP.gradient_check`."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)) or not 0 < eps < 1:
        raise ValueError(f"eps must be a number in (0, 1), got {eps!r}")
    m64 = float64_copy(model)
    X = np.require(m64._check_X(X), requirements=["C", "A"])
    Yc = m64._check_Y(Y, X.shape[0])
    # Batch norm in training mode (the batch's statistics), as fit differentiates it; the
    # copy's running statistics are not used.
    _, grads = m64.loss_and_grad(X, Y, training=True) if m64.batch_norm else m64.loss_and_grad(X, Y)
    analytic = {k: np.array(v, dtype=np.float64) for k, v in grads.items()}
    names = m64._param_names()
    params = m64._param_list()
    scratch = [np.empty_like(p) for p in params]

    def J() -> float:  # cost with the L2 penalty, as loss_and_grad differentiates it
        return float(m64._core.loss_and_grad(params, X, Yc, scratch, None, None, [], True))

    out = {}
    for name, p in zip(names, params):
        approx = np.empty_like(p)
        flat, gflat = p.reshape(-1), approx.reshape(-1)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + eps
            plus = J()
            flat[i] = keep - eps
            minus = J()
            flat[i] = keep
            gflat[i] = (plus - minus) / (2 * eps)
        g = analytic[name]
        den = np.linalg.norm(g) + np.linalg.norm(approx)
        out[name] = float(np.linalg.norm(g - approx) / den) if den > 0 else 0.0
    return out
