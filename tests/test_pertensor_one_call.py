"""The one-call steps of Adafactor and the schedule-free optimizers: every tensor of a step in
one Rust call, split across threads, gives each tensor the bits of stepping it alone at any
thread count, and a bad gradient anywhere is refused before any tensor or state changes."""

import os
import threading
import warnings

import numpy as np
import pytest

import ferroptim as fo

from conftest import wait_for_child

# a matrix split across threads, small ones run whole, a batch of matrices, a single
# column, vectors of both dtypes, and (Adafactor) a matrix above the size whose update is
# computed twice rather than stored
SHAPES = [(300, 203), (2, 37, 29), (5000, 1), (40,), (70_001,), (1100, 1000)]
MAKERS = {
    "Adafactor": lambda ps: fo.Adafactor(ps, weight_decay=0.1),
    "Adafactor foreach maximize": lambda ps: fo.Adafactor(ps, foreach=True, maximize=True, d=1.5),
    "ScheduleFreeAdamW": lambda ps: fo.ScheduleFreeAdamW(ps, lr=0.01, weight_decay=0.01, warmup_steps=2),
    "ScheduleFreeSGD": lambda ps: fo.ScheduleFreeSGD(ps, lr=0.05, weight_decay=0.01),
}


def _arrays(seed, dtypes):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dt) for s, dt in zip(SHAPES, dtypes)]


def _run(make, threads, dtypes, alone=False):
    """The parameters and states after three steps, the tensors in one optimizer or (alone)
    one optimizer each."""
    fo.set_num_threads(threads)
    ps = _arrays(0, dtypes)
    opts = [make([p]) for p in ps] if alone else [make(ps)]
    for o in opts:
        if hasattr(o, "train"):
            o.train()
    for t in range(3):
        gs = _arrays(10 + t, dtypes)
        if alone:
            for o, g in zip(opts, gs):
                o.step([g])
        else:
            opts[0].step(gs)
    states = [s for o in opts for _, s in sorted(o.state_dict()["state"].items())]
    return ps, states


@pytest.mark.parametrize("name", list(MAKERS))
def test_one_call_gives_every_tensor_its_own_bits_at_any_thread_count(name, threads):
    make = MAKERS[name]
    dtypes = [np.float32, np.float64, np.float32, np.float64, np.float32, np.float32]
    want_p, want_s = _run(make, 1, dtypes, alone=True)
    for n in (1, 2, 3):
        ps, states = _run(make, n, dtypes)
        for i, (p, q) in enumerate(zip(ps, want_p)):
            assert p.dtype == q.dtype
            np.testing.assert_array_equal(p, q, err_msg=f"{name}, {n} threads, tensor {i}")
        for i, (s, r) in enumerate(zip(states, want_s)):
            assert set(s) == set(r)
            for k in s:
                np.testing.assert_array_equal(s[k], r[k], err_msg=f"{name}, {n} threads, {k} of {i}")


@pytest.mark.parametrize("name", list(MAKERS))
def test_a_strided_gradient_steps_as_its_contiguous_copy(name):
    make = MAKERS[name]
    a, b = np.ones((4, 3)), np.ones((4, 3))
    oa, ob = make([a]), make([b])
    for o in (oa, ob):
        if hasattr(o, "train"):
            o.train()
    g = np.arange(24.0).reshape(4, 6) / 10
    oa.step([g[:, ::2]])
    ob.step([np.ascontiguousarray(g[:, ::2])])
    np.testing.assert_array_equal(a, b)


def _bad_fifth(ps):
    """Gradient lists each wrong in the fifth tensor only."""
    good = [np.full_like(p, 0.5) for p in ps]
    out = []
    for bad in (
        np.ones(ps[4].shape, np.float64),  # dtype
        np.ones((3, 5), np.float32),  # shape
        ps[4].tolist(),  # not an array
        None,
        ps[4],  # its own parameter
        ps[0].reshape(-1)[: ps[4].size].reshape(ps[4].shape),  # another parameter's memory
    ):
        gs = list(good)
        gs[4] = bad
        out.append(gs)
    return out


