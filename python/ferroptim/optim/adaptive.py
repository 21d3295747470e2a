"""Adaptive methods: RMSprop, the Adam family (Adam, AdamW, Adamax, NAdam, RAdam), Adagrad,
Adadelta, Lion and Rprop; each scales its step per coordinate from running gradient
statistics (a root of averaged squares, Lion's sign, or Rprop's sign history)."""

from __future__ import annotations

from .base import LR, DtypeLike, Optimizer, ParamsLike
from .groups import _betas


class RMSprop(Optimizer):
    r"""RMSprop (``torch.optim.RMSprop``): divide by the root of an EWA of squared gradients.

    With ``g`` the gradient (negated if ``maximize``), for each element::

        g = g + weight_decay * p                  # if weight_decay != 0
        s = alpha * s + (1 - alpha) * g * g       # the lecture's S_dW, beta = alpha
        a = alpha * a + (1 - alpha) * g           # if centered
        d = sqrt(s - a * a) + eps  if centered  else  sqrt(s) + eps
        b = momentum * b + g / d;  p = p - lr * b # if momentum > 0
        p = p - lr * g / d                        # otherwise

    Steep directions (large ``s``) take smaller steps, flat ones larger.

    Args:
        params: arrays to optimize (see :class:`Optimizer`).
        lr: learning rate (alpha in the lecture), in parameter units (the step is scaled by
            the gradient's own magnitude, so ``lr`` is roughly the step size).
        alpha: decay of the squared-gradient EWA, in [0, 1) (the lecture's beta; torch's
            default 0.99).
        eps: added to the denominator outside the square root (> 0).
        weight_decay: L2 penalty coefficient (>= 0).
        momentum: momentum of the update, in [0, 1).
        centered: normalise by the estimated variance instead of the second moment.
        maximize: ascend instead of descend.
        nan_policy, max_grad_norm, state_dtype, master_weights: see :class:`Optimizer`.

    State per parameter: ``square_avg``, and ``momentum_buffer`` / ``grad_avg`` when used.
    """

    _kind = "rmsprop"

    def __init__(
        self,
        params: ParamsLike,
        lr: LR = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        maximize: bool = False,
        *,
        nan_policy: str = "propagate",
        max_grad_norm: float | None = None,
        state_dtype: DtypeLike = None,
        master_weights: bool | None = None,
    ):
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
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


