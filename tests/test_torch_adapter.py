"""ferroptim.torch: ferroptim's optimizers as torch.optim.Optimizers, against torch's own on
an nn.Sequential: parameters and state after every step, checkpoints both ways, torch's
schedulers, autograd's version counter, 16-bit parameters and state, refused inputs."""

import copy
import importlib
import inspect
import pickle
import sys

import numpy as np
import pytest

from conftest import OPTIMIZERS, first_config_quick

torch = pytest.importorskip("torch", reason="ferroptim.torch needs PyTorch (pip install ferroptim[torch])")
fot = pytest.importorskip("ferroptim.torch")

from test_torch import CASES  # noqa: E402  (torch's optimizers' cases, shared with the NumPy path)

# float32: ferroptim's Adam divides once where torch divides twice (see fo.Adam), so results
# agree to rounding, as in test_torch.py; float64 to 1e-12 after 100 steps through a network.
TOLERANCES = {torch.float32: (2e-5, 2e-6), torch.float64: (1e-11, 1e-12)}


def torch_class(kind):
    return getattr(torch.optim, OPTIMIZERS[kind].__name__)


def adapter_class(kind):
    return getattr(fot, OPTIMIZERS[kind].__name__)


def default_lr(kind):
    return inspect.signature(OPTIMIZERS[kind]).parameters["lr"].default


def network(dtype, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).to(dtype)


def data(dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(32, 5, generator=g).to(dtype), torch.randn(32, 3, generator=g).to(dtype)


def groups_of(model, two_groups, lr):
    if not two_groups:
        return model.parameters()
    return [
        {"params": model[0].parameters()},
        {"params": model[2].parameters(), "lr": lr / 2},
    ]


def snapshot(model, opt):
    """Copies of the parameters and of the optimizer's state."""
    state = {
        i: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
        for i, s in opt.state_dict()["state"].items()
    }
    return [p.detach().clone() for p in model.parameters()], state


def train(model, opt, steps, X, Y):
    """Params and state after every step."""
    out = []
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(X), Y).backward()
        opt.step()
        out.append(snapshot(model, opt))
    return out


def lockstep(runs, steps, X, Y):
    """Trains every ``(model, opt)`` of ``runs`` in lockstep on the gradients autograd gives
    the first model, copied into the others' ``.grad`` (so that float32 rounding differences
    between optimizers are not fed back through the network); the history of each."""
    history = [[] for _ in runs]
    lead = runs[0][0]
    for _ in range(steps):
        for _, opt in runs:
            opt.zero_grad()
        torch.nn.functional.mse_loss(lead(X), Y).backward()
        for model, _ in runs[1:]:
            for p, q in zip(model.parameters(), lead.parameters()):
                p.grad = q.grad.clone()
        for (model, opt), h in zip(runs, history):
            opt.step()
            h.append(snapshot(model, opt))
    return history


def assert_histories_close(ours, theirs, rtol, atol, exact=False, scalar_dtypes=True):
    assert len(ours) == len(theirs)
    for step, ((po, so), (pt, st)) in enumerate(zip(ours, theirs)):
        for a, b in zip(po, pt):
            assert a.dtype == b.dtype
            if exact:
                torch.testing.assert_close(a, b, rtol=0, atol=0)
            else:
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol, atol=atol, err_msg=f"step {step}")
        assert so.keys() == st.keys(), f"step {step}"
        for i in so:
            assert so[i].keys() == st[i].keys(), f"step {step}, parameter {i}"
            for k in so[i]:
                a, b = so[i][k], st[i][k]
                assert a.shape == b.shape, (step, i, k)
                if a.dim() or scalar_dtypes:
                    assert a.dtype == b.dtype, (step, i, k)
                else:
                    a, b = a.double(), b.double()
                if exact:
                    torch.testing.assert_close(a, b, rtol=0, atol=0)
                else:
                    np.testing.assert_allclose(
                        a.numpy(), b.numpy(), rtol=rtol * 10, atol=atol, err_msg=f"step {step} {i} {k}"
                    )


