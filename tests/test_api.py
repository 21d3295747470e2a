"""The torch-like surface: params as list / dict / groups, lr control, schedules, docs."""

import doctest

import numpy as np
import pytest

import ferroptim as fo

from conftest import OPTIMIZERS
from optimizers import OPTIMIZER_DB
from reference import Reference


def test_params_as_list_dict_and_groups_give_the_same_result():
    def fresh():
        return [np.linspace(-1, 1, 6).reshape(2, 3), np.linspace(0, 1, 4)]

    grads = [np.full((2, 3), 0.3), np.full(4, -0.2)]
    as_list, as_dict, as_groups = fresh(), fresh(), fresh()
    opts = [
        fo.Adam(as_list, lr=0.1),
        fo.Adam({"W": as_dict[0], "b": as_dict[1]}, lr=0.1),
        fo.Adam([{"params": [as_groups[0]]}, {"params": as_groups[1]}], lr=0.1),
    ]
    for _ in range(3):
        opts[0].step(grads)
        opts[1].step({"b": grads[1], "W": grads[0]})  # dict order does not matter
        opts[2].step(tuple(grads))
    for other in (as_dict, as_groups):
        for a, b in zip(as_list, other):
            np.testing.assert_array_equal(a, b)


def test_per_group_hyper_parameters():
    a, b = np.zeros(2), np.zeros(2)
    opt = fo.SGD([{"params": {"a": a}, "lr": 1.0}, {"params": {"b": b}}], lr=0.1)
    opt.step({"a": np.ones(2), "b": np.ones(2)})
    np.testing.assert_array_equal(a, [-1.0, -1.0])
    np.testing.assert_array_equal(b, [-0.1, -0.1])
    assert [g["lr"] for g in opt.param_groups] == [1.0, 0.1]
    with pytest.raises(ValueError, match="different learning rates"):
        opt.lr
    opt.lr = 0.5
    assert opt.lr == 0.5 and all(g["lr"] == 0.5 for g in opt.param_groups)


def test_lr_can_change_between_steps():
    w = np.zeros(1)
    opt = fo.SGD([w], lr=1.0)
    opt.step([np.ones(1)])
    opt.lr = 0.5
    opt.step([np.ones(1)])
    opt.param_groups[0]["lr"] = 0.25
    opt.step([np.ones(1)])
    assert w[0] == -1.75


def test_lr_schedule_is_called_with_the_0_based_update_number():
    calls = []

    def schedule(k):
        calls.append(k)
        return 0.1 / (1 + k)

    rng = np.random.default_rng(0)
    params = [rng.normal(size=5).astype(np.float32)]
    ref = Reference("adam", params)
    opt = fo.Adam(params, lr=schedule)
    for k in range(6):
        g = [rng.normal(size=5).astype(np.float32)]
        opt.step(g)
        ref.step(g, lr=0.1 / (1 + k))
    # (construction checks the group once, evaluating schedule(0))
    assert calls[-6:] == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(params[0], ref.params[0])
    sd = opt.state_dict()
    params2 = [params[0].copy()]
    opt2 = fo.Adam(params2, lr=schedule)
    opt2.load_state_dict(sd)
    opt2.step([np.ones(5, np.float32)])
    assert calls[-1] == 6  # resumes from the right update number


def test_a_schedule_returning_garbage_is_a_type_error():
    with pytest.raises(TypeError, match="lr schedule of param_groups\\[0\\] returned str at step 0"):
        fo.SGD([np.zeros(1)], lr=lambda k: "x")
    opt = fo.SGD([np.zeros(1)], lr=lambda k: 0.1 if k < 2 else None)
    opt.step([np.zeros(1)])
    opt.step([np.zeros(1)])
    with pytest.raises(TypeError, match="returned NoneType at step 2"):
        opt.step([np.zeros(1)])


def test_zero_d_and_empty_parameters():
    s, e = np.array(1.0, np.float32), np.zeros((0, 3), np.float32)
    opt = fo.Adam([s, e], lr=0.1)
    opt.step([np.array(1.0, np.float32), np.zeros((0, 3), np.float32)])
    assert s.shape == () and float(s) < 1.0
    assert opt.state[1]["exp_avg"].shape == (0, 3)