class Adam(Optimizer):
    r"""Adam (``torch.optim.Adam``): momentum plus RMSprop, both bias-corrected.

    At update ``t`` (1-based), with ``g`` the gradient (negated if ``maximize``)::

        g = g + weight_decay * p                   # L2 penalty, if weight_decay != 0
        m = beta1 * m + (1 - beta1) * g            # EWA of gradients (V_dW)
        v = beta2 * v + (1 - beta2) * g * g        # EWA of squared gradients (S_dW)
        v_max = maximum(v_max, v); v_hat = v_max   # if amsgrad, else v_hat = v
        p = p - (lr / (1 - beta1**t)) * m / (sqrt(v_hat) / sqrt(1 - beta2**t) + eps)

    which is the lecture's ``p -= alpha * m_corr / (sqrt(v_corr) + eps)`` with epsilon
    placed as torch places it. It is computed as ``p - (lr c / (1 - beta1**t)) m /
    (sqrt(v_hat) + eps c)`` with ``c = sqrt(1 - beta2**t)``: the same value (numerator and
    denominator multiplied by ``c``) with one division per element instead of two, so
    results match torch to float rounding.

    Args:
        params: arrays to optimize (see :class:`Optimizer`).
        lr: learning rate (the lecture's alpha), roughly the size of a step in parameter
            units; a float or a schedule ``k -> lr``.
        betas: ``(beta1, beta2)``, decays of the two EWAs, each in [0, 1).
        eps: the lecture's epsilon, added outside the square root (> 0).
        weight_decay: L2 penalty coefficient added to the gradient (>= 0).
        amsgrad: use the running maximum of ``v`` (AMSGrad).
        maximize: ascend instead of descend.
        nan_policy, max_grad_norm, state_dtype, master_weights: see :class:`Optimizer`.

    State per parameter: ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v) and, with amsgrad,
    ``max_exp_avg_sq``.

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.Adam({"w": w}, lr=0.1)
        >>> opt.step({"w": np.array([1.0, -2.0, 0.0], dtype=np.float32)})
        >>> w.round(4)   # the first step moves each weight by about lr against its gradient
        array([-0.1,  0.1,  0. ], dtype=float32)
    """

    _kind = "adam"

    def __init__(
        self,
        params: ParamsLike,
        lr: LR = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        maximize: bool = False,
        *,
        nan_policy: str = "propagate",
        max_grad_norm: float | None = None,
        state_dtype: DtypeLike = None,
        master_weights: bool | None = None,
    ):
        defaults = dict(
            lr=lr,
            betas=_betas(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
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


class AdamW(Adam):
    r"""AdamW (``torch.optim.AdamW``): Adam with decoupled weight decay.

    Identical to :class:`Adam` except that weight decay shrinks the parameter directly
    instead of being added to the gradient, before the Adam update::

        p = p * (1 - lr * weight_decay)
        (then the Adam update above, with no L2 term in g)

    Args:
        params, lr, betas, eps, amsgrad, maximize, nan_policy, max_grad_norm: as in
            :class:`Adam`.
        weight_decay: decoupled decay coefficient, per unit of ``lr`` (>= 0; default 1e-2,
            torch's).
    """

    _kind = "adamw"

    def __init__(
        self,
        params: ParamsLike,
        lr: LR = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
        *,
        nan_policy: str = "propagate",
        max_grad_norm: float | None = None,
        state_dtype: DtypeLike = None,
        master_weights: bool | None = None,
    ):
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize,
            nan_policy=nan_policy,
            max_grad_norm=max_grad_norm,
            state_dtype=state_dtype,
            master_weights=master_weights,
        )


class Adagrad(Optimizer):
    r"""Adagrad (``torch.optim.Adagrad``): divide by the root of the sum of squared gradients.

    At update ``t`` (1-based), with ``g`` the gradient (negated if ``maximize``)::

        g = g + weight_decay * p                  # if weight_decay != 0
        s = s + g * g                             # s starts at initial_accumulator_value
        p = p - (lr / (1 + (t - 1) * lr_decay)) * g / (sqrt(s) + eps)

    Args:
        params: arrays to optimize (see :class:`Optimizer`).
        lr: learning rate, roughly the size of the first steps in parameter units.
        lr_decay: the learning rate is divided by ``1 + (t - 1) * lr_decay`` (>= 0).
        weight_decay: L2 penalty coefficient (>= 0).
        initial_accumulator_value: starting value of ``s`` (>= 0).
        eps: added to the denominator outside the square root (> 0).
        maximize: ascend instead of descend.
        nan_policy, max_grad_norm, state_dtype, master_weights: see :class:`Optimizer`.

    State per parameter: ``sum``.
    """

    _kind = "adagrad"

    def __init__(
        self,
        params: ParamsLike,
        lr: LR = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        maximize: bool = False,
        *,
        nan_policy: str = "propagate",
        max_grad_norm: float | None = None,
        state_dtype: DtypeLike = None,
        master_weights: bool | None = None,
    ):
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
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


class Adadelta(Optimizer):
    r"""Adadelta (``torch.optim.Adadelta``): step sizes from EWAs of squared gradients and
    squared updates, so the update has the units of the parameter.

    With ``g`` the gradient (negated if ``maximize``)::

        g = g + weight_decay * p                  # if weight_decay != 0
        s = rho * s + (1 - rho) * g * g
        d = sqrt(u + eps) / sqrt(s + eps) * g
        u = rho * u + (1 - rho) * d * d
        p = p - lr * d

    Args:
        params: arrays to optimize (see :class:`Optimizer`).
        lr: a dimensionless multiplier of the update (torch's default 1.0).
        rho: decay of both EWAs, in [0, 1].
        eps: inside both square roots (> 0); it also sets the size of the first steps.
        weight_decay: L2 penalty coefficient (>= 0).
        maximize: ascend instead of descend.
        nan_policy, max_grad_norm, state_dtype, master_weights: see :class:`Optimizer`.

    State per parameter: ``square_avg`` (s), ``acc_delta`` (u).
    """

    _kind = "adadelta"

    def __init__(
        self,
        params: ParamsLike,
        lr: LR = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        maximize: bool = False,
        *,
        nan_policy: str = "propagate",
        max_grad_norm: float | None = None,
        state_dtype: DtypeLike = None,
        master_weights: bool | None = None,
    ):
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(
            params,
            defaults,
            nan_policy=nan_policy,
            max_grad_norm=max_grad_norm,
            state_dtype=state_dtype,
            master_weights=master_weights,
        )


class Adamax(Optimizer):
    r"""Adamax (``torch.optim.Adamax``): Adam with the infinity norm in place of the RMS.

    At update ``t`` (1-based), with ``g`` the gradient (negated if ``maximize``)::

        g = g + weight_decay * p                  # if weight_decay != 0
        m = beta1 * m + (1 - beta1) * g
        u = maximum(beta2 * u, |g| + eps)
        p = p - (lr / (1 - beta1**t)) * m / u

    Args:
        params: arrays to optimize (see :class:`Optimizer`).
        lr: learning rate, roughly the step size in parameter units (default 2e-3).
        betas: ``(beta1, beta2)``, each in [0, 1).
        eps: added to ``|g|`` (> 0).
        weight_decay: L2 penalty coefficient (>= 0).
        maximize: ascend instead of descend.
        nan_policy, max_grad_norm, state_dtype, master_weights: see :class:`Optimizer`.

    State per parameter: ``exp_avg`` (m), ``exp_inf`` (u).
    """

    _kind = "adamax"

    def __init__(
        self,
        params: ParamsLike,
        lr: LR = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        maximize: bool = False,
        *,
        nan_policy: str = "propagate",
        max_grad_norm: float | None = None,
        state_dtype: DtypeLike = None,
        master_weights: bool | None = None,
    ):
        defaults = dict(lr=lr, betas=_betas(betas), eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(
            params,
            defaults,
            nan_policy=nan_policy,
            max_grad_norm=max_grad_norm,
            state_dtype=state_dtype,
            master_weights=master_weights,
        )


class NAdam(Optimizer):
    r"""NAdam (``torch.optim.NAdam``): Adam with Nesterov momentum and a momentum schedule.

    At update ``t`` (1-based), with ``g`` the gradient (negated if ``maximize``) and
    ``mu_t = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))``::

        p = p * (1 - lr * weight_decay)  if decoupled_weight_decay  else  g += weight_decay * p
        mu_product = mu_product * mu_t            # kept as a float32 scalar, as torch does
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        d = sqrt(v / (1 - beta2**t)) + eps
        p = p - lr * (1 - mu_t) / (1 - mu_product) * g / d
        p = p - lr * mu_{t+1} / (1 - mu_product * mu_{t+1}) * m / d

    Args:
        params: arrays to optimize (see :class:`Optimizer`).
        lr: learning rate, roughly the step size in parameter units (default 2e-3).
        betas: ``(beta1, beta2)``, each in [0, 1).
        eps: added outside the square root (> 0).
        weight_decay: weight decay coefficient (>= 0), L2 or decoupled.
        momentum_decay: the momentum schedule's rate (>= 0; torch's 4e-3).
        decoupled_weight_decay: AdamW-style decay (NAdamW).
        maximize: ascend instead of descend.
        nan_policy, max_grad_norm, state_dtype, master_weights: see :class:`Optimizer`.

    State per parameter: ``step``, ``mu_product``, ``exp_avg`` (m), ``exp_avg_sq`` (v).
    """

    _kind = "nadam"

    def __init__(
        self,
        params: ParamsLike,
        lr: LR = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        *,
        nan_policy: str = "propagate",
        max_grad_norm: float | None = None,
        state_dtype: DtypeLike = None,
        master_weights: bool | None = None,
    ):
        defaults = dict(
            lr=lr,
            betas=_betas(betas),
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
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


class RAdam(Optimizer):
    r"""RAdam (``torch.optim.RAdam``): Adam whose adaptive step is switched on only once the
    variance of its estimate is tractable, and rectified.

    At update ``t`` (1-based), with ``g`` the gradient (negated if ``maximize``),
    ``rho_inf = 2 / (1 - beta2) - 1`` and ``rho_t = rho_inf - 2 t beta2**t / (1 - beta2**t)``::

        p = p * (1 - lr * weight_decay)  if decoupled_weight_decay  else  g += weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        if rho_t > 5:
            r = sqrt((rho_t - 4) (rho_t - 2) rho_inf / ((rho_inf - 4) (rho_inf - 2) rho_t))
            p = p - m / (1 - beta1**t) * lr * sqrt(1 - beta2**t) / (sqrt(v) + eps) * r
        else:
            p = p - m / (1 - beta1**t) * lr          # SGD with momentum for the first steps

    Args:
        params: arrays to optimize (see :class:`Optimizer`).
        lr: learning rate, roughly the step size in parameter units.
        betas: ``(beta1, beta2)``, each in [0, 1).
        eps: added outside the square root (> 0).
        weight_decay: weight decay coefficient (>= 0), L2 or decoupled.
        decoupled_weight_decay: AdamW-style decay.
        maximize: ascend instead of descend.
        nan_policy, max_grad_norm, state_dtype, master_weights: see :class:`Optimizer`.

    State per parameter: ``exp_avg`` (m), ``exp_avg_sq`` (v).
    """

    _kind = "radam"

    def __init__(
        self,
        params: ParamsLike,
        lr: LR = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        *,
        nan_policy: str = "propagate",
        max_grad_norm: float | None = None,
        state_dtype: DtypeLike = None,
        master_weights: bool | None = None,
    ):
        defaults = dict(
            lr=lr,
            betas=_betas(betas),
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
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


class Lion(Optimizer):
    r"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), as optax
    and Keras define it: the sign of an interpolated momentum, with decoupled decay.

    With ``g`` the gradient::

        c = beta1 * m + (1 - beta1) * g
        p = p - lr * (sign(c) + weight_decay * p)   # sign(0) = 0
        m = beta2 * m + (1 - beta2) * g

    Every coordinate moves by exactly ``lr`` (plus decay), so ``lr`` is usually 3-10x
    smaller than Adam's and ``weight_decay`` 3-10x larger.

    Args:
        params: arrays to optimize (see :class:`Optimizer`).
        lr: the step of each coordinate, in parameter units (default 1e-4).
        betas: ``(beta1, beta2)``: interpolation for the update and decay of the momentum,
            each in [0, 1).
        weight_decay: decoupled decay coefficient per unit of ``lr`` (>= 0).
        nan_policy, max_grad_norm, state_dtype, master_weights: see :class:`Optimizer`.

    State per parameter: ``exp_avg`` (m).
    """

    _kind = "lion"

    def __init__(
        self,
        params: ParamsLike,
        lr: LR = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        nan_policy: str = "propagate",
        max_grad_norm: float | None = None,
        state_dtype: DtypeLike = None,
        master_weights: bool | None = None,
    ):
        defaults = dict(lr=lr, betas=_betas(betas), weight_decay=weight_decay)
        super().__init__(
            params,
            defaults,
            nan_policy=nan_policy,
            max_grad_norm=max_grad_norm,
            state_dtype=state_dtype,
            master_weights=master_weights,
        )


class Rprop(Optimizer):
    r"""Resilient backpropagation (Riedmiller & Braun 1993), as ``torch.optim.Rprop``.

    Only the gradient's sign is used. Each element keeps its own step size, which grows
    while the gradient keeps its sign and shrinks when it flips. With ``g`` the gradient
    (negated if ``maximize``) and ``prev`` the last one kept, for each element::

        f = etaplus   if g * prev > 0
            etaminus  if g * prev < 0      (and then g = 0: no step this time)
            1         if g * prev == 0
        step_size = clamp(step_size * f, step_sizes[0], step_sizes[1])
        p = p - sign(g) * step_size
        prev = g

    Rprop is a **full-batch** method: a sign flip must mean that the minimum was stepped
    over, which mini-batch noise also causes, shrinking every step size towards
    ``step_sizes[0]``. Use it with the whole data set's gradient (one batch holding every
    row in ``MLP.fit``), or with very large batches.

    Args:
        params: arrays to optimize (see :class:`Optimizer`).
        lr: the initial step size of every element, in parameter units (default 1e-2,
            torch's); it is read when a parameter's state is created, so a schedule has
            no effect after the first step.
        etas: ``(etaminus, etaplus)``, the factors, with ``0 < etaminus < 1 < etaplus``
            (default ``(0.5, 1.2)``).
        step_sizes: ``(min, max)`` bounds of each step size, ``0 <= min <= max``, in
            parameter units (default ``(1e-6, 50)``).
        maximize: ascend instead of descend.
        nan_policy, max_grad_norm, state_dtype, master_weights: see :class:`Optimizer`.

    State per parameter: ``step``, ``prev``, ``step_size``.

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> w = np.array([1.0, 1.0])
        >>> opt = fo.Rprop([w], lr=0.25)
        >>> opt.step([np.array([2.0, -3.0])])
        >>> w
        array([0.75, 1.25])
        >>> opt.step([np.array([1.0, 1.0])])   # same sign: x1.2; flipped: no step
        >>> w
        array([0.45, 1.25])
    """

    _kind = "rprop"

    def __init__(
        self,
        params: ParamsLike,
        lr: LR = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50.0),
        maximize: bool = False,
        *,
        nan_policy: str = "propagate",
        max_grad_norm: float | None = None,
        state_dtype: DtypeLike = None,
        master_weights: bool | None = None,
    ):
        defaults = dict(lr=lr, etas=_betas(etas), step_sizes=_betas(step_sizes), maximize=maximize)
        super().__init__(
            params,
            defaults,
            nan_policy=nan_policy,
            max_grad_norm=max_grad_norm,
            state_dtype=state_dtype,
            master_weights=master_weights,
        )
