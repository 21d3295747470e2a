"""Averaged stochastic gradient descent (``ASGD``): SGD with a decaying step and a running
average of the iterates."""

from __future__ import annotations

from .base import LR, DtypeLike, Optimizer, ParamsLike


class ASGD(Optimizer):
    r"""Averaged stochastic gradient descent (Polyak & Juditsky 1992; Bottou 2012), as
    ``torch.optim.ASGD``.

    Each parameter keeps a step size ``eta`` and an averaging weight ``mu`` (scalars), and
    ``ax``, a running average of its iterates. With ``g`` the gradient (negated if
    ``maximize``) and ``t`` the step number, for each element::

        g = g + weight_decay * p                  # if weight_decay != 0
        p = p * (1 - lambd * eta)
        p = p - eta * g
        ax = ax + (p - ax) * mu    if mu != 1   else   p

    and after the update, for the next one::

        eta = lr / (1 + lambd * lr * t) ** alpha
        mu = 1 / max(1, t - t0)

    ``eta`` starts at ``lr`` and ``mu`` at 1. As torch does, both are kept rounded to
    float32 whatever the parameter's dtype (torch holds them in float32 scalar tensors),
    so float64 parameters see the same float32-rounded ``eta`` as torch's. The parameters
    themselves are the SGD iterates; the averaged ones, ``state[i]["ax"]``, are what
    Polyak averaging evaluates (averaging starts after ``t0`` steps; until then ``ax``
    follows ``p``).

    Args:
        params: arrays to optimize (see :class:`Optimizer`).
        lr: learning rate, in parameter units per gradient unit (default 1e-2, torch's).
        lambd: decay term (>= 0): the step decays as ``(1 + lambd * lr * t) ** -alpha``,
            and each step shrinks ``p`` by ``1 - lambd * eta`` (default 1e-4).
        alpha: the power of that decay (default 0.75).
        t0: the step after which averaging starts (default 1e6).
        weight_decay: L2 penalty coefficient (>= 0), added to the gradient.
        maximize: ascend instead of descend.
        nan_policy, max_grad_norm, state_dtype, master_weights: see :class:`Optimizer`.

    State per parameter: ``step``, ``eta``, ``mu`` (numbers), ``ax`` (array).

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> w = np.array([1.0])
        >>> opt = fo.ASGD([w], lr=0.5, lambd=0.0, t0=0)
        >>> opt.step([np.array([1.0])])
        >>> w, opt.state[0]["ax"], opt.state[0]["mu"]
        (array([0.5]), array([0.5]), 1.0)
        >>> opt.step([np.array([1.0])])   # mu = 1 / max(1, 1 - 0) = 1 still: ax = p
        >>> opt.step([np.array([1.0])])   # mu = 1 / (2 - 0): ax moves half way to p
        >>> w, opt.state[0]["ax"]
        (array([-0.5]), array([-0.25]))
    """

    _kind = "asgd"

    def __init__(
        self,
        params: ParamsLike,
        lr: LR = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0.0,
        maximize: bool = False,
        *,
        nan_policy: str = "propagate",
        max_grad_norm: float | None = None,
        state_dtype: DtypeLike = None,
        master_weights: bool | None = None,
    ):
        defaults = dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay, maximize=maximize)
        super().__init__(
            params,
            defaults,
            nan_policy=nan_policy,
            max_grad_norm=max_grad_norm,
            state_dtype=state_dtype,
            master_weights=master_weights,
        )
