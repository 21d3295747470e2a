"""Parity with torch.optim itself, run where torch is importable (CI installs it with
`make deps-torch`; elsewhere these tests skip).

torch is a parity peer, not a dependency of ferroptim (`ferroptim.torch`, the optional
`torch` extra, is tested in test_torch_adapter.py).
"""

import numpy as np
import pytest

from conftest import OPTIMIZERS, first_config_quick
from optimizers import OPTIMIZER_DB

torch = pytest.importorskip("torch")

CASES = [(row.name, h) for row in OPTIMIZER_DB for h in row.torch_configs]
TORCH = {row.name: row.torch for row in OPTIMIZER_DB if row.torch}
SHAPES = [(), (1,), (33, 17), (4, 5, 6), (1031,)]


@pytest.mark.parametrize("dtype,rtol,atol", [(np.float32, 2e-5, 2e-6), (np.float64, 1e-12, 1e-13)])
@pytest.mark.parametrize("kind,h", first_config_quick(CASES))
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
            if name in ("step", "mu_product", "eta", "mu"):
                np.testing.assert_allclose(opt.state[i][name], float(value), rtol=1e-7)
            else:
                np.testing.assert_allclose(opt.state[i][name], value.numpy(), rtol=rtol * 10, atol=atol)


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.5, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    import ferroptim as fo

    rng = np.random.default_rng(1)
    grads = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    tparams = [torch.zeros(s, requires_grad=True) for s in SHAPES]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.from_numpy(g.copy())
    tnorm = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type=norm_type, foreach=False)
    norm = fo.clip_grad_norm(grads, max_norm, norm_type=norm_type)
    np.testing.assert_allclose(norm, float(tnorm), rtol=1e-5)
    for g, tp in zip(grads, tparams):
        np.testing.assert_allclose(g, tp.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_clip_grad_value_matches_torch():
    import ferroptim as fo

    rng = np.random.default_rng(2)
    grads = [rng.normal(size=s) for s in SHAPES]
    tparams = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.from_numpy(g.copy())
    torch.nn.utils.clip_grad_value_(tparams, 0.7, foreach=False)
    fo.clip_grad_value(grads, 0.7)
    for g, tp in zip(grads, tparams):
        np.testing.assert_array_equal(g, tp.grad.numpy())


def test_max_grad_norm_option_equals_clipping_before_the_step():
    import ferroptim as fo

    rng = np.random.default_rng(3)
    params = [rng.normal(size=s) for s in SHAPES]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = torch.optim.Adam(tparams, lr=1e-2, foreach=False)
    opt = fo.Adam(params, lr=1e-2, max_grad_norm=1.0)
    for _ in range(50):
        grads = [np.asarray(rng.normal(size=s) * 3) for s in SHAPES]
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g.copy())
        torch.nn.utils.clip_grad_norm_(tparams, 1.0, foreach=False)
        topt.step()
        opt.step(grads)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "kind,h",
    [(k, h) for k, h in CASES if k in ("rprop", "asgd")]
    + [("asgd", dict(lr=0.05, lambd=0.01, t0=3)), ("rprop", dict(lr=0.5, step_sizes=(0.1, 0.7)))],
    ids=str,
)
def test_rprop_and_asgd_match_torchs_single_tensor_path(kind, h, dtype):
    # Rprop: every bit of the parameters and the state (its step is a product by an exact
    # sign). ASGD: every bit of eta and mu (float32 scalars in torch, for float64 parameters
    # too) and the arrays to one rounding per step: torch's vectorized `add_(g, alpha=-eta)`
    # is a fused multiply-add (`vec::fmadd`), ours (and torch's scalar loop) rounds twice.
    # ASGD's averaging is switched on (t0=3), Rprop's step sizes clamped.
    exact = kind == "rprop"
    tol = dict(rtol=0, atol=0) if exact else dict(rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-7)
    rng = np.random.default_rng(3)
    params = [rng.normal(size=s).astype(dtype) for s in SHAPES]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = getattr(torch.optim, TORCH[kind])(tparams, foreach=False, **h)
    opt = OPTIMIZERS[kind](params, **h)
    for _ in range(100):
        grads = [rng.normal(size=s).astype(dtype) for s in SHAPES]
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g.copy())
        topt.step()
        opt.step(grads)
    for i, (p, tp) in enumerate(zip(params, tparams)):
        np.testing.assert_allclose(p, tp.detach().numpy(), **tol, err_msg=f"parameter {i}")
        for name, value in topt.state[tp].items():
            if name in ("eta", "mu"):
                assert value.dtype == torch.float32
                assert opt.state[i][name] == value.item(), name
            elif name == "step":
                assert opt.state[i][name] == value.item()
            else:
                assert opt.state[i][name].dtype == dtype
                np.testing.assert_allclose(opt.state[i][name], value.numpy(), **tol, err_msg=name)
