"""ferroptim's optimizers as ``torch.optim.Optimizer`` subclasses, for CPU torch models.

Each class takes torch's arguments and updates the parameters' own memory in ferroptim's
Rust engine: ::

    import ferroptim.torch as fot                    # was: torch.optim
    opt = fot.Adam(model.parameters(), lr=1e-3)      # same names, defaults and formulas
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10)
    for x, y in loader:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()                                   # reads each parameter's .grad
        sched.step()

There is one class per ferroptim optimizer (``SGD``, ``Momentum``, ``RMSprop``, ``Adam``,
``AdamW``, ``Adagrad``, ``Adadelta``, ``Adamax``, ``NAdam``, ``RAdam``, ``Rprop``, ``ASGD``,
``Lion``), made from the registry :data:`ferroptim.optim.OPTIMIZERS`; see :class:`TorchOptimizer` for what they
share. ``Adafactor`` and ``Muon`` (torch's arguments, state and ``state_dict``) run the
kernels of :class:`ferroptim.Adafactor` and :class:`ferroptim.Muon`; ``LBFGS`` runs
:class:`ferroptim.LBFGS` with torch's ``step(closure)`` (one param group, as torch's). Needs
PyTorch: ``pip install ferroptim[torch]``.
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401  (the check that torch is there)
except ImportError as _e:
    raise ImportError(
        "ferroptim.torch needs PyTorch, which is not installed: pip install ferroptim[torch]"
    ) from _e

from ..optim import OPTIMIZERS as _OPTIMIZERS
from ._lbfgs import LBFGS
from ._optimizer import TorchOptimizer, adapter
from ._pertensor import Adafactor, Muon

# One adapter class per registry entry, under the ferroptim class's name.
for _cls in _OPTIMIZERS.values():
    globals()[_cls.__name__] = adapter(_cls)

__all__ = [
    "TorchOptimizer",
    "adapter",
    "Adafactor",
    "Muon",
    "LBFGS",
    *(c.__name__ for c in _OPTIMIZERS.values()),
]

del _cls