# float32 with one group and float64 with two in the quick loop, the other two in `make test`
@pytest.mark.parametrize(
    "dtype,two_groups",
    [
        pytest.param(torch.float32, False, id="float32-one-group"),
        pytest.param(torch.float32, True, id="float32-two-groups", marks=pytest.mark.slow),
        pytest.param(torch.float64, False, id="float64-one-group", marks=pytest.mark.slow),
        pytest.param(torch.float64, True, id="float64-two-groups"),
    ],
)
@pytest.mark.parametrize("kind,h", first_config_quick(CASES))
def test_matches_torch_and_resumes_from_either_checkpoint(kind, h, dtype, two_groups):
    rtol, atol = TOLERANCES[dtype]
    lr = h.get("lr", default_lr(kind))
    X, Y = data(dtype)
    m_t = network(dtype)
    m_o = copy.deepcopy(m_t)
    t_opt = torch_class(kind)(groups_of(m_t, two_groups, lr), foreach=False, **h)
    o_opt = adapter_class(kind)(groups_of(m_o, two_groups, lr), **h)
    assert isinstance(o_opt, torch.optim.Optimizer)
    # the state before any step is torch's too (Adagrad makes its state in the constructor)
    assert_histories_close(
        [([], o_opt.state_dict()["state"])], [([], t_opt.state_dict()["state"])], rtol, atol
    )
    h_o, h_t = lockstep([(m_o, o_opt), (m_t, t_opt)], 50, X, Y)
    assert_histories_close(h_o, h_t, rtol, atol)

    sd_t = copy.deepcopy(t_opt.state_dict())
    sd_o = copy.deepcopy(o_opt.state_dict())
    assert [sorted(g) for g in sd_o["param_groups"]] == [sorted(g) for g in sd_t["param_groups"]]
    # torch's checkpoint into ours, ours into torch's, ours into ours
    m_o2 = copy.deepcopy(m_t)
    o2 = adapter_class(kind)(groups_of(m_o2, two_groups, lr), **h)
    o2.load_state_dict(sd_t)
    m_t2 = copy.deepcopy(m_o)
    t2 = torch_class(kind)(groups_of(m_t2, two_groups, lr), foreach=False, **h)
    t2.load_state_dict(sd_o)
    m_o3 = copy.deepcopy(m_o)
    o3 = adapter_class(kind)(groups_of(m_o3, two_groups, lr), **h)
    o3.load_state_dict(sd_o)

    runs = [(m_o, o_opt), (m_t, t_opt), (m_o2, o2), (m_t2, t2), (m_o3, o3)]
    rest_o, rest_t, rest_o2, rest_t2, rest_o3 = lockstep(runs, 50, X, Y)
    assert_histories_close(rest_o, rest_t, rtol, atol)
    assert_histories_close(rest_o2, rest_t, rtol, atol)
    # torch's load_state_dict casts NAdam's mu_product to the parameter's dtype
    assert_histories_close(rest_t2, rest_o, rtol, atol, scalar_dtypes=False)
    assert_histories_close(rest_o3, rest_o, 0, 0, exact=True)


@pytest.mark.parametrize("kind", [k for k in OPTIMIZERS if not hasattr(torch.optim, OPTIMIZERS[k].__name__)])
def test_optimizers_torch_lacks_match_ferroptims_numpy_path_bit_for_bit(kind):
    X, Y = data(torch.float32)
    model = network(torch.float32)
    arrays = [p.detach().numpy().copy() for p in model.parameters()]
    opt = adapter_class(kind)(model.parameters(), lr=1e-2)
    ref = OPTIMIZERS[kind](arrays, lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(X), Y).backward()
        grads = [p.grad.numpy().copy() for p in model.parameters()]
        opt.step()
        ref.step(grads)
        for p, a in zip(model.parameters(), arrays):
            np.testing.assert_array_equal(p.detach().numpy(), a)
    for i, p in enumerate(model.parameters()):
        for k, v in ref.state[i].items():
            np.testing.assert_array_equal(np.asarray(opt.state[p][k]), v)


