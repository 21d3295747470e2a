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


# -- LBFGS ---------------------------------------------------------------------------------
# Both run the same torch closure on the same parameters, so only the optimizers' arithmetic
# differs: tests/test_lbfgs.py's tolerances (float64: rtol 1e-9, atol 1e-12; float32: rtol
# and atol 2e-4; the loss to 10x the rtol; d to rtol 1e-6) and its rule of comparing a
# bounded number of iterations, as the iterations amplify the first ulp of difference
# (about 1.3x per iteration on Rosenbrock with fixed steps). Here 6 steps each: float64 with
# max_iter <= 7 (at most 42 iterations; measured worst 3.6e-11 of the parameters, Rosenbrock
# with fixed steps, against 7e-9 at 60 iterations), float32 with max_iter 3 (at most 18;
# measured worst 4e-6, against 2.5e-4 at iteration 18 of max_iter=4's path on Rosenbrock
# with the line search, where float32 no longer resolves the loss differences it compares).
# The MLP with torch's defaults (20 iterations a step) in float64: 120 iterations, measured
# 7e-12. At the middle step both take a checkpoint; torch's class loads ours and ours loads
# torch's, and the four continue in step.
LBFGS_STEPS = 6
LBFGS_TOLERANCE = {torch.float32: dict(rtol=2e-4, atol=2e-4), torch.float64: dict(rtol=1e-9, atol=1e-12)}
LBFGS_CASES = [
    dict(max_iter=7),
    dict(lr=0.1, max_iter=5, history_size=3),
    dict(line_search_fn="strong_wolfe", max_iter=7),
    dict(lr=0.5, max_iter=7, history_size=4, line_search_fn="strong_wolfe", tolerance_change=1e-12),
]
LBFGS_FLOAT32_MAX_ITER = 3


def rosenbrock_problem(dtype):
    """tests/test_lbfgs.py's 4-dimensional Rosenbrock as one (2, 2) tensor: (model, loss(model))."""
    x = torch.nn.Parameter(torch.tensor([[-1.2, 1.0], [-0.5, 0.8]], dtype=dtype))
    model = torch.nn.ParameterList([x])

    def loss(m):
        v = m[0].reshape(-1)
        a, b = v[:-1], v[1:]
        return (100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2).sum()

    return model, loss


def mlp_problem(dtype):
    X, Y = data(dtype)
    return network(dtype), lambda m: loss_of(m, X, Y)


LBFGS_PROBLEMS = {"mlp": mlp_problem, "rosenbrock": rosenbrock_problem}


def closure_of(model, opt, loss):
    def closure():
        opt.zero_grad()
        out = loss(model)
        out.backward()
        return out

    return closure


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "kw", LBFGS_CASES, ids=lambda v: ",".join(f"{a}={b}" for a, b in v.items()) or "defaults"
)
@pytest.mark.parametrize("problem", list(LBFGS_PROBLEMS))
def test_lbfgs_matches_torch_step_by_step_and_resumes_from_either_checkpoint(problem, kw, dtype):
    if dtype == torch.float32:
        kw = dict(kw, max_iter=LBFGS_FLOAT32_MAX_ITER)
    tol = LBFGS_TOLERANCE[dtype]
    ours_model, loss = LBFGS_PROBLEMS[problem](dtype)
    theirs_model = copy.deepcopy(ours_model)
    ours = fot.LBFGS(ours_model.parameters(), **kw)
    theirs = torch.optim.LBFGS(theirs_model.parameters(), **kw)
    resumed: list = []  # (model, optimizer, the model it must follow, what)
    for k in range(LBFGS_STEPS):
        msg = f"step {k + 1}"
        lo = ours.step(closure_of(ours_model, ours, loss))
        lt = theirs.step(closure_of(theirs_model, theirs, loss))
        assert isinstance(lo, torch.Tensor) and lo.requires_grad  # the closure's first loss
        torch.testing.assert_close(lo.detach(), lt.detach(), rtol=10 * tol["rtol"], atol=1e-12, msg=msg)
        torch.testing.assert_close(flat(ours_model), flat(theirs_model), **tol, msg=msg)
        so, st = ours.state_dict()["state"][0], theirs.state_dict()["state"][0]
        assert set(so) == set(st) - {"al"}
        assert (so["n_iter"], so["func_evals"]) == (st["n_iter"], st["func_evals"]), msg
        assert len(so["old_dirs"]) == len(st["old_dirs"]), msg
        assert so["d"].dtype == st["d"].dtype == dtype
        torch.testing.assert_close(so["d"], st["d"], rtol=1e-6, atol=tol["atol"], msg=msg)
        for m, opt, follows, what in resumed:
            opt.step(closure_of(m, opt, loss))
            torch.testing.assert_close(flat(m), flat(follows), **tol, msg=f"{what}, {msg}")
        if k == LBFGS_STEPS // 2 - 1:
            # checkpoints (deep copies: torch's state_dict shares its state tensors): torch's
            # class loads ours and ours loads torch's; each continues as the one it came from
            sd_ours, sd_theirs = copy.deepcopy(ours.state_dict()), copy.deepcopy(theirs.state_dict())
            m1, m2 = copy.deepcopy(ours_model), copy.deepcopy(theirs_model)
            torch_from_ours = torch.optim.LBFGS(m1.parameters(), **kw)
            torch_from_ours.load_state_dict(sd_ours)
            ours_from_torch = fot.LBFGS(m2.parameters(), **kw)
            ours_from_torch.load_state_dict(sd_theirs)
            resumed = [
                (m1, torch_from_ours, ours_model, "torch's LBFGS resumed from ours"),
                (m2, ours_from_torch, theirs_model, "ours resumed from torch's LBFGS"),
            ]