@pytest.mark.parametrize("name", list(MAKERS))
def test_a_bad_gradient_in_the_fifth_tensor_changes_no_tensor_and_no_state(name):
    make = MAKERS[name]
    ps = [
        np.ones((6, 4), np.float32),
        np.ones(4),
        np.ones((2, 3, 2)),
        np.ones(7, np.float32),
        np.ones((5, 3), np.float32),
    ]
    opt = make(ps)
    if hasattr(opt, "train"):
        opt.train()
    for _ in range(2):  # before any state exists, then with state
        before = [p.copy() for p in ps]
        sd = opt.state_dict()
        for gs in _bad_fifth(ps):
            with pytest.raises((TypeError, ValueError)):
                opt.step(gs)
            for p, q in zip(ps, before):
                np.testing.assert_array_equal(p, q)
            now = opt.state_dict()
            assert now["param_groups"] == sd["param_groups"]
            assert set(now["state"]) == set(sd["state"])
            for i, s in sd["state"].items():
                for k, v in s.items():
                    np.testing.assert_array_equal(now["state"][i][k], v)
        opt.step([np.full_like(p, 0.5) for p in ps])
        assert len(opt.state_dict()["state"]) == len(ps)


@pytest.mark.parametrize("name", list(MAKERS))
def test_the_error_names_the_gradient(name):
    opt = MAKERS[name]({"W": np.ones((2, 3)), "b": np.ones(3)})
    if hasattr(opt, "train"):
        opt.train()
    with pytest.raises(ValueError, match=r"gradient of 'b' must be a float64 array of shape \(3,\)"):
        opt.step({"W": np.ones((2, 3)), "b": np.ones(4)})
    with pytest.raises(ValueError, match="gradient of 'b' shares memory with parameter 'W'"):
        opt.step({"W": np.ones((2, 3)), "b": opt.param_groups[0]["params"][0][0]})


@pytest.mark.parametrize("name", list(MAKERS))
def test_a_changed_option_is_checked_and_used_at_the_next_step(name):
    # the step keeps each group's checked options while its entries stay the same objects
    ps = [np.ones((3, 4))]
    opt = MAKERS[name](ps)
    if hasattr(opt, "train"):
        opt.train()
    g = [np.full((3, 4), 0.5)]
    opt.step(g)
    opt.param_groups[0]["lr"] = -1.0
    before = ps[0].copy()
    with pytest.raises(ValueError, match="lr"):
        opt.step(g)
    np.testing.assert_array_equal(ps[0], before)
    opt.param_groups[0]["lr"] = 0.0
    opt.step(g)
    if name.startswith("Adafactor"):
        np.testing.assert_array_equal(ps[0], before)  # rho = min(lr, ...) = 0: no move
    else:
        assert opt.param_groups[0]["k"] == 2 and opt.param_groups[0]["scheduled_lr"] == 0.0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_another_thread_steps_can_step():
    # Another thread steps a large tensor (the GIL released, the step lock held) while this
    # one forks: the child must not inherit the step lock held by a thread it does not have.
    p = [np.random.default_rng(0).standard_normal((1000, 1000)).astype(np.float32)]
    g = [np.full_like(p[0], 1e-3)]
    opt = fo.Adafactor(p)
    stop = threading.Event()

    def stepping():
        while not stop.is_set():
            opt.step(g)

    t = threading.Thread(target=stepping)
    t.start()
    try:
        for _ in range(20):
            with warnings.catch_warnings():  # Python 3.12+ warns of fork in a threaded process
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                q = [np.ones(4, np.float32)]
                fo.Adafactor(q).step([np.ones(4, np.float32)])
                os._exit(0 if np.all(q[0] < 1) else 1)
            assert wait_for_child(pid, 30) == 0
    finally:
        stop.set()
        t.join()
