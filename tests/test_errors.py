"""Bad input gets a clear TypeError/ValueError naming the culprit, and nothing changes."""

import warnings

import numpy as np
import pytest

import ferroptim as fo

from conftest import OPTIMIZERS, assert_same_snapshot, snapshot
from optimizers import OPTIMIZER_DB


def trained():
    """An Adam optimizer over named float32 params after two steps (so state exists)."""
    params = {"W": np.ones((3, 2), np.float32), "b": np.zeros(3, np.float32)}
    opt = fo.Adam(params, lr=0.1)
    for _ in range(2):
        opt.step(good_grads())
    return params, opt


def good_grads():
    return {"W": np.full((3, 2), 0.5, np.float32), "b": np.full(3, -0.5, np.float32)}


BAD_GRADS = [
    ({"W": np.ones((3, 2), np.float32)}, ValueError, r"no gradient for parameter\(s\) \['b'\]"),
    ({**good_grads(), "c": np.ones(1, np.float32)}, ValueError, r"unknown parameter\(s\) \['c'\]"),
    ({**good_grads(), "b": np.ones(4, np.float32)}, ValueError, r"'b' has shape \(4,\), expected \(3,\)"),
    ({**good_grads(), "W": np.ones((2, 3), np.float32)}, ValueError, r"'W' has shape \(2, 3\)"),
    ({**good_grads(), "b": np.ones(3, np.float64)}, TypeError, r"'b' has dtype float64, expected float32"),
    ({**good_grads(), "b": [0.1, 0.2, 0.3]}, TypeError, r"'b' must be a numpy.ndarray, got list"),
    ({**good_grads(), "b": None}, TypeError, r"'b' must be a numpy.ndarray, got NoneType"),
    ([np.ones((3, 2), np.float32)], ValueError, r"expected 2 gradients"),
    ("grads", TypeError, r"grads must be a list or tuple"),
]


@pytest.mark.parametrize("grads,exc,match", BAD_GRADS)
def test_bad_gradients_are_refused_and_nothing_changes(grads, exc, match):
    params, opt = trained()
    before = snapshot(opt, params.values())
    with pytest.raises(exc, match=match):
        opt.step(grads)
    assert_same_snapshot(before, snapshot(opt, params.values()))


def test_a_gradient_sharing_memory_with_a_parameter_is_refused():
    params, opt = trained()
    before = snapshot(opt, params.values())
    with pytest.raises(ValueError, match=r"gradient for 'b' shares memory with parameter 'b'"):
        opt.step({**good_grads(), "b": params["b"]})
    with pytest.raises(ValueError, match=r"gradient for 'b' shares memory with parameter 'W'"):
        opt.step({**good_grads(), "b": params["W"].reshape(-1)[:3]})
    assert_same_snapshot(before, snapshot(opt, params.values()))


def test_a_list_of_grads_for_named_params_and_a_dict_for_listed_ones():
    params, opt = trained()
    opt.step(list(good_grads().values()))  # a list in parameter order is fine
    listed = fo.SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(TypeError, match="parameters were given as a list"):
        listed.step({"a": np.zeros(2)})


def test_non_contiguous_gradients_are_copied_not_refused():
    params, opt = trained()
    ref_params, ref = trained()
    g = good_grads()
    g_strided = {"W": np.asfortranarray(g["W"]), "b": np.repeat(g["b"], 2)[::2]}
    assert not g_strided["W"].flags.c_contiguous and not g_strided["b"].flags.c_contiguous
    opt.step(g_strided)
    ref.step(g)
    for k in params:
        np.testing.assert_array_equal(params[k], ref_params[k])


BAD_PARAMS = [
    (
        lambda: [np.zeros(3, np.int64)],
        TypeError,
        r"params\[0\] has dtype int64, expected float32, float64, float16 or bfloat16",
    ),
    (lambda: [np.zeros(3, ">f2")], TypeError, r"dtype >f2"),
    (lambda: [np.zeros(3, ">f4")], TypeError, r"dtype >f4"),
    (
        lambda: [[1.0, 2.0]],
        TypeError,
        r"params\[0\] must be a numpy.ndarray of float32, float64, float16 or bfloat16, got list",
    ),
    (lambda: {"w": np.zeros((4, 4))[:, 1]}, ValueError, r"'w' is not a C-contiguous"),
    (lambda: {"w": np.zeros((4, 4)).T}, ValueError, r"'w' is not a C-contiguous"),
    (lambda: np.zeros(3), TypeError, r"got a single ndarray"),
    (lambda: [], ValueError, r"empty parameter list"),
    (lambda: 3.0, TypeError, r"got float"),
    (lambda: [np.zeros(2), {"params": [np.zeros(2)]}], TypeError, r"mixes arrays and param-group dicts"),
    (lambda: [{"lr": 0.1}], ValueError, r"param group 0 has no 'params'"),
]


@pytest.mark.parametrize("make,exc,match", BAD_PARAMS)
def test_bad_parameters_are_refused(make, exc, match):
    with pytest.raises(exc, match=match):
        fo.Adam(make())


