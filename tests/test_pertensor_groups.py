"""The per-tensor optimizers (Adafactor, Muon, ScheduleFreeAdamW, ScheduleFreeSGD):
``add_param_group`` as torch's (a group added later trains as if given at construction; its
missing options come from ``defaults``; refusals change nothing), and the schedule-free
ones' ``lr`` given as a schedule (the same as setting ``param_groups[i]["lr"]`` before each
step)."""

from __future__ import annotations

import numpy as np
import pytest

import ferroptim as fo

OPTIMIZERS = {
    "Adafactor": (fo.Adafactor, {"lr": 0.02}, {"lr": 0.05, "weight_decay": 0.1}),
    "Muon": (fo.Muon, {"lr": 0.02}, {"lr": 0.05, "momentum": 0.9}),
    "ScheduleFreeAdamW": (fo.ScheduleFreeAdamW, {"lr": 0.01, "warmup_steps": 3}, {"lr": 0.02}),
    "ScheduleFreeSGD": (fo.ScheduleFreeSGD, {"lr": 0.1}, {"lr": 0.05, "momentum": 0.8}),
}
TORCH_NAMES = {
    "Adafactor": ("torch.optim", "Adafactor"),
    "Muon": ("torch.optim", "Muon"),
    "ScheduleFreeAdamW": ("schedulefree", "AdamWScheduleFree"),
    "ScheduleFreeSGD": ("schedulefree", "SGDScheduleFree"),
}


def params(seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((6, 5)), rng.standard_normal((4, 6)), rng.standard_normal((3, 4))]


def grads(t, ps):
    rng = np.random.default_rng(100 + t)
    return [rng.standard_normal(p.shape) for p in ps]


def train(opt, ps, steps=12):
    if hasattr(opt, "train"):
        opt.train()
    for t in range(steps):
        opt.step(grads(t, ps))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_group_added_later_trains_as_one_given_at_construction(name):
    cls, h, second = OPTIMIZERS[name]
    a, b = params(0), params(0)
    together = cls([{"params": a[:2]}, {"params": a[2:], **second}], **h)
    later = cls(b[:2], **h)
    later.add_param_group({"params": b[2:], **second})
    assert later.param_groups[1] == {**later.defaults, **second, "params": later.param_groups[1]["params"]}
    assert [g.keys() for g in later.param_groups] == [g.keys() for g in together.param_groups]
    train(together, a)
    train(later, b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert later.state_dict()["param_groups"] == together.state_dict()["param_groups"]
    assert repr(later) == repr(together)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_group_added_after_steps_starts_with_empty_state_and_resumes(name):
    cls, h, second = OPTIMIZERS[name]
    ps = params(1)
    opt = cls({"w1": ps[0], "w2": ps[1]}, **h)
    train(opt, ps[:2], steps=3)
    opt.add_param_group({"params": {"w3": ps[2]}, **second})
    assert list(opt.state) == ["w1", "w2"]
    if hasattr(opt, "train"):
        opt.train()  # the new group's mode, as in the package
    opt.step({"w1": ps[0] * 0.1, "w2": ps[1] * 0.1, "w3": ps[2] * 0.1})
    assert list(opt.state) == ["w1", "w2", "w3"]
    # a state_dict of three groups' parameters loads into a twin built with the same groups
    twin_ps = [p.copy() for p in ps]
    twin = cls({"w1": twin_ps[0], "w2": twin_ps[1]}, **h)
    twin.add_param_group({"params": {"w3": twin_ps[2]}, **second})
    twin.load_state_dict(opt.state_dict())
    for t in range(3):
        g = dict(zip(["w1", "w2", "w3"], grads(t, ps)))
        opt.step(g)
        twin.step(g)
    for x, y in zip(ps, twin_ps):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_refused_groups_change_nothing(name):
    cls, h, _ = OPTIMIZERS[name]
    ps = params(2)
    opt = cls(ps[:2], **h)
    before = (repr(opt), opt.state_dict())
    with pytest.raises(ValueError, match=r"share memory"):
        opt.add_param_group({"params": [ps[0]]})  # already in group 0
    with pytest.raises(ValueError, match=r"param_groups\[1\]: lr"):
        opt.add_param_group({"params": [ps[2]], "lr": -1.0})
    with pytest.raises(TypeError, match="must be a dict"):
        opt.add_param_group([ps[2]])
    with pytest.raises(TypeError, match="name its parameters iff"):
        opt.add_param_group({"params": {"w": ps[2]}})
    with pytest.raises(TypeError, match=r"param_groups\[1\]\['params'\]\[0\] must be a numpy array"):
        opt.add_param_group({"params": [[1.0, 2.0]]})
    assert (repr(opt), opt.state_dict()) == before and len(opt.param_groups) == 1
    opt.add_param_group({"params": [ps[2]]})  # and a good one is still taken
    assert len(opt.param_groups) == 2


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_added_groups_get_torchs_defaults(name):
    torch = pytest.importorskip("torch", reason="the comparison with torch needs torch")
    module, attr = TORCH_NAMES[name]
    theirs = getattr(pytest.importorskip(module, reason=f"the comparison needs {module}"), attr)
    cls, h, second = OPTIMIZERS[name]
    ours = cls([np.ones((2, 3))], **h)
    them = theirs([torch.ones(2, 3)], **h)
    ours.add_param_group({"params": [np.ones((3, 2))], **second})
    them.add_param_group({"params": [torch.ones(3, 2)], **second})
    ours_groups = [{k: v for k, v in g.items() if k != "ns_dtype"} for g in ours.state_dict()["param_groups"]]
    assert ours_groups == them.state_dict()["param_groups"]  # (Muon's ns_dtype is ours alone)


@pytest.mark.parametrize("name", ["ScheduleFreeAdamW", "ScheduleFreeSGD"])
def test_a_schedule_as_lr_is_setting_lr_before_each_step(name):
    cls, h, _ = OPTIMIZERS[name]
    schedule = fo.schedules.ExponentialDecay(0.05, decay_rate=0.5, decay_steps=4)
    a, b = params(3), params(3)
    scheduled = cls(a, **{**h, "lr": schedule})
    by_hand = cls(b, **h)
    scheduled.train()
    by_hand.train()
    for t in range(10):
        by_hand.param_groups[0]["lr"] = schedule(t)
        scheduled.step(grads(t, a))
        by_hand.step(grads(t, b))
        assert scheduled.param_groups[0]["scheduled_lr"] == by_hand.param_groups[0]["scheduled_lr"]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    scheduled.eval()
    by_hand.eval()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_a_schedule_giving_a_bad_rate_is_refused_before_anything_changes():
    p = np.ones(3)
    opt = fo.ScheduleFreeSGD([p], lr=lambda k: 0.1 if k < 2 else -1.0)
    opt.train()
    opt.step([np.ones(3)])
    opt.step([np.ones(3)])
    before = (p.copy(), opt.state_dict())
    with pytest.raises(ValueError, match=r"lr\(2\), the schedule's value, must be >= 0"):
        opt.step([np.ones(3)])
    np.testing.assert_array_equal(p, before[0])
    assert opt.param_groups[0]["k"] == 2
