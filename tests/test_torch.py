"""Parity with torch.optim itself, run only where torch is importable (not in CI).

torch is a benchmark and parity peer, never a dependency: `pip install torch` in a
separate environment, install ferroptim there, and run `pytest tests/test_torch.py`.
"""

import numpy as np
import pytest
from conftest import OPTIMIZERS

torch = pytest.importorskip("torch")

CASES = [
    ("sgd", dict(lr=0.05)),
    ("sgd", dict(lr=0.05, momentum=0.9)),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("sgd", dict(lr=0.05, momentum=0.5, dampening=0.5, maximize=True)),
    ("rmsprop", dict()),
    ("rmsprop", dict(lr=1e-3, alpha=0.9, momentum=0.9, weight_decay=1e-2)),
    ("rmsprop", dict(lr=1e-3, centered=True, momentum=0.5, maximize=True)),
    ("adam", dict()),
    ("adam", dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-2, amsgrad=True)),
    ("adam", dict(lr=1e-2, maximize=True, eps=1e-6)),
    ("adamw", dict()),
    ("adamw", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
]
TORCH = {"sgd": "SGD", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW"}
SHAPES = [(), (1,), (33, 17), (4, 5, 6), (1031,)]


@pytest.mark.parametrize("dtype,rtol,atol", [(np.float32, 2e-5, 2e-6), (np.float64, 1e-12, 1e-13)])
@pytest.mark.parametrize("kind,h", CASES, ids=[f"{k}-{h}" for k, h in CASES])
def test_matches_torch_over_300_steps(kind, h, dtype, rtol, atol):
    rng = np.random.default_rng(0)
    params = [rng.normal(size=s).astype(dtype) for s in SHAPES]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = getattr(torch.optim, TORCH[kind])(tparams, foreach=False, **h)
    opt = OPTIMIZERS[kind](params, **h)
    for _ in range(300):
        grads = [rng.normal(size=s).astype(dtype) for s in SHAPES]
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g.copy())
        topt.step()
        opt.step(grads)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=rtol, atol=atol)
    # the state too, under torch's names
    for i, tp in enumerate(tparams):
        for name, value in topt.state[tp].items():
            if name == "step":
                assert opt.state[i]["step"] == int(value)
            else:
                np.testing.assert_allclose(opt.state[i][name], value.numpy(), rtol=rtol * 10, atol=atol)
