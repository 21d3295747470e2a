"""Clipping, max_grad_norm, gradient accumulation and Lookahead."""

import numpy as np
import pytest

import ferroptim as fo

from conftest import assert_same_snapshot, snapshot
from reference import Reference


def grads_list(seed, shapes, dtype=np.float64, scale=1.0):
    rng = np.random.default_rng(seed)
    return [np.asarray(rng.normal(size=s) * scale, dtype=dtype) for s in shapes]


SHAPES = [(3, 4), (), (0,), (fo._core.PARALLEL_MIN_ELEMENTS + 7,)]


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, float("inf")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_norm_follows_the_definition(norm_type, dtype, simd_level):
    grads = grads_list(0, SHAPES, dtype)
    flat = np.concatenate([g.ravel().astype(np.float64) for g in grads])
    expected = (
        np.max(np.abs(flat))
        if norm_type == float("inf")
        else np.sum(np.abs(flat) ** norm_type) ** (1 / norm_type)
    )
    before = [g.copy() for g in grads]
    total = fo.clip_grad_norm(grads, max_norm=0.5, norm_type=norm_type)
    assert isinstance(total, float)
    np.testing.assert_allclose(total, expected, rtol=1e-12)
    coef = 0.5 / (total + 1e-6)
    for g, b in zip(grads, before):
        np.testing.assert_array_equal(g, b * dtype(coef))
    # a large max_norm leaves them alone
    again = [g.copy() for g in grads]
    fo.clip_grad_norm(grads, max_norm=1e9, norm_type=norm_type)
    for g, a in zip(grads, again):
        np.testing.assert_array_equal(g, a)


def test_the_norm_does_not_depend_on_thread_count(threads):
    grads = grads_list(1, [(300_001,), (77,)], np.float32)
    norms = set()
    for n in (1, 2, 3):
        fo.set_num_threads(n)
        norms.add(fo._core.grad_norm(grads, 2.0))
    assert len(norms) == 1