# -- torch's schedulers -------------------------------------------------------------------

SCHEDULERS = {
    "StepLR": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5),
    "CosineAnnealingLR": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20, eta_min=1e-4),
    "OneCycleLR": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=40),
    "LambdaLR": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda e: 0.9**e),
    "SequentialLR": lambda o: torch.optim.lr_scheduler.SequentialLR(
        o,
        [
            torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=10),
            torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.95),
        ],
        milestones=[10],
    ),
    "ReduceLROnPlateau": lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=1, factor=0.5),
}


@pytest.mark.parametrize("kind,h", [("adam", {"lr": 1e-2}), ("sgd", {"lr": 1e-2, "momentum": 0.9})])
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_torch_schedulers_drive_ours_as_they_drive_torchs(name, kind, h):
    X, Y = data(torch.float64)
    m_t = network(torch.float64)
    m_o = copy.deepcopy(m_t)
    t_opt = torch_class(kind)(m_t.parameters(), foreach=False, **h)
    o_opt = adapter_class(kind)(m_o.parameters(), **h)
    t_sched, o_sched = SCHEDULERS[name](t_opt), SCHEDULERS[name](o_opt)
    seen = set()
    for step in range(40):
        for model, opt in ((m_t, t_opt), (m_o, o_opt)):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(X), Y)
            loss.backward()
            opt.step()
        if name == "ReduceLROnPlateau":
            metric = max(1.0 - 0.1 * step, 0.5)  # improves, then stalls from step 5
            t_sched.step(metric)
            o_sched.step(metric)
        else:
            t_sched.step()
            o_sched.step()
        for gt, go in zip(t_opt.param_groups, o_opt.param_groups):
            assert go["lr"] == gt["lr"]
            assert go.get("betas") == gt.get("betas") and go.get("momentum") == gt.get("momentum")
        seen.add(o_opt.param_groups[0]["lr"])
        for a, b in zip(m_o.parameters(), m_t.parameters()):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert len(seen) > 1  # the schedule did change the rate
    if name == "OneCycleLR":  # cycle_momentum moved beta1 / momentum too
        key = "betas" if kind == "adam" else "momentum"
        assert o_opt.param_groups[0][key] != o_opt.defaults[key]


# -- autograd ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_the_update_bumps_the_version_counter_as_torchs_in_place_update_does(kind):
    w = torch.nn.Parameter(torch.randn(4))
    opt = adapter_class(kind)([w], lr=1e-2)
    before = w._version
    loss = (w * w).sum()  # saves w for the backward pass
    w.grad = torch.ones(4)
    opt.step()
    assert w._version > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_step_runs_the_closure_with_gradients_enabled_and_returns_its_loss():
    X, Y = data(torch.float64)
    m_t = network(torch.float64)
    m_o = copy.deepcopy(m_t)
    t_opt = torch.optim.SGD(m_t.parameters(), lr=0.1, momentum=0.9)
    o_opt = fot.SGD(m_o.parameters(), lr=0.1, momentum=0.9)

    def closure_of(model, opt):
        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(X), Y)
            loss.backward()
            return loss

        return closure

    with torch.no_grad():
        for _ in range(5):
            lt = t_opt.step(closure_of(m_t, t_opt))
            lo = o_opt.step(closure_of(m_o, o_opt))
            assert lo.item() == pytest.approx(lt.item(), rel=1e-12)
    for a, b in zip(m_o.parameters(), m_t.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12)