def test_lbfgs_with_torchs_defaults_matches_torch_on_the_mlp():
    ours_model, loss = mlp_problem(torch.float64)
    theirs_model = copy.deepcopy(ours_model)
    ours, theirs = fot.LBFGS(ours_model.parameters()), torch.optim.LBFGS(theirs_model.parameters())
    assert ours.param_groups[0].keys() == theirs.param_groups[0].keys()
    assert all(ours.param_groups[0][k] == v for k, v in theirs.param_groups[0].items() if k != "params")
    assert ours.defaults == theirs.defaults
    for k in range(LBFGS_STEPS):
        lo = ours.step(closure_of(ours_model, ours, loss))
        lt = theirs.step(closure_of(theirs_model, theirs, loss))
        torch.testing.assert_close(lo.detach(), lt.detach(), rtol=1e-8, atol=1e-12, msg=f"step {k + 1}")
        torch.testing.assert_close(flat(ours_model), flat(theirs_model), **LBFGS_TOLERANCE[torch.float64])
    so, st = ours.state_dict()["state"][0], theirs.state_dict()["state"][0]
    assert (so["n_iter"], so["func_evals"]) == (st["n_iter"], st["func_evals"])
    assert so["n_iter"] > 5 * 20  # up to 20 iterations a step, as torch's default


def test_lbfgs_resumes_bit_for_bit_from_its_checkpoint_and_deepcopy_and_schedulers_drive_lr():
    X, Y = data(torch.float64)
    loss = lambda m: loss_of(m, X, Y)  # noqa: E731
    a = network(torch.float64)
    oa = fot.LBFGS(a.parameters(), max_iter=3, history_size=5, line_search_fn="strong_wolfe")
    for _ in range(3):
        oa.step(closure_of(a, oa, loss))
    b = copy.deepcopy(a)
    ob = fot.LBFGS(b.parameters(), max_iter=3, history_size=5, line_search_fn="strong_wolfe")
    ob.load_state_dict(copy.deepcopy(oa.state_dict()))
    c, oc = copy.deepcopy((a, oa))  # the copy optimizes the copy's parameters
    assert all(p is q for p, q in zip(c.parameters(), oc.param_groups[0]["params"]))
    for _ in range(3):
        oa.step(closure_of(a, oa, loss))
        ob.step(closure_of(b, ob, loss))
        oc.step(closure_of(c, oc, loss))
    for p, q, r in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(p, q) and torch.equal(p, r)
    assert oa.state_dict()["state"].keys() == {0}
    for k, v in oa.state_dict()["state"][0].items():
        for o in (ob, oc):
            w = o.state_dict()["state"][0][k]
            assert (torch.equal(torch.stack(v), torch.stack(w)) if isinstance(v, list) else
                    torch.equal(v, w) if isinstance(v, torch.Tensor) else v == w), k  # fmt: skip
    # lr read from param_groups at every step: lr 0 leaves the parameters where they are
    torch.optim.lr_scheduler.LambdaLR(ob, lambda epoch: 0.0)
    assert ob.param_groups[0]["lr"] == 0.0
    before = [p.clone() for p in b.parameters()]
    ob.step(closure_of(b, ob, loss))
    assert all(torch.equal(p, q) for p, q in zip(before, b.parameters()))
    # a one-element tensor lr, as torch accepts
    d = network(torch.float64)
    e = copy.deepcopy(d)
    od = fot.LBFGS(d.parameters(), lr=torch.tensor(0.5), max_iter=4)
    oe = fot.LBFGS(e.parameters(), lr=0.5, max_iter=4)
    od.step(closure_of(d, od, loss))
    oe.step(closure_of(e, oe, loss))
    assert all(torch.equal(p, q) for p, q in zip(d.parameters(), e.parameters()))


