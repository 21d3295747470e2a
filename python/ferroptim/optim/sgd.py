"""Gradient descent: plain, with heavy-ball or Nesterov momentum (``SGD``), and the
lecture's EWA momentum (``Momentum``)."""

from __future__ import annotations

from .base import LR, DtypeLike, Optimizer, ParamsLike


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with momentum (``torch.optim.SGD``).

    With ``g`` the gradient (negated if ``maximize``), for each element::

        g = g + weight_decay * p                      # if weight_decay != 0
        b = g                                         # first step with momentum
        b = momentum * b + (1 - dampening) * g        # later steps
        g = g + momentum * b  if nesterov  else  b    # if momentum != 0
        p = p - lr * g

    Args:
        params: arrays to optimize (see :class:`Optimizer`).
        lr: learning rate, the lecture's alpha, in parameter units per gradient unit
            (default 1e-3, torch's); a float or a schedule ``k -> lr``.
        momentum: decay of the momentum buffer, in [0, 1) (0: plain SGD).
        dampening: the gradient's weight in the buffer is ``1 - dampening``, in [0, 1].
        nesterov: Nesterov momentum (needs momentum > 0 and dampening = 0).
        weight_decay: L2 penalty coefficient (>= 0), added to the gradient.
        maximize: ascend instead of descend.
        nan_policy, max_grad_norm, state_dtype, master_weights: see :class:`Optimizer`.

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> w = np.array([1.0, 2.0])
        >>> opt = fo.SGD([w], lr=0.1)
        >>> opt.step([np.array([1.0, -1.0])])
        >>> w
        array([0.9, 2.1])
    """

    _kind = "sgd"

    def __init__(
        self,
        params: ParamsLike,
        lr: LR = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        maximize: bool = False,
        *,
        nan_policy: str = "propagate",
        max_grad_norm: float | None = None,
        state_dtype: DtypeLike = None,
        master_weights: bool | None = None,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            weight_decay=weight_decay,
            maximize=maximize,
        )
        super().__init__(
            params,
            defaults,
            nan_policy=nan_policy,
            max_grad_norm=max_grad_norm,
            state_dtype=state_dtype,
            master_weights=master_weights,
        )


class Momentum(Optimizer):
    r"""Gradient descent with momentum, in the lecture's form.

    The velocity is an exponentially weighted average of the gradients, started at zero::

        v = beta * v + (1 - beta) * g
        p = p - lr * v

    Oscillations across a valley average out in ``v`` while the steady component along it
    adds up. Unlike ``SGD(momentum=beta)`` the gradient is scaled by ``1 - beta``, so a good
    ``lr`` here is about ``1 / (1 - beta)`` times torch's.

    Args:
        params: arrays to optimize (see :class:`Optimizer`).
        lr: learning rate (the lecture's alpha), in parameter units per gradient unit.
        beta: decay of the velocity, in [0, 1); it averages about ``1 / (1 - beta)`` steps.
        nan_policy, max_grad_norm, state_dtype, master_weights: see :class:`Optimizer`.

    State per parameter: ``velocity``.

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> w = np.zeros(1)
        >>> opt = fo.Momentum([w], lr=1.0, beta=0.9)
        >>> opt.step([np.ones(1)])
        >>> w   # v = 0.1
        array([-0.1])
    """

    _kind = "momentum"

    def __init__(
        self,
        params: ParamsLike,
        lr: LR,
        beta: float = 0.9,
        *,
        nan_policy: str = "propagate",
        max_grad_norm: float | None = None,
        state_dtype: DtypeLike = None,
        master_weights: bool | None = None,
    ):
        super().__init__(
            params,
            dict(lr=lr, beta=beta),
            nan_policy=nan_policy,
            max_grad_norm=max_grad_norm,
            state_dtype=state_dtype,
            master_weights=master_weights,
        )