def test_parameters_without_a_gradient_are_skipped_as_torch_skips_them():
    # a frozen layer (requires_grad=False) in the optimizer, and gradients that come and go
    m_t = network(torch.float64)
    m_t[0].weight.requires_grad_(False)
    m_o = copy.deepcopy(m_t)
    t_opt = torch.optim.Adam(m_t.parameters(), lr=1e-2, foreach=False)
    o_opt = fot.Adam(m_o.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(30):
        t_opt.zero_grad()
        o_opt.zero_grad()
        for pt, po in zip(m_t.parameters(), m_o.parameters()):
            if pt.requires_grad and rng.random() < 0.7:
                g = torch.from_numpy(rng.normal(size=tuple(pt.shape)))
                pt.grad, po.grad = g.clone(), g.clone()
        t_opt.step()
        o_opt.step()
        for a, b in zip(m_o.parameters(), m_t.parameters()):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12, atol=1e-14)
        so, st = o_opt.state_dict()["state"], t_opt.state_dict()["state"]
        assert so.keys() == st.keys()
        for i in so:
            assert float(so[i]["step"]) == float(st[i]["step"])
            np.testing.assert_allclose(so[i]["exp_avg_sq"].numpy(), st[i]["exp_avg_sq"].numpy(), rtol=1e-12)
    assert 0 not in o_opt.state_dict()["state"]  # the frozen weight never got state


def test_replacing_a_parameters_data_is_followed_and_keeps_its_state():
    m_t = network(torch.float64)
    m_o = copy.deepcopy(m_t)
    t_opt = torch.optim.Adam(m_t.parameters(), lr=1e-2, foreach=False)
    o_opt = fot.Adam(m_o.parameters(), lr=1e-2)
    X, Y = data(torch.float64)
    for step in range(6):
        if step == 3:
            for model in (m_t, m_o):
                model[0].weight.data = model[0].weight.data.clone() * 0.5
        for model, opt in ((m_t, t_opt), (m_o, o_opt)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(X), Y).backward()
            opt.step()
    for a, b in zip(m_o.parameters(), m_t.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12, atol=1e-14)


# -- torch's Optimizer protocol -------------------------------------------------------------


