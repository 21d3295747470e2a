"""fo.ScheduleFreeAdamW / fo.ScheduleFreeSGD: the ``schedulefree`` package's optimizers
(``AdamWScheduleFree``, ``SGDScheduleFree``) over NumPy arrays.

Tolerance. Every element-wise operation is torch's CPU kernel's as built for AVX2 and
AVX-512 (its fused multiply-adds in ``lerp_``, ``add_(alpha=)`` and ``addcmul_``), with no
reduction anywhere, so SGD's parameters, state and group scalars equal the package's bit for
bit after every step and every train/eval switch, float32 and float64, on a machine where
torch runs those kernels (asserted below). AdamW also takes a square root: ours is the
correctly rounded one, torch's comes from MKL where torch is built with it, which on some
machines (AVX-512 builds) is off by an ulp for a fraction of the inputs. Where torch's
``sqrt`` is correctly rounded (probed below) AdamW is asserted bit for bit too; elsewhere to
float rounding accumulated over 100 steps, the tolerance of tests/test_torch.py (rtol 2e-5,
atol 2e-6 float32; 1e-12, 1e-13 float64). Resuming from a state_dict is asserted bit for
bit everywhere (our trajectory against our own).
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import ferroptim as fo

STEPS = 100
SWITCH_AT = (30, 70)  # eval() (compared: the x weights), then train() again, after these steps
SHAPES = {"s": (), "v": (7,), "u": (70,), "W": (37, 21), "T": (3, 4, 10), "big": (200, 171)}

ADAMW_CONFIGS = [
    {},  # the package's defaults
    {"lr": 0.02, "warmup_steps": 10, "weight_decay": 0.01},
    {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6, "r": 1.0, "weight_lr_power": 1.0},
    {"lr": 0.01, "warmup_steps": 200, "weight_decay": 0.1, "r": 0.5, "foreach": False},
]
SGD_CONFIGS = [
    {"lr": 0.1},
    {"lr": 0.05, "momentum": 0.8, "warmup_steps": 10, "weight_decay": 0.01},
    {"lr": 0.2, "warmup_steps": 150, "r": 2.0, "weight_lr_power": 0.0, "foreach": False},
]
CASES = [("adamw", h) for h in ADAMW_CONFIGS] + [("sgd", h) for h in SGD_CONFIGS]
OURS = {"adamw": fo.ScheduleFreeAdamW, "sgd": fo.ScheduleFreeSGD}
GROUP_SCALARS = ("k", "train_mode", "weight_sum", "lr_max", "scheduled_lr")


def _id(case):
    kind, h = case
    return kind + ":" + (",".join(f"{k}={v}" for k, v in h.items()) or "default")


def schedulefree():
    return pytest.importorskip("schedulefree", reason="the comparison with the schedulefree package needs it")


def torch_module():
    schedulefree()
    return pytest.importorskip("torch", reason="the comparison with the schedulefree package needs torch")


def theirs(kind):
    sf = schedulefree()
    return {"adamw": sf.AdamWScheduleFree, "sgd": sf.SGDScheduleFree}[kind]


def exact_kernels(kind):
    """Whether torch's kernels here are the ones ours reproduce bit for bit (see the module
    docstring): AVX2 or AVX-512 fused multiply-adds, and for AdamW a correctly rounded
    ``sqrt``."""
    torch = torch_module()

    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        return False
    if kind == "sgd":
        return True
    rng = np.random.default_rng(7)
    for dtype in (np.float32, np.float64):
        x = np.abs(rng.normal(size=4099)).astype(dtype) * 10.0 ** rng.integers(-8, 3, size=4099)
        if not np.array_equal(torch.from_numpy(x).sqrt().numpy(), np.sqrt(x)):
            return False
    return True


def assert_same(ours, them, what, exact):
    them = np.asarray(them)
    assert ours.dtype == them.dtype and ours.shape == them.shape, what
    if exact:
        np.testing.assert_array_equal(ours, them, err_msg=what)
    else:
        rtol, atol = (2e-5, 2e-6) if ours.dtype == np.float32 else (1e-12, 1e-13)
        np.testing.assert_allclose(ours, them, rtol=rtol, atol=atol, err_msg=what)


def make(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return {k: np.asarray(rng.normal(size=s), dtype=dtype) for k, s in SHAPES.items()}


def grads_at(t, params):
    rng = np.random.default_rng(1000 + t)
    # gradients of different scales per parameter and step
    return {
        k: np.asarray(rng.normal(size=v.shape) * 10.0 ** rng.uniform(-3, 1), dtype=v.dtype)
        for k, v in params.items()
    }


def split(params):
    """Two param groups: the matrices at a larger lr (and, for AdamW, other betas)."""
    names = list(params)
    return [
        {"params": [params[k] for k in names if params[k].ndim >= 2], "lr": 0.03, "weight_decay": 0.02},
        {"params": [params[k] for k in names if params[k].ndim < 2]},
    ]


def compare(opt, topt, ours, tps, what, exact):
    state = opt.state_dict()["state"]
    for i, (p, tp) in enumerate(zip(ours, tps)):
        assert_same(p, tp.numpy(), what, exact)
        ts = topt.state[tp]
        mine = state.get(i)
        assert (mine is None) == (len(ts) == 0), what
        if mine is not None:
            assert set(mine) == set(ts), what
            for name in mine:
                assert_same(mine[name], ts[name].numpy(), f"{what}: {name}", exact)
    for g, tg in zip(opt.param_groups, topt.param_groups):
        for k in GROUP_SCALARS:
            assert g[k] == tg[k], f"{what}: {k}"


def run_pair(kind, h, dtype, grouped=False, steps=STEPS, exact=None):
    """Ours and the package's side by side from the same parameters and gradients, compared
    after every step and at each eval() (then back to train())."""
    torch = torch_module()

    params = make(dtype)
    tps = {k: torch.tensor(v.copy()) for k, v in params.items()}
    if grouped:
        groups = split(params)
        by_id = {id(params[k]): tps[k] for k in params}
        tgroups = [{**g, "params": [by_id[id(p)] for p in g["params"]]} for g in groups]
        opt, topt = OURS[kind](groups, **h), theirs(kind)(tgroups, **h)
        order = [p for g in groups for p in g["params"]]
        torder = [tp for g in tgroups for tp in g["params"]]
    else:
        opt, topt = OURS[kind](list(params.values()), **h), theirs(kind)(list(tps.values()), **h)
        order, torder = list(params.values()), list(tps.values())
    exact = exact_kernels(kind) if exact is None else exact
    opt.train()
    topt.train()
    for t in range(steps):
        g = grads_at(t, params)
        opt.step([g[k] for k in params] if not grouped else [g[_key(params, p)] for p in order])
        for k, tp in tps.items():
            tp.grad = torch.from_numpy(g[k].copy())
        topt.step()
        compare(opt, topt, order, torder, f"step {t + 1}", exact)
        if t + 1 in SWITCH_AT:
            opt.eval()
            topt.eval()
            compare(opt, topt, order, torder, f"eval after step {t + 1}", exact)
            opt.train()
            topt.train()
            compare(opt, topt, order, torder, f"train after step {t + 1}", exact)
    return opt, params


def _key(params, p):
    return next(k for k, v in params.items() if v is p)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_matches_the_package_after_every_step_and_switch(case, dtype):
    kind, h = case
    run_pair(kind, h, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("h", ADAMW_CONFIGS, ids=lambda h: _id(("adamw", h)))
def test_adamw_is_the_package_bit_for_bit_with_a_correctly_rounded_sqrt(h, dtype, monkeypatch):
    # Everything but torch's (MKL's) square root is reproduced exactly: with the package's
    # sqrt replaced by the correctly rounded one, every bit agrees on AVX2 and AVX-512.
    torch = torch_module()

    def sqrt_(t):
        return t.copy_(torch.from_numpy(np.asarray(np.sqrt(t.numpy()))))

    monkeypatch.setattr(torch, "_foreach_sqrt_", lambda ts: [sqrt_(t) for t in ts] and None)
    monkeypatch.setattr(torch.Tensor, "sqrt_", sqrt_)
    run_pair("adamw", h, dtype, exact=torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_two_param_groups_match_the_package(kind, dtype):
    h = {"warmup_steps": 5, "lr": 0.01} if kind == "adamw" else {"warmup_steps": 5, "lr": 0.1}
    opt, _ = run_pair(kind, h, dtype, grouped=True)
    assert opt.param_groups[0]["lr"] == 0.03 and opt.param_groups[1]["lr"] == h["lr"]


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_defaults_and_param_groups_are_the_packages(kind):
    torch = torch_module()

    opt = OURS[kind]([np.ones((2, 3))])
    them = theirs(kind)([torch.ones(2, 3)])
    assert opt.defaults == them.defaults
    assert opt.state_dict()["param_groups"] == them.state_dict()["param_groups"]


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_step_in_eval_mode_is_refused_like_the_package(kind):
    torch = torch_module()

    tp = torch.ones(3)
    tp.grad = torch.ones(3)
    with pytest.raises(Exception, match="train mode"):
        theirs(kind)([tp]).step()
    p = np.ones(3)
    opt = OURS[kind]([p])
    with pytest.raises(RuntimeError, match=r"train mode.*\.train\(\)"):
        opt.step([np.ones(3)])
    np.testing.assert_array_equal(p, 1.0)
    assert opt.state_dict()["state"] == {} and opt.param_groups[0]["k"] == 0


def to_torch(sd):
    torch = torch_module()

    out = copy.deepcopy(sd)
    for s in out["state"].values():
        for k, v in s.items():
            s[k] = torch.from_numpy(v)
    return out


def to_numpy(sd):
    out = copy.deepcopy(sd)
    for s in out["state"].values():
        for k, v in s.items():
            s[k] = v.numpy()
    return out


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_the_package_loads_our_state_dict_and_we_load_its(kind):
    torch = torch_module()

    h = {"lr": 0.02, "warmup_steps": 10, "weight_decay": 0.01}
    exact = exact_kernels(kind)
    params = make(np.float32)
    opt = OURS[kind](list(params.values()), **h)
    opt.train()
    for t in range(30):
        opt.step(list(grads_at(t, params).values()))
    opt.eval()  # saved in eval mode, as the package advises
    tps = {k: torch.tensor(v.copy()) for k, v in params.items()}
    topt = theirs(kind)(list(tps.values()), lr=5.0)
    topt.load_state_dict(to_torch(opt.state_dict()))
    assert topt.param_groups[0]["k"] == 30 and topt.param_groups[0]["lr"] == 0.02
    ours = {k: v.copy() for k, v in params.items()}
    back = OURS[kind](list(ours.values()), lr=5.0)
    back.load_state_dict(to_numpy(topt.state_dict()))
    for o in (opt, topt, back):
        o.train()
    for t in range(30, 50):
        g = grads_at(t, params)
        opt.step(list(g.values()))
        back.step(list(g.values()))
        for k, tp in tps.items():
            tp.grad = torch.from_numpy(g[k].copy())
        topt.step()
    for o in (opt, topt, back):
        o.eval()
    for k in params:
        assert_same(params[k], tps[k].numpy(), k, exact)
        np.testing.assert_array_equal(ours[k], params[k])


# -- without torch -------------------------------------------------------------------------


def train_with_switches(opt, params, start, stop):
    for t in range(start, stop):
        opt.step(grads_at(t, params))
        if t + 1 in SWITCH_AT:
            opt.eval()
            opt.train()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("in_eval", [True, False], ids=["saved-in-eval", "saved-in-train"])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_state_dict_at_step_50_resumes_bit_identically(case, in_eval, dtype):
    kind, h = case
    straight = make(dtype)
    opt = OURS[kind](straight, **h)
    opt.train()
    train_with_switches(opt, straight, 0, STEPS)
    opt.eval()

    first = make(dtype)
    opt1 = OURS[kind](first, **h)
    opt1.train()
    train_with_switches(opt1, first, 0, 50)
    if in_eval:
        opt1.eval()
    sd = pickle.loads(pickle.dumps(opt1.state_dict()))
    assert sd["param_groups"][0]["param_names"] == list(SHAPES)
    assert sd["param_groups"][0]["k"] == 50 and sd["param_groups"][0]["train_mode"] is not in_eval
    resumed = {k: v.copy() for k, v in first.items()}
    opt2 = OURS[kind](resumed, lr=7.0)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == h.get("lr", opt.defaults["lr"])
    if in_eval:
        # the package's advice: save in eval mode; resuming then takes a train() (a
        # round trip x -> y, equal to never stopping only when the uninterrupted run made it
        # too, so the reference run makes it as well)
        opt2.train()
        opt1.train()
        for k in first:
            np.testing.assert_array_equal(resumed[k], first[k])
        train_with_switches(opt1, first, 50, STEPS)
        opt1.eval()
        reference, ref_opt = first, opt1
    else:
        reference, ref_opt = straight, opt
    train_with_switches(opt2, resumed, 50, STEPS)
    opt2.eval()
    for k in reference:
        np.testing.assert_array_equal(resumed[k], reference[k])
        for name, v in ref_opt.state[k].items():
            np.testing.assert_array_equal(opt2.state[k][name], v)
    assert {k: opt2.param_groups[0][k] for k in GROUP_SCALARS} == {
        k: ref_opt.param_groups[0][k] for k in GROUP_SCALARS
    }


def test_a_state_dict_copies_and_round_trips():
    p = np.ones((2, 3), np.float32)
    opt = fo.ScheduleFreeAdamW({"w": p}, lr=0.1)
    opt.train()
    opt.step({"w": np.full((2, 3), 0.5, np.float32)})
    sd = opt.state_dict()
    sd["state"][0]["z"][...] = 9.0  # a copy
    assert opt.state["w"]["z"][0, 0] != 9.0
    sd = opt.state_dict()
    other = fo.ScheduleFreeAdamW({"w": p.copy()})
    other.load_state_dict(sd)
    again = other.state_dict()
    assert again["param_groups"] == sd["param_groups"]
    for k in ("z", "exp_avg_sq"):
        np.testing.assert_array_equal(again["state"][0][k], sd["state"][0][k])
        assert again["state"][0][k].dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_eval_moves_to_x_and_train_returns_to_y_up_to_rounding(kind, dtype):
    params = make(dtype)
    opt = OURS[kind](params, lr=0.05)
    opt.eval()  # before any step: nothing to move
    opt.train()
    for t in range(20):
        opt.step(grads_at(t, params))
    y = {k: v.copy() for k, v in params.items()}
    m = 0.9
    opt.eval()
    assert opt.param_groups[0]["train_mode"] is False
    for k, p in params.items():
        z = opt.state[k]["z"]
        # y = (1 - m) z + m x, so x = (y - (1 - m) z) / m
        np.testing.assert_allclose(p, (y[k].astype(np.float64) - (1 - m) * z) / m, rtol=1e-5, atol=1e-5)
    assert any(not np.array_equal(params[k], y[k]) for k in params)
    x = {k: v.copy() for k, v in params.items()}
    opt.eval()  # already in eval mode: nothing moves
    for k in params:
        np.testing.assert_array_equal(params[k], x[k])
    opt.train()
    ulp = np.finfo(dtype).eps
    for k in params:
        np.testing.assert_allclose(params[k], y[k], rtol=0, atol=16 * ulp * (1 + np.abs(y[k]).max()))


BAD = [
    ("adamw", {"lr": -1.0}, ValueError, "lr"),
    ("adamw", {"lr": float("nan")}, ValueError, "lr"),
    ("adamw", {"betas": (0.0, 0.999)}, ValueError, r"betas\[0\]"),
    ("adamw", {"betas": (1.0, 0.999)}, ValueError, r"betas\[0\]"),
    ("adamw", {"betas": (0.9, 1.0)}, ValueError, r"betas\[1\]"),
    ("adamw", {"betas": (0.9,)}, ValueError, "betas"),
    ("adamw", {"eps": -1e-8}, ValueError, "eps"),
    ("adamw", {"weight_decay": -0.1}, ValueError, "weight_decay"),
    ("adamw", {"warmup_steps": -1}, ValueError, "warmup_steps"),
    ("adamw", {"warmup_steps": 2.5}, TypeError, "warmup_steps"),
    ("adamw", {"r": float("inf")}, ValueError, "r"),
    ("adamw", {"weight_lr_power": "2"}, TypeError, "weight_lr_power"),
    ("adamw", {"foreach": "yes"}, TypeError, "foreach"),
    ("sgd", {"lr": -0.1}, ValueError, "lr"),
    ("sgd", {"momentum": 0.0}, ValueError, "momentum"),
    ("sgd", {"momentum": 1.0}, ValueError, "momentum"),
    ("sgd", {"weight_decay": -1.0}, ValueError, "weight_decay"),
    ("sgd", {"warmup_steps": -3}, ValueError, "warmup_steps"),
    ("sgd", {"r": None}, TypeError, "r"),
]


@pytest.mark.parametrize(
    "kind, kwargs, error, match", BAD, ids=lambda x: str(x) if isinstance(x, dict) else None
)
def test_bad_hyper_parameters_are_refused_before_anything_changes(kind, kwargs, error, match):
    with pytest.raises(error, match=match):
        OURS[kind]([np.ones((2, 3))], **kwargs)
    # set on a param group of a trained optimizer: step, eval and train refuse it, nothing moves
    p, v = np.ones((2, 3)), np.ones(3)
    opt = OURS[kind]([p, v])
    opt.train()
    opt.step([np.full((2, 3), 0.5), np.full(3, 0.5)])
    before = (p.copy(), v.copy(), opt.state_dict())
    ((key, value),) = kwargs.items()
    opt.param_groups[0][key] = value
    for call in (lambda: opt.step([np.ones((2, 3)), np.ones(3)]), opt.eval, opt.train):
        with pytest.raises(error, match=match):
            call()
        np.testing.assert_array_equal(p, before[0])
        np.testing.assert_array_equal(v, before[1])
        sd = opt.state_dict()
        assert sd["param_groups"][0]["k"] == 1 and sd["param_groups"][0]["train_mode"] is True
        for i in (0, 1):
            for name, a in before[2]["state"][i].items():
                np.testing.assert_array_equal(sd["state"][i][name], a)


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_the_package_refuses_what_it_checks(kind):
    # the package checks only SGD's lr, weight_decay and momentum; we check every argument
    torch = torch_module()
    for k, kwargs, _, _ in BAD:
        if k == kind == "sgd" and set(kwargs) <= {"lr", "weight_decay", "momentum"}:
            with pytest.raises(ValueError):
                theirs(kind)([torch.ones(2)], **kwargs)


def test_a_refused_state_dict_changes_nothing():
    p = np.ones((3, 4))
    opt = fo.ScheduleFreeAdamW([p])
    opt.train()
    opt.step([np.full((3, 4), 0.5)])
    good = opt.state_dict()
    wrong_shape = copy.deepcopy(good)
    wrong_shape["state"][0]["z"] = np.zeros((4, 3))
    missing = copy.deepcopy(good)
    del missing["state"][0]["exp_avg_sq"]
    bad_counter = copy.deepcopy(good)
    bad_counter["param_groups"][0]["k"] = -1
    bad_mode = copy.deepcopy(good)
    bad_mode["param_groups"][0]["train_mode"] = "yes"
    bad_beta = copy.deepcopy(good)
    bad_beta["param_groups"][0]["betas"] = (1.5, 0.999)
    for bad in (wrong_shape, missing, bad_counter, bad_mode, bad_beta):
        with pytest.raises((ValueError, TypeError)):
            opt.load_state_dict(bad)
        now = opt.state_dict()
        assert now["param_groups"] == good["param_groups"]
        np.testing.assert_array_equal(now["state"][0]["z"], good["state"][0]["z"])


def test_bad_parameters_and_gradients_are_refused_before_anything_changes():
    with pytest.raises(TypeError, match="float32 or float64"):
        fo.ScheduleFreeSGD([np.ones(3, dtype=np.int32)])
    with pytest.raises(ValueError, match="C-contiguous"):
        fo.ScheduleFreeSGD([np.ones((3, 4))[:, ::2]])
    a, b = np.ones((2, 3)), np.ones(3, np.float32)
    opt = fo.ScheduleFreeAdamW([a, b])
    opt.train()
    for grads in ([np.ones((2, 3))], [np.ones((2, 3)), np.ones(3)], [np.ones((3, 2)), np.ones(3, np.float32)],
                  [np.ones((2, 3)), b], {"a": a}, np.ones(3)):  # fmt: skip
        with pytest.raises((ValueError, TypeError)):
            opt.step(grads)
    np.testing.assert_array_equal(a, 1.0)
    np.testing.assert_array_equal(b, 1.0)
    assert opt.state_dict()["state"] == {} and opt.param_groups[0]["k"] == 0


def test_warmup_and_the_weights_follow_the_packages_schedule():
    p = np.zeros(4)
    opt = fo.ScheduleFreeSGD([p], lr=0.5, warmup_steps=4, r=1.0, weight_lr_power=2.0)
    opt.train()
    weight_sum = 0.0
    for k in range(6):
        opt.step([np.ones(4)])
        lr = 0.5 * min(1.0, (k + 1) / 4)
        weight_sum += (k + 1) * lr**2  # lr_max = lr: the warmup only grows it
        g = opt.param_groups[0]
        assert g["k"] == k + 1 and g["scheduled_lr"] == lr and g["lr_max"] == lr
        assert g["weight_sum"] == pytest.approx(weight_sum, rel=1e-15)


def test_they_are_exported_and_named_like_the_package():
    for cls in (fo.ScheduleFreeAdamW, fo.ScheduleFreeSGD):
        name = cls.__name__
        assert (
            getattr(fo, name) is getattr(fo.optim, name) and name in fo.optim.__all__ and name in fo.__all__
        )
        assert cls.__module__ == "ferroptim.optim"
        assert f"{name} (" in repr(cls([np.ones(2)]))


# -- MLP.fit ---------------------------------------------------------------------------------


def _blobs(m=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, 4))
    Y = (X @ np.array([1.0, -2.0, 0.5, 1.5]) + 0.3 * rng.standard_normal(m) > 0).astype(np.float64)[:, None]
    return X, Y


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_fit_trains_in_train_mode_and_leaves_the_eval_weights(kind):
    X, Y = _blobs()
    model = fo.nn.MLP([4, 16, 1], hidden="tanh", output="sigmoid", dtype=np.float64, seed=3)
    twin = fo.nn.MLP([4, 16, 1], hidden="tanh", output="sigmoid", dtype=np.float64, seed=3)
    h = {"lr": 0.02, "warmup_steps": 10} if kind == "adamw" else {"lr": 0.5, "warmup_steps": 10}
    opt, topt = OURS[kind](model.params, **h), OURS[kind](twin.params, **h)
    before = model.cost(X, Y)
    hist = model.fit(X, Y, opt, batch_size=32, epochs=3, seed=1)
    assert opt.param_groups[0]["train_mode"] is False and opt.param_groups[0]["k"] == 3 * 13
    # the same numbers as the package's loop: train(), a step per batch at y, eval()
    topt.train()
    costs = []
    batches = fo.MiniBatches(X, Y, batch_size=32, seed=1)
    for _ in range(3):
        for Xb, Yb in batches:
            c, g = twin.loss_and_grad(Xb, Yb)
            costs.append(c)
            topt.step(g)
    topt.eval()
    np.testing.assert_array_equal(hist.costs, costs)
    for k in model.params:
        np.testing.assert_array_equal(model.params[k], twin.params[k], err_msg=k)
    assert model.cost(X, Y) < 0.6 * before
    # predict uses the eval weights x; train() moves the parameters to y, which predict differently
    x_proba = model.predict_proba(X)
    np.testing.assert_array_equal(x_proba, twin.predict_proba(X))
    opt.train()
    assert not np.array_equal(model.predict_proba(X), x_proba)
    opt.eval()


def test_fit_validates_and_calls_back_with_the_eval_weights_and_resumes_training_at_y():
    X, Y = _blobs()
    Xv, Yv = _blobs(100, seed=9)
    a = fo.nn.MLP([4, 8, 1], output="sigmoid", dtype=np.float64, seed=0)
    b = fo.nn.MLP([4, 8, 1], output="sigmoid", dtype=np.float64, seed=0)
    oa, ob = fo.ScheduleFreeAdamW(a.params, lr=0.01), fo.ScheduleFreeAdamW(b.params, lr=0.01)
    seen = []
    hist = a.fit(
        X, Y, oa, batch_size=50, epochs=2, seed=0, validation_data=(Xv, Yv),
        callbacks=[lambda e, logs: seen.append((oa.param_groups[0]["train_mode"], a.params["W1"].copy()))],
    )  # fmt: skip
    # the package's loop with an evaluation after each epoch
    ob.train()
    batches, val = fo.MiniBatches(X, Y, batch_size=50, seed=0), []
    for _ in range(2):
        for Xb, Yb in batches:
            ob.step(b.loss_and_grad(Xb, Yb)[1])
        ob.eval()
        val.append(b.cost(Xv, Yv))
        ob.train()
    ob.eval()
    assert [mode for mode, _ in seen] == [False, False]
    np.testing.assert_allclose(hist.val_costs, val, rtol=1e-12)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)


def test_fit_refuses_a_schedule_free_optimizer_on_other_arrays_and_zero_epochs_change_nothing():
    X, Y = _blobs(50)
    model = fo.nn.MLP([4, 3, 1], output="sigmoid", seed=0)
    other = fo.nn.MLP([4, 3, 1], output="sigmoid", seed=0)
    with pytest.raises(ValueError, match="other arrays"):
        model.fit(X, Y, fo.ScheduleFreeSGD(other.params))
    opt = fo.ScheduleFreeSGD(model.params, lr=0.1)
    model.fit(X, Y, opt, epochs=1)
    after = {k: v.copy() for k, v in model.params.items()}
    model.fit(X, Y, opt, epochs=0)
    for k in after:
        np.testing.assert_array_equal(model.params[k], after[k])
    assert opt.param_groups[0]["train_mode"] is False