def test_clip_inputs_and_errors():
    g = {"a": np.array([3.0]), "b": np.array([4.0])}
    assert fo.clip_grad_norm(g, 10.0) == 5.0  # dicts are fine
    single = np.array([6.0, 8.0])
    fo.clip_grad_norm(single, 5.0)
    np.testing.assert_allclose(single, [3.0, 4.0], rtol=1e-6)
    nan = [np.array([np.nan, 1.0])]
    with pytest.raises(FloatingPointError, match="nothing was changed"):
        fo.clip_grad_norm(nan, 1.0, error_if_nonfinite=True)
    assert nan[0][1] == 1.0
    with pytest.raises(ValueError, match="max_norm must be"):
        fo.clip_grad_norm([np.ones(2)], -1.0)
    with pytest.raises(ValueError, match="norm_type must be"):
        fo.clip_grad_norm([np.ones(2)], 1.0, norm_type=0.0)
    with pytest.raises(ValueError, match="clip_value must be"):
        fo.clip_grad_value([np.ones(2)], -1.0)
    ro = np.ones(2)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"grads\[0\] is read-only"):
        fo.clip_grad_value([ro], 0.5)
    shared = np.ones(4)
    with pytest.raises(ValueError, match="share memory"):
        fo.clip_grad_norm([shared[:3], shared[2:]], 0.1)
    np.testing.assert_array_equal(shared, 1.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        fo.clip_grad_value([np.ones(2, np.int32)], 0.5)


def test_clip_grad_norm_refuses_read_only_or_shared_arrays_only_when_it_scales():
    ro = np.array([3.0, 4.0])
    ro.flags.writeable = False
    shared = np.array([3.0, 4.0, 0.0])
    # A norm within the limit scales nothing, so nothing needs to be writeable or disjoint.
    assert fo.clip_grad_norm([ro], 10.0) == 5.0
    assert fo.clip_grad_norm([shared[:2], shared[1:]], 10.0) == pytest.approx(np.sqrt(41.0))
    with pytest.raises(ValueError, match=r"grads\[0\] is read-only"):
        fo.clip_grad_norm([ro], 1.0)
    np.testing.assert_array_equal(ro, [3.0, 4.0])
    with pytest.raises(ValueError, match="share memory"):
        fo.clip_grad_norm([shared[:2], shared[1:]], 1.0)
    np.testing.assert_array_equal(shared, [3.0, 4.0, 0.0])
    # A writeable list after a read-only one: the norm of both, nothing scaled on error.
    w = np.array([0.0, 12.0])
    with pytest.raises(ValueError, match=r"grads\[1\] is read-only"):
        fo.clip_grad_norm([w, ro], 1.0)
    np.testing.assert_array_equal(w, [0.0, 12.0])
    assert fo.clip_grad_norm([w, ro.copy()], 1.0) == 13.0
    np.testing.assert_allclose(w, [0.0, 12.0 / (13.0 + 1e-6)], rtol=1e-15)


def test_clip_grad_value_clamps_and_keeps_nan():
    g = [np.array([-3.0, -0.5, 0.5, 3.0, np.nan], np.float32)]
    fo.clip_grad_value(g, 1.0)
    np.testing.assert_array_equal(g[0][:4], [-1.0, -0.5, 0.5, 1.0])
    assert np.isnan(g[0][4])


@pytest.mark.parametrize("kind", ["adam", "sgd", "lion"])
def test_max_grad_norm_equals_clipping_the_gradients_first(kind):
    cls = {"adam": fo.Adam, "sgd": fo.SGD, "lion": fo.Lion}[kind]
    params = grads_list(2, SHAPES)
    ref_params = [p.copy() for p in params]
    opt = cls(params, lr=0.01, max_grad_norm=1.0)
    ref = cls(ref_params, lr=0.01)
    for t in range(5):
        g = grads_list(10 + t, SHAPES, scale=3.0)
        opt.step(g)
        kept = [x.copy() for x in g]
        norm = fo.clip_grad_norm(kept, 1.0)
        assert opt.last_grad_norm == norm
        ref.step(kept)
        # the user's gradients are not modified by the in-step clipping
        np.testing.assert_array_equal(g[0], grads_list(10 + t, SHAPES, scale=3.0)[0])
    for p, r in zip(params, ref_params):
        np.testing.assert_allclose(p, r, rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match="max_grad_norm must be"):
        opt.max_grad_norm = -1.0
    opt.max_grad_norm = None
    assert opt.max_grad_norm is None and opt.state_dict()["max_grad_norm"] is None


def test_gradient_accumulation_steps_with_the_mean():
    shapes = [(4, 3), (3,)]
    params = grads_list(3, shapes)
    ref = Reference("adam", params, lr=0.01)
    acc = fo.GradientAccumulation(fo.Adam(params, lr=0.01), steps=3)
    for t in range(4):
        micro = [grads_list(100 * t + k, shapes) for k in range(3)]
        stepped = [acc.step(g) for g in micro]
        assert stepped == [False, False, True]
        mean = [(a + b + c) / 3 for a, b, c in zip(*micro)]
        ref.step(mean)
    for p, r in zip(params, ref.params):
        np.testing.assert_allclose(p, r, rtol=1e-12, atol=1e-14)
    assert acc.optimizer.state[0]["step"] == 4


def test_gradient_accumulation_checks_before_adding_and_resumes():
    params = {"w": np.zeros(3), "b": np.zeros(())}
    acc = fo.GradientAccumulation(fo.SGD(params, lr=1.0), steps=2)
    acc.step({"w": np.ones(3), "b": np.float64(1.0)})
    with pytest.raises(ValueError, match="'w' has shape"):
        acc.step({"w": np.ones(4), "b": np.float64(1.0)})
    assert acc.count == 1
    sd = acc.state_dict()
    params2 = {"w": np.zeros(3), "b": np.zeros(())}
    acc2 = fo.GradientAccumulation(fo.SGD(params2, lr=1.0), steps=2)
    acc2.load_state_dict(sd)
    for a in (acc, acc2):
        assert a.step({"w": np.full(3, 3.0), "b": np.float64(3.0)})
    np.testing.assert_array_equal(params["w"], params2["w"])
    np.testing.assert_array_equal(params["w"], [-2.0, -2.0, -2.0])
    with pytest.raises(ValueError, match="steps must be"):
        fo.GradientAccumulation(fo.SGD([np.zeros(1)]), steps=0)
    with pytest.raises(ValueError, match="steps=3"):
        fo.GradientAccumulation(fo.SGD(params2, lr=1.0), steps=3).load_state_dict(sd)


def test_lookahead_matches_its_definition():
    shapes = [(5,), (2, 2)]
    params = grads_list(4, shapes)
    fast = [p.copy() for p in params]
    slow = [p.copy() for p in params]
    inner = fo.Adam(params, lr=0.05)
    ref_inner = fo.Adam(fast, lr=0.05)
    la = fo.Lookahead(inner, sync_period=3, slow_step_size=0.4)
    for t in range(10):
        g = grads_list(50 + t, shapes)
        la.step(g)
        ref_inner.step(g)
        if (t + 1) % 3 == 0:
            for s, f in zip(slow, fast):
                s[...] = s + 0.4 * (f - s)
                f[...] = s
    for p, f in zip(params, fast):
        np.testing.assert_array_equal(p, f)
    for s, r in zip(la.slow_params, slow):
        np.testing.assert_array_equal(s, r)
    with pytest.raises(ValueError, match="read-only"):
        la.slow_params[0][0] = 1.0


def test_lookahead_state_dict_round_trip():
    def run(n, la=None):
        params = {"w": np.linspace(0, 1, 6)}
        la = la or fo.Lookahead(fo.SGD(params, lr=0.1, momentum=0.9), sync_period=4)
        return params, la

    params, la = run(0)
    for t in range(10):
        la.step({"w": np.full(6, 0.1 * t)})
    p2, la2 = run(0)
    for t in range(6):
        la2.step({"w": np.full(6, 0.1 * t)})
    sd = la2.state_dict()
    p3 = {"w": p2["w"].copy()}
    la3 = fo.Lookahead(fo.SGD(p3, lr=0.1, momentum=0.9), sync_period=4)
    la3.load_state_dict(sd)
    for t in range(6, 10):
        la3.step({"w": np.full(6, 0.1 * t)})
    np.testing.assert_array_equal(params["w"], p3["w"])
    np.testing.assert_array_equal(la.slow_params["w"], la3.slow_params["w"])
    bad = dict(sd, slow=[np.zeros(5)])
    before = snapshot(la3.optimizer, [p3["w"]])
    with pytest.raises(ValueError, match=r"slow\[0\] must be a float array of shape \(6,\)"):
        la3.load_state_dict(bad)
    assert_same_snapshot(before, snapshot(la3.optimizer, [p3["w"]]))


def test_wrappers_forward_the_learning_rate():
    opt = fo.SGD([np.zeros(1)], lr=0.1)
    for w in (fo.Lookahead(opt), fo.GradientAccumulation(opt, 2)):
        w.lr = 0.2
        assert opt.lr == 0.2 and w.param_groups is opt.param_groups