def test_read_only_duplicated_and_overlapping_parameters_are_refused():
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[0\] is read-only"):
        fo.SGD([ro])
    a = np.zeros(3)
    with pytest.raises(ValueError, match=r"params\[1\] is the same array as params\[0\]"):
        fo.SGD([a, a])
    buf = np.zeros(10)
    with pytest.raises(ValueError, match=r"'x' and 'y' share memory"):
        fo.SGD({"x": buf[:6], "y": buf[4:]})
    fo.SGD({"x": buf[:5], "y": buf[5:]})  # disjoint views of one buffer are fine
    with pytest.raises(ValueError, match=r"name 'x' appears more than once"):
        fo.SGD([{"params": {"x": np.zeros(1)}}, {"params": {"x": np.zeros(1)}}])


def test_a_parameter_changed_after_construction_is_refused_at_step():
    params, opt = trained()
    before = snapshot(opt, params.values())
    params["b"].flags.writeable = False
    with pytest.raises(ValueError, match=r"'b' has become read-only"):
        opt.step(good_grads())
    params["b"].flags.writeable = True
    # What a user can still do to the array the optimizer holds: NumPy >= 2.5 deprecates
    # setting `.dtype` in place (the warning is an error in this suite) but still does it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        params["W"].dtype = np.int32  # reinterpret the same bytes
    with pytest.raises(ValueError, match=r"'W' was resized, re-typed or re-strided"):
        opt.step(good_grads())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        params["W"].dtype = np.float32
    assert_same_snapshot(before, snapshot(opt, params.values()))
    opt.step(good_grads())  # restored: works again


BAD_HYPER = [(row.name, h, match) for row in OPTIMIZER_DB for h, match in row.bad_hyper]


@pytest.mark.parametrize("kind,h,match", BAD_HYPER)
def test_out_of_range_hyper_parameters_are_refused_at_construction(kind, h, match):
    with pytest.raises(ValueError, match=match):
        OPTIMIZERS[kind]([np.zeros(2)], **h)


@pytest.mark.parametrize(
    "key,value,exc,match",
    [
        ("lr", -1.0, ValueError, r"invalid lr"),
        ("lr", "fast", TypeError, r"param_groups\[0\]\['lr'\] must be a number, got str"),
        ("betas", (0.9,), TypeError, r"\['betas'\] must be a pair of numbers"),
        ("betas", (0.9, 1.5), ValueError, r"invalid betas\[1\]=1.5"),
        ("amsgrad", "yes", TypeError, r"\['amsgrad'\] must be True or False, got str"),
        ("eps", None, TypeError, r"\['eps'\] must be a number, got NoneType"),
    ],
)
def test_hyper_parameters_edited_between_steps_are_checked_before_anything_changes(key, value, exc, match):
    params, opt = trained()
    before = snapshot(opt, params.values())
    opt.param_groups[0][key] = value
    with pytest.raises(exc, match=match):
        opt.step(good_grads())
    after = snapshot(opt, params.values())
    for x, y in zip(before[0], after[0]):
        np.testing.assert_array_equal(x, y)
    assert after[1]["state"][0]["step"] == 2


def test_setting_an_invalid_lr_is_refused_and_the_old_one_kept():
    params, opt = trained()
    with pytest.raises(ValueError, match="invalid lr"):
        opt.lr = -0.5
    assert opt.lr == 0.1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_policy_raise_refuses_the_step_and_changes_nothing(bad):
    params = {"W": np.ones((3, 2), np.float32), "b": np.zeros(3, np.float32)}
    opt = fo.Adam(params, lr=0.1, nan_policy="raise")
    opt.step(good_grads())
    before = snapshot(opt, params.values())
    g = good_grads()
    g["b"][1] = bad
    with pytest.raises(FloatingPointError, match=r"gradient for 'b' contains NaN or infinity"):
        opt.step(g)
    assert_same_snapshot(before, snapshot(opt, params.values()))


def test_nan_policy_skip_counts_and_changes_nothing_else():
    params = [np.ones(fo._core.PARALLEL_MIN_ELEMENTS * 2, np.float32)]  # the threaded check
    opt = fo.SGD(params, lr=0.1, momentum=0.9, nan_policy="skip")
    g = np.ones_like(params[0])
    opt.step([g])
    before = snapshot(opt, params)
    g[-1] = np.nan
    opt.step([g])
    assert opt.skipped_steps == 1
    after = snapshot(opt, params)
    assert after[1]["skipped_steps"] == 1
    before[1]["skipped_steps"] = 1
    assert_same_snapshot(before, after)
    g[-1] = 1.0
    opt.step([g])
    assert opt.state[0]["step"] == 2


def test_nan_policy_propagate_is_the_default_and_applies_the_step():
    p = np.ones(3)
    opt = fo.SGD([p], lr=0.1)
    assert opt.nan_policy == "propagate"
    opt.step([np.array([np.nan, 1.0, 1.0])])
    assert np.isnan(p[0]) and p[1] == 0.9
    with pytest.raises(ValueError, match="nan_policy must be"):
        fo.SGD([p], nan_policy="ignore")


def test_numpy_scalars_are_accepted_for_0d_parameters():
    b = np.array(0.5)
    opt = fo.SGD({"b": b}, lr=0.1)
    opt.step({"b": np.float64(1.0)})  # what np.sum(dZ) returns
    assert b == 0.4
    with pytest.raises(TypeError, match=r"'b' has dtype float32, expected float64"):
        opt.step({"b": np.float32(1.0)})
    with pytest.raises(TypeError, match=r"'b' must be a numpy.ndarray, got float"):
        opt.step({"b": 1.0})
    with pytest.raises(ValueError, match=r"'b' has shape \(\), expected"):
        fo.SGD({"b": np.zeros(2)}).step({"b": np.float64(1.0)})
