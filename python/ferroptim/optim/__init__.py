"""Optimizers over NumPy arrays, with torch.optim's names, defaults and formulas.

Each optimizer holds your parameter arrays and updates them **in place**: one call of
``step(grads)`` runs a single fused Rust pass over every tensor, with the GIL released for
large steps. State (moments, step counts) lives in Rust, in each parameter's dtype or in
bfloat16 / float16 (``state_dtype=``); 16-bit parameters get float32 master weights.

The lecture's notation maps onto the arguments like this:

=================  =====================  ==========================================
lecture            ferroptim / torch      meaning
=================  =====================  ==========================================
alpha              ``lr``                 learning rate
beta (momentum)    ``Momentum(beta=)``,   decay of the EWA of gradients
                   ``SGD(momentum=)``
beta (RMSprop)     ``RMSprop(alpha=)``    decay of the EWA of squared gradients
beta1, beta2       ``Adam(betas=(b1,b2))``  decays of the first and second moments
epsilon            ``eps``                added to the denominator, outside the sqrt
=================  =====================  ==========================================
"""

from __future__ import annotations

# ``OPTIMIZERS`` fills in the order the classes are defined: SGD and Momentum first, as before.
from .sgd import SGD, Momentum

# isort: split
from .adaptive import Adadelta, Adagrad, Adam, Adamax, AdamW, Lion, NAdam, RAdam, RMSprop, Rprop

# isort: split
from .adafactor import Adafactor
from .averaged import ASGD
from .base import LR as LR
from .base import OPTIMIZERS as OPTIMIZERS
from .base import DtypeLike as DtypeLike
from .base import GradsLike as GradsLike
from .base import Optimizer
from .base import ParamsLike as ParamsLike
from .groups import _ParamGroup as _ParamGroup
from .groups import _ParamList as _ParamList
from .groups import _parse_params as _parse_params
from .lbfgs import LBFGS
from .muon import Muon
from .schedulefree import ScheduleFreeAdamW, ScheduleFreeSGD

__all__ = [
    "Optimizer",
    "SGD",
    "Momentum",
    "RMSprop",
    "Adam",
    "AdamW",
    "Adagrad",
    "Adadelta",
    "Adamax",
    "NAdam",
    "RAdam",
    "Lion",
    "Rprop",
    "ASGD",
    "LBFGS",
    "Muon",
    "Adafactor",
    "ScheduleFreeAdamW",
    "ScheduleFreeSGD",
]

# Pickles name a class by its module and name. Every class a pickle may hold keeps the path
# it had before this package was split into modules (``ferroptim.optim.Adam``), so pickles
# made before and after the split load either way, and the split stays an inner detail.
for _name in [*__all__, "_ParamList", "_ParamGroup"]:
    globals()[_name].__module__ = __name__
del _name