def test_add_param_group_keeps_existing_state():
    a, b = np.zeros(2), np.zeros(3)
    opt = fo.Adam({"a": a}, lr=0.1)
    opt.step({"a": np.ones(2)})
    opt.add_param_group({"params": {"b": b}, "lr": 0.2})
    assert opt.state["a"]["step"] == 1 and opt.state["b"]["step"] == 0
    assert opt.param_groups[1]["lr"] == 0.2 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    opt.step({"a": np.ones(2), "b": np.ones(3)})
    assert opt.state["a"]["step"] == 2 and opt.state["b"]["step"] == 1
    with pytest.raises(ValueError, match="already in use"):
        opt.add_param_group({"params": {"a": np.zeros(1)}})
    with pytest.raises(ValueError, match="'c' and 'a' share memory"):
        opt.add_param_group({"params": {"c": a[:1]}})
    opt.step({"a": np.ones(2), "b": np.ones(3)})  # still usable after a refused group
    assert opt.state["a"]["step"] == 3


def test_errors_name_a_parameter_of_an_added_group_by_its_group():
    opt = fo.Adam([np.zeros(2)])
    opt.add_param_group({"params": [np.zeros(2)]})
    with pytest.raises(ValueError, match=r"^gradient for param_groups\[1\]\['params'\]\[0\] has shape"):
        opt.step([np.ones(2), np.ones(3)])


def test_state_names_follow_torch():
    p = [np.zeros(2)]
    g = [np.ones(2)]
    expected = {row.name: row.state_names for row in OPTIMIZER_DB}
    for kind, (h, names) in expected.items():
        opt = OPTIMIZERS[kind]([p[0].copy()], **h)
        opt.step(g)
        assert set(opt.state[0]) == names, kind


def test_defaults_follow_torch():
    p = [np.zeros(1)]
    for row in OPTIMIZER_DB:
        assert row.cls(p, **row.required).defaults == row.defaults, row.name


def test_repr_lists_the_groups():
    text = repr(fo.Adam([np.zeros(1)], lr=0.1))
    assert text.startswith("Adam (") and "Parameter Group 0" in text and "lr: 0.1" in text


@pytest.mark.parametrize("module", ["optim", "clip", "wrappers"])
def test_docstring_examples_run(module):
    import importlib

    result = doctest.testmod(importlib.import_module(f"ferroptim.{module}"), verbose=False)
    assert result.attempted >= 2 and result.failed == 0


def test_every_public_name_has_a_docstring():
    for name in fo.__all__:
        obj = getattr(fo, name)
        assert obj.__doc__ and len(obj.__doc__.strip()) > 20, name


def test_every_optimizer_class_is_registered_once_under_its_engine_name():
    # LBFGS (a closure per step), Muon (matrices), Adafactor (factored state) and the
    # schedule-free pair (a train/eval switch) are not engine optimizers: not registered
    outside = ("Optimizer", "LBFGS", "Muon", "Adafactor", "ScheduleFreeAdamW", "ScheduleFreeSGD")
    classes = [getattr(fo.optim, n) for n in fo.optim.__all__ if n not in outside]
    assert sorted(fo.optim.OPTIMIZERS) == sorted(c._kind for c in classes)
    for cls in classes:
        assert fo.optim.OPTIMIZERS[cls._kind] is cls
        cls([np.zeros(3)], lr=0.1)  # the engine knows the name


def test_the_registry_keeps_the_order_the_classes_have_always_been_defined_in():
    # ferroptim.optim is a package of modules: its __init__ imports sgd.py before adaptive.py
    # so OPTIMIZERS still fills in optim.py's old order (dict copies of it iterate that way).
    assert list(fo.optim.OPTIMIZERS) == [row.name for row in OPTIMIZER_DB]


def test_the_optimizer_table_of_the_tests_has_the_registry_s_classes():
    # tests/optimizers.py drives every per-optimizer test (the test above checks it has a row
    # for each registered name, in order): each row names the registered class.
    for row in OPTIMIZER_DB:
        assert row.cls is fo.optim.OPTIMIZERS[row.name] and row.configs and row.draw_hyper
        assert row.torch is None or row.torch == row.cls.__name__


def test_ferroptim_sklearn_without_scikit_learn_says_which_extra_to_install(monkeypatch):
    import sys

    for name in [n for n in sys.modules if n == "sklearn" or n.startswith("sklearn.")] or ["sklearn"]:
        monkeypatch.setitem(sys.modules, name, None)  # "import sklearn..." now fails
    for name in [n for n in sys.modules if n.startswith("ferroptim.sklearn")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delattr(fo, "sklearn", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'ferroptim\[sklearn\]'"):
        import ferroptim.sklearn  # noqa: F401
