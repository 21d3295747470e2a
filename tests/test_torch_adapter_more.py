"""ferroptim.torch's Adafactor, Muon and LBFGS (ferroptim's optimizers outside the
element-wise engine) against torch's of the same name on a 2-layer MLP: parameters after
each of 20 steps, checkpoints both ways, refused arguments.

Tolerances. Adafactor is bit for bit with torch on an AVX2 machine (tests/test_adafactor.py),
so its parameters are compared exactly. Muon: tests/test_muon.py's tolerance, 0.02 *
adjusted_lr per step taken (torch's float32 sums inside its bfloat16 Newton–Schulz products
may flip a bfloat16 rounding that ours does not), and the momentum buffer to rtol 1e-6 of
the parameters' difference carried into the gradients (atol as the parameters')."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="ferroptim.torch needs PyTorch (pip install ferroptim[torch])")
fot = pytest.importorskip("ferroptim.torch")

STEPS = 20
DTYPES = [torch.float32, torch.float64]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """torch's small ops on one thread (its reductions then sum as on the recorded runs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def network(dtype, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).to(dtype)


def data(dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(32, 8, generator=g, dtype=dtype), torch.randn(32, 4, generator=g, dtype=dtype)


def loss_of(model, X, Y):
    return ((model(X) - Y) ** 2).mean()


def one_step(model, opt, X, Y):
    opt.zero_grad()
    loss_of(model, X, Y).backward()
    opt.step()


def matrices(model):
    return [p for p in model.parameters() if p.ndim == 2]


# (class name, keyword arguments, which parameters: all, or Muon's 2-D ones)
ADAFACTOR_CASES = [
    dict(),
    dict(lr=0.05, weight_decay=0.01, d=1.5),
    dict(eps=(1e-30, 1e-2), beta2_decay=-0.5, maximize=True),
    dict(foreach=True),
]
MUON_CASES = [
    dict(lr=0.02),
    dict(lr=0.02, nesterov=False, momentum=0.9, weight_decay=0.01),
    dict(lr=0.01, adjust_lr_fn="match_rms_adamw"),
]


def muon_tolerance(model, kw):
    """0.02 adjusted_lr per step (tests/test_muon.py), the largest over the matrices."""
    lr = kw.get("lr", 1e-3)
    fn = kw.get("adjust_lr_fn")
    out = 0.0
    for p in matrices(model):
        A, B = p.shape
        adj = {None: np.sqrt(max(1, A / B)), "original": np.sqrt(max(1, A / B)),
               "match_rms_adamw": 0.2 * np.sqrt(max(A, B)), "spectral_unclamped": np.sqrt(A / B)}[fn]  # fmt: skip
        out = max(out, 0.02 * adj * lr)
    return out


def run_pair(name, kw, dtype, select):
    ours_model = network(dtype)
    theirs_model = copy.deepcopy(ours_model)
    ours = getattr(fot, name)(select(ours_model), **kw)
    theirs = getattr(torch.optim, name)(select(theirs_model), **kw)
    return ours_model, ours, theirs_model, theirs


def assert_same_state(ours, theirs, atol):
    so, st = ours.state_dict(), theirs.state_dict()
    assert set(so["state"]) == set(st["state"])
    for k in st["state"]:
        a, b = so["state"][k], st["state"][k]
        assert set(a) == set(b)
        for n in b:
            assert a[n].dtype == b[n].dtype and a[n].shape == b[n].shape, n
            if atol == 0:
                assert torch.equal(a[n], b[n]), n
            else:
                torch.testing.assert_close(a[n], b[n], rtol=1e-6, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "name, kw",
    [("Adafactor", k) for k in ADAFACTOR_CASES] + [("Muon", k) for k in MUON_CASES],
    ids=lambda v: v if isinstance(v, str) else (",".join(f"{a}={b}" for a, b in v.items()) or "defaults"),
)
def test_matches_torch_step_by_step_and_resumes_from_either_checkpoint(name, kw, dtype):
    select = matrices if name == "Muon" else (lambda m: list(m.parameters()))
    X, Y = data(dtype)
    ours_model, ours, theirs_model, theirs = run_pair(name, kw, dtype, select)
    tol = 0.0 if name == "Adafactor" else muon_tolerance(ours_model, kw)
    for k in range(STEPS):
        one_step(ours_model, ours, X, Y)
        one_step(theirs_model, theirs, X, Y)
        for a, b in zip(ours_model.parameters(), theirs_model.parameters()):
            if tol == 0:
                assert torch.equal(a, b), f"step {k + 1}"
            else:
                torch.testing.assert_close(a, b, rtol=0, atol=tol * (k + 1), msg=f"step {k + 1}")
        if k in (0, STEPS - 1):
            assert_same_state(ours, theirs, 0 if tol == 0 else tol * (k + 1))
    # checkpoints both ways: torch's class loads ours and ours loads torch's, then both
    # continue as the optimizer they were taken from
    # (deep copies: torch's state_dict and load_state_dict share the state tensors)
    sd_ours, sd_theirs = copy.deepcopy(ours.state_dict()), copy.deepcopy(theirs.state_dict())
    assert sd_ours["param_groups"][0]["lr"] == sd_theirs["param_groups"][0]["lr"]
    m1, m2 = copy.deepcopy(ours_model), copy.deepcopy(theirs_model)
    resumed_theirs = getattr(torch.optim, name)(select(m1), **kw)
    resumed_theirs.load_state_dict(sd_ours)
    resumed_ours = getattr(fot, name)(select(m2), **kw)
    resumed_ours.load_state_dict(sd_theirs)
    for _ in range(3):
        one_step(m1, resumed_theirs, X, Y)
        one_step(ours_model, ours, X, Y)
        one_step(m2, resumed_ours, X, Y)
        one_step(theirs_model, theirs, X, Y)
    if tol == 0:
        for a, b in zip(m1.parameters(), ours_model.parameters()):
            assert torch.equal(a, b)
        for a, b in zip(m2.parameters(), theirs_model.parameters()):
            assert torch.equal(a, b)
    else:
        for a, b in zip(m1.parameters(), theirs_model.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=tol * (STEPS + 3))
        for a, b in zip(m2.parameters(), theirs_model.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=tol * (STEPS + 3))


def test_resuming_our_muon_from_our_checkpoint_is_bit_identical():
    X, Y = data(torch.float32)
    a = network(torch.float32)
    b = copy.deepcopy(a)
    oa = fot.Muon(matrices(a), lr=0.02)
    for _ in range(5):
        one_step(a, oa, X, Y)
    b.load_state_dict(a.state_dict())
    ob = fot.Muon(matrices(b), lr=0.02)
    ob.load_state_dict(copy.deepcopy(oa.state_dict()))
    for _ in range(5):
        one_step(a, oa, X, Y)
        one_step(b, ob, X, Y)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_parameters_without_a_gradient_are_skipped_and_their_state_untouched():
    X, Y = data(torch.float32)
    ours_model, ours, theirs_model, theirs = run_pair(
        "Adafactor", {}, torch.float32, lambda m: list(m.parameters())
    )
    for model, opt in ((ours_model, ours), (theirs_model, theirs)):
        opt.zero_grad()
        loss_of(model, X, Y).backward()
        model[2].bias.grad = None
        opt.step()
    assert model[2].bias not in ours.state
    assert len(ours.state) == len(theirs.state) == 3
    for a, b in zip(ours_model.parameters(), theirs_model.parameters()):
        assert torch.equal(a, b)


def test_the_update_bumps_the_version_counter():
    m = network(torch.float32)
    opt = fot.Adafactor(m.parameters())
    X, Y = data(torch.float32)
    loss_of(m, X, Y).backward()
    before = m[0].weight._version
    opt.step()
    assert m[0].weight._version > before


def test_bad_arguments_are_refused_before_anything_changes():
    m = network(torch.float32)
    with pytest.raises(ValueError, match="lr"):
        fot.Adafactor(m.parameters(), lr=-1.0)
    with pytest.raises(ValueError, match="d"):
        fot.Adafactor(m.parameters(), d=0.5)
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        fot.Muon(m.parameters())  # the biases: torch refuses them too
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        torch.optim.Muon(m.parameters())
    with pytest.raises(ValueError, match="adjust_lr_fn"):
        fot.Muon(matrices(m), adjust_lr_fn="nope")
    with pytest.raises(TypeError, match="float32 or float64"):
        fot.Muon([torch.zeros(3, 3, dtype=torch.float16)])
    opt = fot.Muon(matrices(m), lr=0.02)
    with pytest.raises(ValueError, match="2D"):
        opt.add_param_group({"params": [m[0].bias]})
    assert len(opt.param_groups) == 1
    # a group edited to a bad value: refused at the step, nothing updated
    X, Y = data(torch.float32)
    loss_of(m, X, Y).backward()
    before = [p.clone() for p in m.parameters()]
    opt.param_groups[0]["momentum"] = -0.5
    with pytest.raises(ValueError, match="momentum"):
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
    assert not opt.state


def test_a_state_dict_that_does_not_fit_is_refused_before_anything_changes():
    X, Y = data(torch.float32)
    m = network(torch.float32)
    opt = fot.Adafactor(m.parameters())
    one_step(m, opt, X, Y)
    good = opt.state_dict()
    bad = copy.deepcopy(good)
    bad["state"][0]["row_var"] = torch.zeros(3, 1)
    with pytest.raises(ValueError, match="row_var"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(good)
    bad["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    for k in good["state"]:
        for n in good["state"][k]:
            assert torch.equal(after["state"][k][n], good["state"][k][n])
    mo = fot.Muon(matrices(m))
    with pytest.raises(ValueError, match="momentum_buffer"):
        mo.load_state_dict(
            {
                "state": {0: {"momentum_buffer": torch.zeros(2, 2)}},
                "param_groups": mo.state_dict()["param_groups"],
            }
        )
