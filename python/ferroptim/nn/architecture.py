"""The network's architecture arguments: the activations, outputs, losses and inits there
are, and the checks that turn ``MLP``'s arguments (hidden activations, loss, dropout rates,
batch norm) into what the core takes."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .. import _core

HIDDEN: tuple[str, ...] = _core.HIDDEN_ACTIVATIONS  # the core's list, one name per activation
OUTPUTS = ("sigmoid", "softmax", "identity", "exp")
# The losses of each output, its default first (the core's output for each pair: _CORE_OUTPUT).
LOSSES: dict[str, tuple[str, ...]] = {
    "sigmoid": ("log_loss",),
    "softmax": ("log_loss",),
    "identity": ("squared_error", "huber"),
    "exp": ("poisson",),
}
_CORE_OUTPUT = {"huber": "huber", "poisson": "poisson"}
INITS = ("he", "xavier", "glorot", "lecture")


def _dropout_rates(dropout: Any, hidden: int) -> list:
    """``dropout`` (a rate, or one per hidden layer) as one rate per hidden layer, each a
    number in [0, 1); an empty list for no dropout."""

    def rate(name: str, r: Any) -> float:
        if isinstance(r, (bool, np.bool_)) or not isinstance(r, (int, float, np.floating, np.integer)):
            raise TypeError(f"{name} must be a number in [0, 1), got {type(r).__name__}")
        if not 0.0 <= float(r) < 1.0:
            raise ValueError(f"{name} must be in [0, 1) (the fraction of units dropped), got {r!r}")
        return float(r)

    if isinstance(dropout, (str, bytes)) or not hasattr(dropout, "__len__"):
        rates = [rate("dropout", dropout)] * hidden
    else:
        if len(dropout) != hidden:
            raise ValueError(
                f"dropout must be one rate or one per hidden layer ({hidden}), got {len(dropout)} rates"
            )
        rates = [rate(f"dropout[{i}]", r) for i, r in enumerate(dropout)]
    return rates if any(rates) else []


def _batch_norm(batch_norm: Any, momentum: Any, eps: Any, hidden: int) -> Optional[tuple]:
    """``(momentum, eps)`` checked for the core, or None without batch norm."""
    if not isinstance(batch_norm, (bool, np.bool_)):
        raise TypeError(f"batch_norm must be True or False, got {type(batch_norm).__name__}")
    for name, v in (("batch_norm_momentum", momentum), ("batch_norm_eps", eps)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise TypeError(f"{name} must be a number, got {type(v).__name__}")
    if not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"batch_norm_momentum must be in [0, 1], got {momentum!r}")
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"batch_norm_eps must be a finite number > 0, got {eps!r}")
    if not batch_norm:
        return None
    if hidden < 1:
        raise ValueError("batch_norm needs at least one hidden layer to normalize")
    return (float(momentum), float(eps))


def _new_buffers(sizes: Sequence[int], bn: Optional[tuple], dtype: Any) -> dict:
    """Fresh running statistics (means 0, variances 1), as torch's ``BatchNorm1d`` starts."""
    out: dict[str, np.ndarray] = {}
    if bn is not None:
        for l in range(1, len(sizes) - 1):
            out[f"running_mean{l}"] = np.zeros(sizes[l], dtype=dtype)
            out[f"running_var{l}"] = np.ones(sizes[l], dtype=dtype)
    return out


def _hidden_activations(hidden: Any, layers: int) -> list:
    """``hidden`` (one activation name, or one per hidden layer) as one name per hidden
    layer, each one of :data:`HIDDEN`."""
    if isinstance(hidden, str):
        if hidden not in HIDDEN:
            raise ValueError(f"hidden must be one of {HIDDEN} or a list of them, got {hidden!r}")
        return [hidden] * layers
    if not isinstance(hidden, (list, tuple)):
        raise TypeError(
            f"hidden must be an activation name or a list of one per hidden layer, got {type(hidden).__name__}"
        )
    if len(hidden) != layers:
        raise ValueError(
            f"hidden must be one activation or a list of one per hidden layer ({layers}), "
            f"got {len(hidden)}: {list(hidden)!r}"
        )
    for i, h in enumerate(hidden):
        if not isinstance(h, str) or h not in HIDDEN:
            raise ValueError(f"hidden[{i}] must be one of {HIDDEN}, got {h!r}")
    return list(hidden)


def _loss(output: str, loss: Any, huber_delta: Any) -> str:
    """The loss named by ``loss`` for ``output`` (None: the output's default,
    :data:`LOSSES`), with ``huber_delta`` checked: a finite number > 0, left at 1.0 unless
    the loss is Huber."""
    allowed = LOSSES[output]
    if loss is None:
        loss = allowed[0]
    elif loss not in allowed:
        other = [o for o, ls in LOSSES.items() if loss in ls]
        hint = f"; loss={loss!r} needs output={other[0]!r}" if other else ""
        raise ValueError(f"loss must be one of {allowed} with output={output!r}, got {loss!r}{hint}")
    if isinstance(huber_delta, (bool, np.bool_)) or not isinstance(
        huber_delta, (int, float, np.floating, np.integer)
    ):
        raise TypeError(f"huber_delta must be a number, got {type(huber_delta).__name__}")
    if not (np.isfinite(huber_delta) and huber_delta > 0):
        raise ValueError(f"huber_delta must be a finite number > 0, got {huber_delta!r}")
    if loss != "huber" and huber_delta != 1.0:
        raise ValueError(f"huber_delta is the threshold of loss='huber'; this model's loss is {loss!r}")
    return str(loss)