def test_lbfgs_named_parameters_and_maximize_as_torch():
    X, Y = data(torch.float64)
    ours_model = network(torch.float64)
    theirs_model = copy.deepcopy(ours_model)
    neg = lambda m: -loss_of(m, X, Y)  # noqa: E731
    ours = fot.LBFGS(ours_model.named_parameters(), max_iter=5, maximize=True)
    theirs = torch.optim.LBFGS(theirs_model.named_parameters(), max_iter=5, maximize=True)
    for _ in range(3):
        ours.step(closure_of(ours_model, ours, neg))
        theirs.step(closure_of(theirs_model, theirs, neg))
    torch.testing.assert_close(flat(ours_model), flat(theirs_model), **LBFGS_TOLERANCE[torch.float64])
    assert ours.state_dict()["param_groups"][0]["param_names"] == [
        n for n, _ in ours_model.named_parameters()
    ]
    assert ours.state_dict()["param_groups"] == theirs.state_dict()["param_groups"]


def test_lbfgs_refuses_bad_arguments_before_anything_changes():
    m = network(torch.float32)
    for kw, error, match in [
        (dict(line_search_fn="armijo"), ValueError, "line_search_fn"),
        (dict(history_size=0), ValueError, "history_size"),
        (dict(max_iter=0), ValueError, "max_iter"),
        (dict(max_eval=0), ValueError, "max_eval"),
        (dict(lr=-1.0), ValueError, "lr"),
        (dict(lr=torch.tensor([0.1, 0.2])), ValueError, "1-element"),
        (dict(tolerance_grad=-1e-7), ValueError, "tolerance_grad"),
        (dict(tolerance_change="0"), TypeError, "tolerance_change"),
    ]:
        with pytest.raises(error, match=match):
            fot.LBFGS(m.parameters(), **kw)
    with pytest.raises(ValueError, match="parameter groups"):
        fot.LBFGS([{"params": [m[0].weight]}, {"params": [m[0].bias]}])
    with pytest.raises(ValueError, match="parameter groups"):
        torch.optim.LBFGS([{"params": [m[0].weight]}, {"params": [m[0].bias]}])
    with pytest.raises(ValueError, match="lr"):
        fot.LBFGS([{"params": list(m.parameters()), "lr": -1.0}])
    with pytest.raises(TypeError, match="one dtype"):
        fot.LBFGS([m[0].weight, torch.zeros(3, dtype=torch.float64, requires_grad=True)])
    with pytest.raises(TypeError, match="float32 or float64"):
        fot.LBFGS([torch.zeros(3, dtype=torch.float16)])
    with pytest.raises(ValueError, match="contiguous"):
        fot.LBFGS([torch.zeros(3, 4).t()])
    opt = fot.LBFGS(m.parameters())
    with pytest.raises(ValueError, match="parameter groups"):
        opt.add_param_group({"params": [torch.zeros(2)]})
    assert len(opt.param_groups) == 1
    with pytest.raises(TypeError, match="closure"):
        opt.step(None)
    X, Y = data(torch.float32)
    before = [p.clone() for p in m.parameters()]

    def failing_at(n):
        calls = []

        def closure():
            calls.append(1)
            opt.zero_grad()
            out = loss_of(m, X, Y)
            out.backward()
            if len(calls) == n:
                raise RuntimeError("boom")
            return out

        return closure

    for n in (1, 3):
        with pytest.raises(RuntimeError, match="boom"):
            opt.step(failing_at(n))
        assert all(torch.equal(p, q) for p, q in zip(before, m.parameters()))  # the step undone
        assert not opt.state
    with pytest.raises(TypeError, match="the closure must return the loss"):
        opt.step(lambda: None)
    with pytest.raises(ValueError, match="one-element loss"):
        opt.step(lambda: torch.zeros(2))
    assert all(torch.equal(p, q) for p, q in zip(before, m.parameters()))
    # a param group edited to a bad value: refused at the step, before the closure runs
    opt.param_groups[0]["history_size"] = 0
    with pytest.raises(ValueError, match="history_size"):
        opt.step(lambda: pytest.fail("the closure ran"))
    opt.param_groups[0]["history_size"] = 100
    # a refused state_dict changes nothing
    opt.step(closure_of(m, opt, lambda mm: loss_of(mm, X, Y)))
    good = copy.deepcopy(opt.state_dict())
    for edit, match in [
        (lambda sd: sd["param_groups"][0].update(max_iter=0), "max_iter"),
        (lambda sd: sd["state"][0].update(d=torch.zeros(3)), "d"),
        (lambda sd: sd["state"][0].update(what=1), "what"),
        (lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0])), "param groups"),
        (lambda sd: sd["param_groups"][0].update(params=[0]), "parameters"),
    ]:
        bad = copy.deepcopy(good)
        edit(bad)
        with pytest.raises(ValueError, match=match):
            opt.load_state_dict(bad)
        after = opt.state_dict()
        assert after["param_groups"] == good["param_groups"]
        torch.testing.assert_close(after["state"], good["state"], rtol=0, atol=0)