def test_named_parameters_add_param_group_zero_grad_and_hooks_work_as_torchs():
    m_t = network(torch.float64)
    m_o = copy.deepcopy(m_t)
    t_opt = torch.optim.Adam(m_t[0].named_parameters(), lr=1e-2, foreach=False)
    o_opt = fot.Adam(m_o[0].named_parameters(), lr=1e-2)
    calls = []
    o_opt.register_step_pre_hook(lambda opt, args, kwargs: calls.append("pre"))
    o_opt.register_step_post_hook(lambda opt, args, kwargs: calls.append("post"))
    o_opt.register_state_dict_post_hook(lambda opt, sd: calls.append("state_dict"))
    o_opt.register_load_state_dict_pre_hook(lambda opt, sd: calls.append("load"))
    X, Y = data(torch.float64)
    for step in range(8):
        if step == 4:
            t_opt.add_param_group({"params": m_t[2].named_parameters(), "lr": 5e-3})
            o_opt.add_param_group({"params": m_o[2].named_parameters(), "lr": 5e-3})
        for model, opt in ((m_t, t_opt), (m_o, o_opt)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(X), Y).backward()
            opt.step()
    for a, b in zip(m_o.parameters(), m_t.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert calls == ["pre", "post"] * 8
    sd = o_opt.state_dict()
    assert [g["param_names"] for g in sd["param_groups"]] == [
        g["param_names"] for g in t_opt.state_dict()["param_groups"]
    ]
    o_opt.load_state_dict(sd)
    assert calls[-2:] == ["state_dict", "load"]
    o_opt.zero_grad()
    assert all(p.grad is None for p in m_o.parameters())


def test_pickle_and_deepcopy_continue_identically():
    X, Y = data(torch.float32)
    model = network(torch.float32)
    opt = fot.NAdam(model.parameters(), lr=1e-2, state_dtype="bfloat16")
    train(model, opt, 5, X, Y)
    model2, opt2 = pickle.loads(pickle.dumps((model, opt)))
    model3, opt3 = copy.deepcopy((model, opt))
    ref = train(model, opt, 5, X, Y)
    assert_histories_close(train(model2, opt2, 5, X, Y), ref, 0, 0, exact=True)
    assert_histories_close(train(model3, opt3, 5, X, Y), ref, 0, 0, exact=True)


# -- 16-bit parameters and state ------------------------------------------------------------


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_bfloat16_state_holds_the_bits_of_ferroptims_numpy_path(kind):
    X, Y = data(torch.float32)
    model = network(torch.float32)
    arrays = [p.detach().numpy().copy() for p in model.parameters()]
    opt = adapter_class(kind)(model.parameters(), lr=1e-2, state_dtype="bfloat16")
    ref = OPTIMIZERS[kind](arrays, lr=1e-2, state_dtype="bfloat16")
    for _ in range(10):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(X), Y).backward()
        grads = [p.grad.numpy().copy() for p in model.parameters()]
        opt.step()
        ref.step(grads)
    for p, a in zip(model.parameters(), arrays):
        np.testing.assert_array_equal(p.detach().numpy(), a)
    state = opt.state_dict()["state"]
    for i in range(len(arrays)):
        ours = ref._state_dict(view=False)["state"][i]
        for k, v in ours.items():
            if isinstance(v, np.ndarray):
                assert state[i][k].dtype == torch.bfloat16
                np.testing.assert_array_equal(state[i][k].view(torch.int16).numpy().view(np.uint16), v)
    # torch's optimizer of the same name loads the bfloat16 state (into float32) and ours
    # loads it back to the same bits
    if hasattr(torch.optim, OPTIMIZERS[kind].__name__):
        t_opt = torch_class(kind)(network(torch.float32).parameters(), lr=1e-2)
        t_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
        back = adapter_class(kind)(model.parameters(), lr=1e-2, state_dtype="bfloat16")
        back.load_state_dict(t_opt.state_dict())
        for i, s in back.state_dict()["state"].items():
            for k, v in s.items():
                torch.testing.assert_close(v, state[i][k], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("master_weights", [True, False])
def test_16bit_parameters_update_as_ferroptims_numpy_path(dtype, master_weights):
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 arrays need ml_dtypes")
    np_dtype = ml_dtypes.bfloat16 if dtype == torch.bfloat16 else np.float16
    X, Y = data(dtype)
    model = network(dtype)
    arrays = [p.detach().float().numpy().astype(np_dtype) for p in model.parameters()]
    opt = fot.AdamW(model.parameters(), lr=1e-2, master_weights=master_weights)
    ref = OPTIMIZERS["adamw"](arrays, lr=1e-2, master_weights=master_weights)
    for _ in range(10):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(X).float(), Y.float()).backward()
        grads = [p.grad.float().numpy().astype(np_dtype) for p in model.parameters()]
        opt.step()
        ref.step(grads)
    for p, a in zip(model.parameters(), arrays):
        assert p.dtype == dtype
        np.testing.assert_array_equal(p.detach().view(torch.int16).numpy(), a.view(np.int16))
    if master_weights:
        master = opt.state_dict()["state"][0]["master_param"]
        assert master.dtype == torch.float32
        np.testing.assert_array_equal(master.numpy(), ref.state[0]["master_param"])


# -- refused inputs -----------------------------------------------------------------------------


def test_parameters_ferroptim_cannot_update_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="on device meta.*CPU tensors"):
        fot.Adam([torch.zeros(3, device="meta", requires_grad=True)])
    sparse = torch.sparse_coo_tensor([[0]], [1.0], (3,), check_invariants=True)
    with pytest.raises(ValueError, match="sparse"):
        fot.Adam([sparse])
    with pytest.raises(ValueError, match="not contiguous"):
        fot.Adam([torch.zeros(3, 4).t().requires_grad_()])
    with pytest.raises(TypeError, match="dtype torch.int64"):
        fot.SGD([torch.zeros(3, dtype=torch.int64)])
    with pytest.raises(TypeError, match="optimizer can only optimize Tensors"):  # torch's own check
        fot.SGD([np.zeros(3)])
    with pytest.raises(ValueError, match="does not support differentiable=True"):
        fot.Adam([torch.zeros(3, requires_grad=True)], differentiable=True)
    with pytest.raises(ValueError, match="does not support decoupled_weight_decay=True"):
        fot.Adam([torch.zeros(3, requires_grad=True)], decoupled_weight_decay=True)
    with pytest.raises(ValueError, match="lr"):
        fot.Adam([torch.zeros(3, requires_grad=True)], lr=-1.0)
    fot.Adam([torch.zeros(3, requires_grad=True)], foreach=True, fused=False)  # torch's kernel choices


