"""state_dict / load_state_dict: plain objects, all-or-nothing, bit-exact resume."""

import io
import pickle

import numpy as np
import pytest

import ferroptim as fo

from conftest import OPTIMIZERS, assert_same_snapshot, snapshot
from optimizers import OPTIMIZER_DB

CASES = [(row.name, row.state_dict_config) for row in OPTIMIZER_DB]


def make_params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "W1": rng.normal(size=(4, 3)).astype(np.float32),
        "b1": np.zeros(4, np.float32),
        "w2": rng.normal(size=4),
        "s": np.array(0.5),
    }


def grads_at(t, params):
    rng = np.random.default_rng(1000 + t)
    return {k: rng.normal(size=v.shape).astype(v.dtype) for k, v in params.items()}


def round_trip(sd, how):
    if how == "pickle":
        return pickle.loads(pickle.dumps(sd))
    buf = io.BytesIO()
    np.savez(buf, state=np.array(sd, dtype=object))
    buf.seek(0)
    return np.load(buf, allow_pickle=True)["state"].item()


@pytest.mark.parametrize("how", ["pickle", "savez"])
@pytest.mark.parametrize("kind,h", CASES, ids=[c[0] for c in CASES])
def test_stop_save_load_continue_is_bit_identical(kind, h, how):
    straight = make_params()
    opt = OPTIMIZERS[kind](straight, **h)
    for t in range(40):
        opt.step(grads_at(t, straight))

    first = make_params()
    opt1 = OPTIMIZERS[kind](first, **h)
    for t in range(17):
        opt1.step(grads_at(t, first))
    saved_params = {k: v.copy() for k, v in first.items()}
    sd = round_trip(opt1.state_dict(), how)
    del opt1

    resumed = saved_params
    opt2 = OPTIMIZERS[kind](resumed, lr=123.0)  # hyper-parameters come from the state_dict
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for t in range(17, 40):
        opt2.step(grads_at(t, resumed))
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k])
    assert_same_snapshot(snapshot(opt, straight.values()), snapshot(opt2, resumed.values()))


def test_state_dict_layout_is_torch_like_and_plain():
    params = make_params()
    opt = fo.Adam(params, lr=0.01)
    sd = opt.state_dict()
    assert sd["state"] == {}
    opt.step(grads_at(0, params))
    sd = opt.state_dict()
    assert sorted(sd["state"]) == [0, 1, 2, 3]
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert isinstance(sd["state"][0]["step"], int)
    assert sd["state"][0]["exp_avg"].shape == (4, 3) and sd["state"][0]["exp_avg"].dtype == np.float32
    assert sd["state"][2]["exp_avg"].dtype == np.float64
    assert sd["state"][3]["exp_avg"].shape == ()
    (group,) = sd["param_groups"]
    assert group["params"] == [0, 1, 2, 3] and group["param_names"] == ["W1", "b1", "w2", "s"]
    assert group["lr"] == 0.01 and group["betas"] == (0.9, 0.999)
    # the state is a copy: changing it does not touch the optimizer
    sd["state"][0]["exp_avg"][:] = 7
    assert not np.any(opt.state["W1"]["exp_avg"] == 7)


def test_load_refuses_mismatches_before_changing_anything():
    params = make_params()
    opt = fo.Adam(params, lr=0.01)
    for t in range(3):
        opt.step(grads_at(t, params))
    good = opt.state_dict()
    before = snapshot(opt, params.values())

    def variant(edit):
        sd = pickle.loads(pickle.dumps(good))
        edit(sd)
        return sd

    bad = [
        (variant(lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0]))), "2 param groups"),
        (variant(lambda sd: sd["param_groups"][0]["params"].pop()), "has 3 parameters"),
        (
            variant(lambda sd: sd["param_groups"][0].__setitem__("param_names", ["a", "b", "c", "d"])),
            "names different",
        ),
        (variant(lambda sd: sd["state"][1].__setitem__("exp_avg", np.zeros(5))), r"shape \(4,\)"),
        (variant(lambda sd: sd["state"][1].__setitem__("exp_avg_sq", np.zeros(4, np.int64))), "float array"),
        (variant(lambda sd: sd["state"][1].__setitem__("velocity", np.zeros(4))), "unknown state 'velocity'"),
        (variant(lambda sd: sd["state"].__setitem__(9, {"step": 1})), "unknown parameter 9"),
        (
            variant(lambda sd: sd["state"][3].__setitem__("step", -1)),
            r"must be an integer in \[0, 2\*\*64 - 2\]",
        ),
        (variant(lambda sd: sd["param_groups"][0].__setitem__("lr", -1.0)), "invalid lr"),
        ({"state": {}}, "'state' and 'param_groups'"),
    ]
    for sd, match in bad:
        with pytest.raises(ValueError, match=match):
            opt.load_state_dict(sd)
        assert_same_snapshot(before, snapshot(opt, params.values()))


def test_loaded_buffers_are_cast_to_the_parameter_dtype():
    params = make_params()
    opt = fo.Adam(params)
    opt.step(grads_at(0, params))
    sd = opt.state_dict()
    sd["state"][0] = {k: (v.astype(np.float64) if k != "step" else v) for k, v in sd["state"][0].items()}
    opt.load_state_dict(sd)
    assert opt.state["W1"]["exp_avg"].dtype == np.float32


def test_param_groups_round_trip_with_per_group_options():
    a, b = np.ones(3), np.ones(2)
    opt = fo.SGD([{"params": [a], "lr": 0.5}, {"params": [b], "momentum": 0.9}], lr=0.1)
    opt.step([np.ones(3), np.ones(2)])
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    a2, b2 = a.copy(), b.copy()
    opt2 = fo.SGD([{"params": [a2]}, {"params": [b2]}], lr=0.1)
    opt2.load_state_dict(sd)
    assert [g["lr"] for g in opt2.param_groups] == [0.5, 0.1]
    assert opt2.param_groups[1]["momentum"] == 0.9
    opt.step([np.ones(3), np.ones(2)])
    opt2.step([np.ones(3), np.ones(2)])
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(b, b2)
