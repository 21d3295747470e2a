"""One row per optimizer, consumed by every per-optimizer test (as torch's ``optim_db`` of
``OptimizerInfo`` rows in torch/testing/_internal/common_optimizers.py).

Adding an optimizer to the tests is adding its row here: the parity, torch, half-precision,
state_dict, property, error and API tests read their per-optimizer facts from it, and
tests/test_api.py checks that the rows and the package's registry (``fo.optim.OPTIMIZERS``)
name the same classes, in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import ferroptim as fo

# ``draw_hyper(draw, s)``: one hypothesis draw of keyword arguments; ``s`` holds the shared
# strategies (``s.lr``, ``s.unit``, ``s.decay``, ``s.flag``, ``s.eps``, ``s.st``), see
# tests/test_properties.py.
DrawHyper = Callable[[Callable[[Any], Any], Any], dict]


@dataclass(frozen=True)
class OptimizerInfo:
    """What the tests know about one optimizer.

    Attributes:
        name: the registry name (``fo.optim.OPTIMIZERS[name]``, ``solver=name``).
        cls: the class.
        defaults: ``cls(params, **required).defaults`` (torch's defaults where torch has
            the optimizer).
        required: keyword arguments the constructor needs (Momentum has no default lr).
        configs: interesting keyword combinations, checked bit for bit against the NumPy
            reference (tests/test_parity.py; also in 16-bit storage, tests/test_half.py).
        torch: the torch.optim class name, or None where torch has no such optimizer.
        torch_configs: the combinations checked against torch.optim (tests/test_torch.py).
        state_dict_config: the combination stopped, saved, loaded and continued
            (tests/test_state_dict.py).
        state_names: keyword arguments, and the per-tensor state names after a step with them.
        second_moment: keeps a second moment (of squared gradients), so float16 state is
            refused (its range is too small for it).
        bad_hyper: ``(kwargs, message regex)`` refused at construction with ValueError.
        draw_hyper: a hypothesis draw of any valid keyword arguments (tests/test_properties.py).
    """

    name: str
    cls: type
    defaults: dict
    configs: list[dict]
    state_dict_config: dict
    state_names: tuple[dict, set]
    draw_hyper: DrawHyper
    required: dict = field(default_factory=dict)
    torch: Optional[str] = None
    torch_configs: list[dict] = field(default_factory=list)
    second_moment: bool = False
    bad_hyper: list[tuple[dict, str]] = field(default_factory=list)


def _draw_sgd(draw, s) -> dict:
    momentum = draw(s.st.sampled_from([0.0, draw(s.unit)]))
    nesterov = momentum > 0 and draw(s.flag)
    dampening = 0.0 if nesterov else draw(s.st.floats(0.0, 1.0))
    return dict(
        lr=draw(s.lr),
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
        weight_decay=draw(s.decay),
        maximize=draw(s.flag),
    )


def _draw_adam(draw, s) -> dict:
    return dict(
        lr=draw(s.lr),
        betas=(draw(s.unit), draw(s.unit)),
        eps=draw(s.eps),
        weight_decay=draw(s.decay),
        amsgrad=draw(s.flag),
        maximize=draw(s.flag),
    )


def _draw_radam(draw, s) -> dict:
    return dict(
        lr=draw(s.lr),
        betas=(draw(s.unit), draw(s.unit)),
        eps=draw(s.eps),
        weight_decay=draw(s.decay),
        decoupled_weight_decay=draw(s.flag),
        maximize=draw(s.flag),
    )


def _draw_nadam(draw, s) -> dict:
    h = _draw_radam(draw, s)
    h["momentum_decay"] = draw(s.st.sampled_from([0.0, 4e-3, 0.1]))
    return h


ADAM_STATE = {"step", "exp_avg", "exp_avg_sq"}

OPTIMIZER_DB: list[OptimizerInfo] = [
    OptimizerInfo(
        name="sgd",
        cls=fo.SGD,
        torch="SGD",
        defaults=dict(lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, maximize=False),
        configs=[
            dict(lr=0.1),
            dict(lr=0.05, momentum=0.9),
            dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
            dict(lr=0.05, momentum=0.5, dampening=0.3, maximize=True),
        ],
        torch_configs=[
            dict(lr=0.05),
            dict(lr=0.05, momentum=0.9),
            dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
            dict(lr=0.05, momentum=0.5, dampening=0.5, maximize=True),
        ],
        state_dict_config=dict(lr=0.05, momentum=0.9, nesterov=True),
        state_names=({"momentum": 0.9}, {"step", "momentum_buffer"}),
        bad_hyper=[
            (dict(nesterov=True), r"nesterov=True only with momentum > 0 and dampening = 0"),
            (dict(momentum=0.9, dampening=0.1, nesterov=True), r"nesterov"),
            (dict(momentum=1.0), r"invalid momentum=1.0"),
            (dict(dampening=1.5), r"invalid dampening=1.5"),
        ],
        draw_hyper=_draw_sgd,
    ),
    OptimizerInfo(
        name="momentum",
        cls=fo.Momentum,
        required=dict(lr=0.1),
        defaults=dict(lr=0.1, beta=0.9),
        configs=[dict(lr=0.1), dict(lr=0.3, beta=0.5)],
        state_dict_config=dict(lr=0.1, beta=0.8),
        state_names=({"lr": 0.1}, {"step", "velocity"}),
        bad_hyper=[(dict(lr=0.1, beta=1.0), r"invalid beta=1.0")],
        draw_hyper=lambda draw, s: dict(lr=draw(s.lr), beta=draw(s.unit)),
    ),
    OptimizerInfo(
        name="rmsprop",
        cls=fo.RMSprop,
        torch="RMSprop",
        second_moment=True,
        defaults=dict(
            lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False
        ),
        configs=[
            dict(),
            dict(lr=1e-3, alpha=0.9, eps=1e-6, weight_decay=0.1),
            dict(momentum=0.9),
            dict(centered=True),
            dict(centered=True, momentum=0.5, maximize=True, weight_decay=0.01),
        ],
        torch_configs=[
            dict(),
            dict(lr=1e-3, alpha=0.9, momentum=0.9, weight_decay=1e-2),
            dict(lr=1e-3, centered=True, momentum=0.5, maximize=True),
        ],
        state_dict_config=dict(momentum=0.5, centered=True),
        state_names=(
            {"momentum": 0.9, "centered": True},
            {"step", "square_avg", "momentum_buffer", "grad_avg"},
        ),
        bad_hyper=[
            (dict(alpha=-0.5), r"invalid alpha=-0.5"),
            (dict(momentum=-0.1), r"invalid momentum"),
        ],
        draw_hyper=lambda draw, s: dict(
            lr=draw(s.lr),
            alpha=draw(s.unit),
            eps=draw(s.eps),
            weight_decay=draw(s.decay),
            momentum=draw(s.st.sampled_from([0.0, 0.9])),
            centered=draw(s.flag),
            maximize=draw(s.flag),
        ),
    ),
    OptimizerInfo(
        name="adam",
        cls=fo.Adam,
        torch="Adam",
        second_moment=True,
        defaults=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False),
        configs=[
            dict(),
            dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1),
            dict(amsgrad=True),
            dict(maximize=True, eps=1e-6),
        ],
        torch_configs=[
            dict(),
            dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-2, amsgrad=True),
            dict(lr=1e-2, maximize=True, eps=1e-6),
        ],
        state_dict_config=dict(amsgrad=True, weight_decay=0.01),
        state_names=({"amsgrad": True}, {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}),
        bad_hyper=[
            (dict(lr=-1e-3), r"invalid lr=-0.001 in param_groups\[0\]: expected a finite number >= 0"),
            (dict(lr=float("nan")), r"invalid lr=NaN"),
            (dict(betas=(1.0, 0.999)), r"invalid betas\[0\]=1.0 .* expected a number in \[0, 1\)"),
            (dict(betas=(0.9, -0.1)), r"invalid betas\[1\]"),
            (dict(eps=0.0), r"invalid eps=0.0 .* expected a finite number > 0"),
        ],
        draw_hyper=_draw_adam,
    ),
    OptimizerInfo(
        name="adamw",
        cls=fo.AdamW,
        torch="AdamW",
        second_moment=True,
        defaults=dict(
            lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False
        ),
        configs=[dict(), dict(lr=1e-2, weight_decay=0.1, amsgrad=True, maximize=True)],
        torch_configs=[dict(), dict(lr=1e-2, weight_decay=0.1, amsgrad=True)],
        state_dict_config=dict(lr=1e-2),
        state_names=({}, ADAM_STATE),
        bad_hyper=[(dict(weight_decay=-1.0), r"invalid weight_decay")],
        draw_hyper=_draw_adam,
    ),
    OptimizerInfo(
        name="adagrad",
        cls=fo.Adagrad,
        torch="Adagrad",
        second_moment=True,
        defaults=dict(
            lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10, maximize=False
        ),
        configs=[
            dict(),
            dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.5, maximize=True),
        ],
        torch_configs=[
            dict(),
            dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.5, maximize=True),
        ],
        state_dict_config=dict(lr_decay=0.01, initial_accumulator_value=0.1),
        state_names=({}, {"step", "sum"}),
        bad_hyper=[
            (dict(lr_decay=-1.0), r"invalid lr_decay"),
            (dict(initial_accumulator_value=-1.0), r"invalid initial_accumulator_value"),
            (dict(eps=0.0), r"invalid eps"),
        ],
        draw_hyper=lambda draw, s: dict(
            lr=draw(s.lr),
            lr_decay=draw(s.decay),
            weight_decay=draw(s.decay),
            initial_accumulator_value=draw(s.st.sampled_from([0.0, 0.1])),
            eps=draw(s.eps),
            maximize=draw(s.flag),
        ),
    ),
    OptimizerInfo(
        name="adadelta",
        cls=fo.Adadelta,
        torch="Adadelta",
        second_moment=True,
        defaults=dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False),
        configs=[dict(), dict(lr=0.5, rho=0.5, eps=1e-4, weight_decay=0.1, maximize=True)],
        torch_configs=[dict(), dict(lr=0.5, rho=0.5, eps=1e-4, weight_decay=0.1, maximize=True)],
        state_dict_config=dict(weight_decay=0.01),
        state_names=({}, {"step", "square_avg", "acc_delta"}),
        bad_hyper=[(dict(rho=1.5), r"invalid rho=1.5 .* expected a number in \[0, 1\]")],
        draw_hyper=lambda draw, s: dict(
            lr=draw(s.lr),
            rho=draw(s.unit),
            eps=draw(s.eps),
            weight_decay=draw(s.decay),
            maximize=draw(s.flag),
        ),
    ),
    OptimizerInfo(
        name="adamax",
        cls=fo.Adamax,
        torch="Adamax",
        defaults=dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False),
        configs=[dict(), dict(lr=1e-2, betas=(0.5, 0.9), eps=1e-4, weight_decay=0.1, maximize=True)],
        torch_configs=[dict(), dict(lr=1e-2, betas=(0.5, 0.9), weight_decay=0.1, maximize=True)],
        state_dict_config=dict(),
        state_names=({}, {"step", "exp_avg", "exp_inf"}),
        bad_hyper=[(dict(betas=(0.9, 1.0)), r"invalid betas\[1\]")],
        draw_hyper=lambda draw, s: dict(
            lr=draw(s.lr),
            betas=(draw(s.unit), draw(s.unit)),
            eps=draw(s.eps),
            weight_decay=draw(s.decay),
            maximize=draw(s.flag),
        ),
    ),
    OptimizerInfo(
        name="nadam",
        cls=fo.NAdam,
        torch="NAdam",
        second_moment=True,
        defaults=dict(
            lr=2e-3,
            betas=(0.9, 0.999),
            eps=1e-8,
            weight_decay=0.0,
            momentum_decay=4e-3,
            decoupled_weight_decay=False,
            maximize=False,
        ),
        configs=[
            dict(),
            dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1, momentum_decay=0.01),
            dict(weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
        ],
        torch_configs=[
            dict(),
            dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1, momentum_decay=0.01),
            dict(weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
        ],
        state_dict_config=dict(decoupled_weight_decay=True, weight_decay=0.01),
        state_names=({}, {"step", "mu_product", "exp_avg", "exp_avg_sq"}),
        bad_hyper=[(dict(momentum_decay=-1.0), r"invalid momentum_decay")],
        draw_hyper=_draw_nadam,
    ),
    OptimizerInfo(
        name="radam",
        cls=fo.RAdam,
        torch="RAdam",
        second_moment=True,
        defaults=dict(
            lr=1e-3,
            betas=(0.9, 0.999),
            eps=1e-8,
            weight_decay=0.0,
            decoupled_weight_decay=False,
            maximize=False,
        ),
        configs=[
            dict(),
            dict(lr=1e-2, betas=(0.8, 0.9), weight_decay=0.1),
            dict(weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
        ],
        torch_configs=[
            dict(),
            dict(lr=1e-2, betas=(0.8, 0.9), weight_decay=0.1),
            dict(weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
        ],
        state_dict_config=dict(),
        state_names=({}, ADAM_STATE),
        bad_hyper=[(dict(eps=-1.0), r"invalid eps")],
        draw_hyper=_draw_radam,
    ),
    OptimizerInfo(
        name="lion",
        cls=fo.Lion,
        defaults=dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0),
        configs=[dict(), dict(lr=1e-3, betas=(0.5, 0.9), weight_decay=0.1)],
        state_dict_config=dict(weight_decay=0.1),
        state_names=({}, {"step", "exp_avg"}),
        bad_hyper=[
            (dict(betas=(-0.1, 0.99)), r"invalid betas\[0\]"),
            (dict(weight_decay=float("inf")), r"invalid weight_decay"),
        ],
        draw_hyper=lambda draw, s: dict(
            lr=draw(s.lr), betas=(draw(s.unit), draw(s.unit)), weight_decay=draw(s.decay)
        ),
    ),
    OptimizerInfo(
        name="rprop",
        cls=fo.Rprop,
        torch="Rprop",
        defaults=dict(lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0), maximize=False),
        configs=[
            dict(),
            dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-3, 0.1), maximize=True),
        ],
        torch_configs=[
            dict(),
            dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-3, 0.1), maximize=True),
        ],
        state_dict_config=dict(etas=(0.4, 1.3)),
        state_names=({}, {"step", "prev", "step_size"}),
        bad_hyper=[
            (dict(etas=(1.5, 1.2)), r"invalid etas=\(1\.5, 1\.2\) .* expected \(etaminus, etaplus\)"),
            (dict(etas=(0.5, 1.0)), r"invalid etas"),
            (dict(step_sizes=(1.0, 0.5)), r"invalid step_sizes=\(1\.0, 0\.5\) .* 0 <= min <= max"),
        ],
        draw_hyper=lambda draw, s: dict(
            lr=draw(s.lr),
            etas=(draw(s.st.floats(0.05, 0.95)), draw(s.st.floats(1.05, 3.0))),
            step_sizes=(draw(s.st.sampled_from([0.0, 1e-6])), draw(s.st.sampled_from([1.0, 50.0]))),
            maximize=draw(s.flag),
        ),
    ),
    OptimizerInfo(
        name="asgd",
        cls=fo.ASGD,
        torch="ASGD",
        defaults=dict(lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0, maximize=False),
        configs=[
            dict(),
            dict(lr=0.05, lambd=0.01, alpha=0.5, t0=5, weight_decay=0.1, maximize=True),
        ],
        torch_configs=[
            dict(),
            dict(lr=0.05, lambd=0.01, alpha=0.5, t0=5, weight_decay=0.1, maximize=True),
        ],
        state_dict_config=dict(t0=2, lambd=0.01),
        state_names=({}, {"step", "eta", "mu", "ax"}),
        bad_hyper=[
            (dict(lambd=-1.0), r"invalid lambd=-1\.0 .* expected a finite number >= 0"),
            (dict(t0=float("nan")), r"invalid t0=NaN .* expected a finite number"),
            (dict(alpha=float("inf")), r"invalid alpha=inf"),
        ],
        draw_hyper=lambda draw, s: dict(
            lr=draw(s.lr),
            lambd=draw(s.st.sampled_from([0.0, 1e-4, 0.1])),
            alpha=draw(s.st.floats(0.0, 1.0)),
            t0=draw(s.st.sampled_from([0.0, 3.0, 1e6])),
            weight_decay=draw(s.decay),
            maximize=draw(s.flag),
        ),
    ),
]

BY_NAME: dict[str, OptimizerInfo] = {row.name: row for row in OPTIMIZER_DB}