def test_a_bad_step_changes_nothing():
    w = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    v = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    opt = fot.Adam([w, v], lr=1e-2)
    w.grad, v.grad = torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    opt.step()
    before = ([w.detach().clone(), v.detach().clone()], copy.deepcopy(opt.state_dict()["state"]))
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    opt.param_groups[0]["lr"] = 1e-2
    v.grad = torch.sparse_coo_tensor([[0]], [1.0], (3,), dtype=torch.float64, check_invariants=True)
    with pytest.raises(
        ValueError, match="gradient of parameter param_groups\\[0\\]\\['params'\\]\\[1\\] is sparse"
    ):
        opt.step()
    v.grad = torch.ones(3, dtype=torch.float64)
    opt.param_groups[0]["params"].append(torch.nn.Parameter(torch.zeros(2)))
    with pytest.raises(ValueError, match="add_param_group"):
        opt.step()
    opt.param_groups[0]["params"].pop()
    after = ([w.detach().clone(), v.detach().clone()], opt.state_dict()["state"])
    assert_histories_close([after], [before], 0, 0, exact=True)


def test_a_state_dict_that_does_not_fit_is_refused_before_anything_changes():
    model = network(torch.float64)
    opt = fot.Adam(model.parameters(), lr=1e-2)
    X, Y = data(torch.float64)
    train(model, opt, 2, X, Y)
    before = copy.deepcopy(opt.state_dict())
    other = fot.Adam(network(torch.float64)[0].parameters())
    with pytest.raises(ValueError, match="parameters"):
        opt.load_state_dict(other.state_dict())
    bad = copy.deepcopy(before)
    bad["state"][1]["exp_avg"] = torch.zeros(2)
    with pytest.raises(ValueError, match="exp_avg"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(before)
    bad["param_groups"][0]["decoupled_weight_decay"] = True
    with pytest.raises(ValueError, match="decoupled_weight_decay"):
        opt.load_state_dict(bad)
    assert_histories_close([([], opt.state_dict()["state"])], [([], before["state"])], 0, 0, exact=True)


def test_importing_without_torch_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "ferroptim.torch" or m.startswith("ferroptim.torch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)  # what `import torch` finds without torch
    with pytest.raises(ImportError, match=r"pip install ferroptim\[torch\]"):
        importlib.import_module("ferroptim.torch")


@pytest.mark.slow
def test_importing_without_torch_names_the_extra_in_a_fresh_interpreter():
    import subprocess

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "try:\n    import ferroptim.torch\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install ferroptim[torch]" in out.stdout
    ok = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['torch'] = None; import ferroptim; print('ok')"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ok.stdout.strip() == "ok"


def test_global_step_hooks_run_and_the_profiler_sees_the_step_as_torchs():
    from torch.optim import optimizer as torch_optimizer

    w = torch.nn.Parameter(torch.randn(3))
    opt = fot.Adam([w], lr=1e-2)
    calls = []
    pre = torch_optimizer.register_optimizer_step_pre_hook(lambda o, a, k: calls.append(("pre", o)))
    post = torch_optimizer.register_optimizer_step_post_hook(lambda o, a, k: calls.append(("post", o)))
    try:
        w.grad = torch.ones(3)
        opt.step()
    finally:
        pre.remove()
        post.remove()
    assert calls == [("pre", opt), ("post", opt)]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step()
    assert "Optimizer.step#Adam.step" in {e.name for e in prof.events()}


def test_gradients_that_require_grad_are_read_as_torch_reads_them():
    # as backward(create_graph=True) leaves them
    gen = torch.Generator().manual_seed(0)
    w_t = torch.nn.Parameter(torch.randn(3, dtype=torch.float64, generator=gen))
    w_o = torch.nn.Parameter(w_t.detach().clone())
    start = w_t.detach().clone()
    t_opt, o_opt = torch.optim.SGD([w_t], lr=0.1), fot.SGD([w_o], lr=0.1)
    g = torch.randn(3, dtype=torch.float64, generator=gen)
    w_t.grad, w_o.grad = g.clone().requires_grad_(), g.clone().requires_grad_()
    t_opt.step()
    o_opt.step()
    # torch's add_(g, alpha=-lr) may round once where p - lr * g rounds twice
    torch.testing.assert_close(w_o.detach(), w_t.detach(), rtol=1e-15, atol=0)
    torch.testing.assert_close(w_o.detach(), start - 0.1 * g, rtol=1e-15, atol=0)


def test_a_ferroptim_schedule_as_lr_follows_the_update_count_as_on_the_numpy_path():
    import ferroptim as fo

    X, Y = data(torch.float32)
    model = network(torch.float32)
    arrays = [p.detach().numpy().copy() for p in model.parameters()]
    schedule = fo.schedules.CosineDecay(0.05, decay_steps=20)
    opt = fot.SGD(model.parameters(), lr=schedule, momentum=0.9)
    ref = fo.SGD(arrays, lr=schedule, momentum=0.9)
    for _ in range(25):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(X), Y).backward()
        grads = [p.grad.numpy().copy() for p in model.parameters()]
        opt.step()
        ref.step(grads)
    for p, a in zip(model.parameters(), arrays):
        np.testing.assert_array_equal(p.detach().numpy(), a)


def test_a_refused_param_group_leaves_the_optimizer_as_it_was():
    w = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    opt = fot.Adam([w], lr=1e-2)
    w.grad = torch.ones(3, dtype=torch.float64)
    opt.step()
    before = snapshot_of([w], opt)
    with pytest.raises(ValueError, match="on device meta"):
        opt.add_param_group({"params": [torch.zeros(2, device="meta", requires_grad=True)]})
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))], "lr": -1.0})
    assert len(opt.param_groups) == 1
    assert_histories_close([snapshot_of([w], opt)], [before], 0, 0, exact=True)
    opt.step()  # and it still steps
    assert float(opt.state_dict()["state"][0]["step"]) == 2


def snapshot_of(params, opt):
    return [p.detach().clone() for p in params], copy.deepcopy(opt.state_dict()["state"])


def test_steps_below_a_quarter_million_elements_run_on_the_calling_thread_with_the_same_bits():
    import ferroptim as fo

    # in a torch loop torch's threads run right before and after the step: a small step
    # does not hand work to ferroptim's pool too (benches/torch_adapter.py's W4 loop)
    layer = torch.nn.Linear(256, 256)
    opt = fot.Adam(layer.parameters(), lr=1e-3)
    assert opt._engine.parallel_min_elements == 1 << 18
    assert fo.Adam([np.zeros(3)])._engine.parallel_min_elements == 1 << 15  # the NumPy path's
    # the serial step gives the threaded one's bits
    rng = np.random.default_rng(0)
    p, g = rng.standard_normal(300_000).astype(np.float32), rng.standard_normal(300_000).astype(np.float32)
    a, b = p.copy(), p.copy()
    serial, threaded = fo.Adam([a], lr=1e-2), fo.Adam([b], lr=1e-2)
    serial._engine.parallel_min_elements = 10**9
    for _ in range(3):
        serial.step([g])
        threaded.step([g])
    np.testing.assert_array_equal(a, b)
