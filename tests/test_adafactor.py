"""fo.Adafactor: torch.optim.Adafactor over NumPy arrays.

Tolerance. Our reductions reproduce torch's CPU kernels as built for AVX2 (the lane count
of its vectorized 2-norm and cascade sum, the order its scalar tails add in, its fused
multiply-adds in ``lerp_`` and ``add_(alpha=)``), so on a machine where torch runs its AVX2
kernels every parameter and every state array equals torch's bit for bit after every step,
float32 and float64 (asserted below). On other machines (AVX-512: twice the lanes) torch's
sums are associated differently, and the results agree to float rounding accumulated over
50 steps (rtol 1e-4 float32, 1e-10 float64). torch splits the mean of row_var over 32768
rows or more across its threads: there the parameters agree to a few ulps per step (last
test).
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import ferroptim as fo

torch = pytest.importorskip("torch", reason="the comparison with torch.optim.Adafactor needs torch")

EXACT = torch.backends.cpu.get_cpu_capability() == "AVX2"
STEPS = 50

# scalar, vectors, matrices with one row or column, a matrix whose row sums go through
# torch's cascade levels (600 rows), and a 3-D tensor (a batch of factored matrices)
SHAPES = {
    "s": (),
    "v": (7,),
    "u": (70,),
    "W": (37, 21),
    "col": (19, 1),
    "row": (1, 9),
    "tall": (600, 3),
    "T": (3, 4, 10),
}

CONFIGS = [
    {},  # torch's optim_db: default, weight decay, maximize, beta2_decay, d
    {"weight_decay": 0.1, "lr": 0.01},
    {"weight_decay": 0.1, "maximize": True},
    {"beta2_decay": -1.0},
    {"d": 1.5},
    {"eps": (1e-30, 1e-3)},
    {"eps": (1e-4, 0.0), "lr": 0.3},
    {"eps": (None, 0.5), "beta2_decay": -0.5},
    {"foreach": True, "weight_decay": 0.05},
]


def _id(h):
    return ",".join(f"{k}={v}" for k, v in h.items()) or "default"


def assert_same(ours, theirs, what):
    theirs = np.asarray(theirs)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, what
    if EXACT:
        np.testing.assert_array_equal(ours, theirs, err_msg=what)
    else:
        tol = 1e-4 if ours.dtype == np.float32 else 1e-10
        np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol, err_msg=what)


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


def torch_twin(params, h):
    tps = {k: torch.tensor(v.copy()) for k, v in params.items()}
    return tps, torch.optim.Adafactor(list(tps.values()), **h)


def torch_step(topt, tps, grads):
    for k, tp in tps.items():
        tp.grad = torch.from_numpy(grads[k].copy())
    topt.step()


def compare_all(opt, params, topt, tps, step):
    for k, p in params.items():
        assert_same(p, tps[k].numpy(), f"step {step}: {k}")
        ts = topt.state[tps[k]]
        ours = opt.state[k]
        assert set(ours) == set(ts), k
        assert ours["step"] == ts["step"].item() and ts["step"].dtype == torch.float32
        for name in set(ours) - {"step"}:
            assert_same(ours[name], ts[name].numpy(), f"step {step}: {k}.{name}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("h", CONFIGS, ids=_id)
def test_matches_torch_after_every_step(dtype, h):
    params = make(dtype)
    tps, topt = torch_twin(params, h)
    opt = fo.Adafactor(params, **h)
    for t in range(STEPS):
        g = grads_at(t, params)
        opt.step(g)
        torch_step(topt, tps, g)
        compare_all(opt, params, topt, tps, t + 1)


def test_param_groups_and_eps1_from_the_groups_first_dtype_match_torch():
    # torch resolves eps1=None once per group from its first parameter: float32's eps is
    # then used for the float64 parameter of the same group too
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 5)).astype(np.float32)
    b = rng.normal(size=(6, 5)) * 1e-5
    c = rng.normal(size=(4,))
    groups = [{"params": [a, b], "lr": 0.05}, {"params": [c], "eps": (1e-6, 1e-2), "d": 2.0}]
    opt = fo.Adafactor(groups, weight_decay=0.01)
    ta, tb, tc = (torch.tensor(x.copy()) for x in (a, b, c))
    topt = torch.optim.Adafactor(
        [{"params": [ta, tb], "lr": 0.05}, {"params": [tc], "eps": (1e-6, 1e-2), "d": 2.0}], weight_decay=0.01
    )
    for t in range(30):
        grads = [rng.normal(size=x.shape).astype(x.dtype) * 1e-4 for x in (a, b, c)]
        opt.step(grads)
        for tp, g in zip((ta, tb, tc), grads):
            tp.grad = torch.from_numpy(g.copy())
        topt.step()
        for ours, theirs in zip((a, b, c), (ta, tb, tc)):
            assert_same(ours, theirs.numpy(), f"step {t + 1}")


def test_the_state_is_factored_with_torchs_shapes_and_names():
    params = make(np.float32)
    opt = fo.Adafactor(params)
    assert opt.state == {}
    opt.step(grads_at(0, params))
    st = opt.state
    assert set(st["s"]) == {"step", "variance"} and st["s"]["variance"].shape == ()
    assert set(st["u"]) == {"step", "variance"} and st["u"]["variance"].shape == (70,)
    assert set(st["W"]) == {"step", "row_var", "col_var"}
    assert st["W"]["row_var"].shape == (37, 1) and st["W"]["col_var"].shape == (1, 21)
    assert st["T"]["row_var"].shape == (3, 4, 1) and st["T"]["col_var"].shape == (3, 1, 10)
    assert st["W"]["step"] == 1.0 and st["W"]["row_var"].dtype == np.float32
    # the factored state of a (600, 3) matrix holds 603 numbers, Adam's would hold 3600
    assert st["tall"]["row_var"].size + st["tall"]["col_var"].size == 603


def test_defaults_and_param_groups_are_torchs():
    opt = fo.Adafactor([np.ones((2, 3))])
    t = torch.optim.Adafactor([torch.ones(2, 3)])
    assert opt.defaults == t.defaults
    ours = {k: v for k, v in opt.state_dict()["param_groups"][0].items()}
    assert ours == t.state_dict()["param_groups"][0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_round_trip_resumes_bit_identically(dtype):
    h = {"weight_decay": 0.02, "lr": 0.05}
    straight = make(dtype)
    opt = fo.Adafactor(straight, **h)
    for t in range(STEPS):
        opt.step(grads_at(t, straight))

    first = make(dtype)
    opt1 = fo.Adafactor(first, **h)
    for t in range(20):
        opt1.step(grads_at(t, first))
    sd = pickle.loads(pickle.dumps(opt1.state_dict()))
    assert sd["param_groups"][0]["param_names"] == list(SHAPES)
    assert isinstance(sd["state"][0]["step"], float)
    resumed = {k: v.copy() for k, v in first.items()}
    opt2 = fo.Adafactor(resumed, lr=7.0)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 0.05
    for t in range(20, STEPS):
        opt2.step(grads_at(t, resumed))
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k])
        for name, v in opt.state[k].items():
            np.testing.assert_array_equal(opt2.state[k][name], v)


def to_torch_state_dict(sd):
    out = copy.deepcopy(sd)
    for s in out["state"].values():
        for k, v in s.items():
            s[k] = torch.tensor(v, dtype=torch.float32) if k == "step" else torch.from_numpy(v)
    return out


def to_numpy_state_dict(sd):
    out = copy.deepcopy(sd)
    for s in out["state"].values():
        for k, v in s.items():
            s[k] = v.numpy()
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_loads_our_state_dict_and_we_load_torchs(dtype):
    h = {"weight_decay": 0.1, "maximize": True}
    params = make(dtype)
    opt = fo.Adafactor(list(params.values()), **h)
    for t in range(20):
        opt.step(list(grads_at(t, params).values()))
    # torch continues from our state ...
    tps, topt = torch_twin(params, {"lr": 3.0})
    topt.load_state_dict(to_torch_state_dict(opt.state_dict()))
    assert topt.param_groups[0]["lr"] == 0.01 and topt.param_groups[0]["maximize"]
    # ... and we continue from torch's
    ours = {k: v.copy() for k, v in params.items()}
    back = fo.Adafactor(list(ours.values()), lr=3.0)
    back.load_state_dict(to_numpy_state_dict(topt.state_dict()))
    for t in range(20, 35):
        g = grads_at(t, params)
        opt.step(list(g.values()))
        back.step(list(g.values()))
        torch_step(topt, tps, g)
    for k in params:
        assert_same(params[k], tps[k].numpy(), k)
        np.testing.assert_array_equal(ours[k], params[k])


def test_a_refused_state_dict_changes_nothing():
    p = np.ones((3, 4))
    opt = fo.Adafactor([p])
    opt.step([np.full((3, 4), 0.5)])
    good = opt.state_dict()
    bad_state = copy.deepcopy(good)
    bad_state["state"][0]["row_var"] = np.zeros((4, 1))
    bad_step = copy.deepcopy(good)
    bad_step["state"][0]["step"] = -1.0
    missing = copy.deepcopy(good)
    del missing["state"][0]["col_var"]
    bad_group = copy.deepcopy(good)
    bad_group["param_groups"][0]["d"] = 0.5
    for bad in (bad_state, bad_step, missing, bad_group):
        with pytest.raises(ValueError):
            opt.load_state_dict(bad)
        assert opt.state_dict()["state"][0]["step"] == 1.0
        np.testing.assert_array_equal(opt.state_dict()["state"][0]["row_var"], good["state"][0]["row_var"])
        assert opt.param_groups[0]["d"] == 1.0


BAD = [
    ({"lr": -1.0}, ValueError, "lr"),
    ({"beta2_decay": 0.8}, ValueError, "beta2_decay"),
    ({"eps": (-1e-30, 1e-3)}, ValueError, "epsilon1"),
    ({"eps": (None, -1.0)}, ValueError, "epsilon2"),
    ({"eps": (1e-3,)}, ValueError, "eps"),
    ({"d": 0.0}, ValueError, "clipping threshold"),
    ({"d": 0.999}, ValueError, "clipping threshold"),
    ({"weight_decay": -0.1}, ValueError, "weight_decay"),
    ({"maximize": 1}, TypeError, "maximize"),
    ({"foreach": "yes"}, TypeError, "foreach"),
    ({"lr": float("nan")}, ValueError, "lr"),
]


@pytest.mark.parametrize("kwargs, error, match", BAD, ids=lambda x: str(x) if isinstance(x, dict) else "")
def test_bad_hyper_parameters_are_refused_and_a_step_with_one_changes_nothing(kwargs, error, match):
    with pytest.raises(error, match=match):
        fo.Adafactor([np.ones((2, 3))], **kwargs)
    p, v = np.ones((2, 3)), np.ones(3)
    opt = fo.Adafactor([p, v])
    ((key, value),) = kwargs.items()
    opt.param_groups[0][key] = value
    with pytest.raises(error, match=match):
        opt.step([np.ones((2, 3)), np.ones(3)])
    np.testing.assert_array_equal(p, 1.0)
    assert opt.state_dict()["state"] == {}


def test_torch_refuses_what_we_refuse():
    for kwargs, _, _ in BAD:
        if any(k in kwargs for k in ("maximize", "foreach")) or kwargs.get("eps") == (1e-3,):
            continue  # torch does not type-check these (a 1-tuple eps: IndexError); we do
        with pytest.raises(ValueError):
            torch.optim.Adafactor([torch.ones(2, 3)], **kwargs)


def test_bad_parameters_and_gradients_are_refused_before_anything_changes():
    with pytest.raises(ValueError, match="empty"):
        fo.Adafactor([np.ones((0, 3))])
    with pytest.raises(TypeError, match="float32 or float64"):
        fo.Adafactor([np.ones(3, dtype=np.int32)])
    with pytest.raises(ValueError, match="C-contiguous"):
        fo.Adafactor([np.ones((3, 4))[:, ::2]])
    a, b = np.ones((2, 3)), np.ones(3, np.float32)
    opt = fo.Adafactor([a, b])
    for grads in ([np.ones((2, 3))], [np.ones((2, 3)), np.ones(3)], [np.ones((3, 2)), np.ones(3, np.float32)],
                  [np.ones((2, 3)), b], {"a": a}, np.ones(3)):  # fmt: skip
        with pytest.raises((ValueError, TypeError)):
            opt.step(grads)
    np.testing.assert_array_equal(a, 1.0)
    np.testing.assert_array_equal(b, 1.0)
    assert opt.state_dict()["state"] == {}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_matrix_whose_row_mean_torch_splits_across_threads_agrees_to_rounding(dtype):
    rng = np.random.default_rng(4)
    p = rng.normal(size=(40_000, 2)).astype(dtype)
    tp = torch.tensor(p.copy())
    opt, topt = fo.Adafactor([p]), torch.optim.Adafactor([tp])
    for _ in range(5):
        g = rng.normal(size=p.shape).astype(dtype)
        opt.step([g])
        tp.grad = torch.from_numpy(g.copy())
        topt.step()
    ulp = np.finfo(dtype).eps
    np.testing.assert_allclose(p, tp.numpy(), rtol=0, atol=20 * ulp)
    for k in ("row_var", "col_var"):  # the EWAs themselves are reduced exactly as torch
        assert_same(opt.state[0][k], topt.state[tp][k].numpy(), k)


def test_it_is_exported_and_named_like_torch():
    assert fo.Adafactor is fo.optim.Adafactor and "Adafactor" in fo.optim.__all__
    assert fo.Adafactor.__module__ == "ferroptim.optim"
    assert "Adafactor (" in repr(fo.Adafactor([np.ones(2)]))
