"""fo.LBFGS: torch.optim.LBFGS's algorithm over NumPy arrays and a (loss, grads) closure.

Against torch (when installed) both run the same NumPy objective, so only the optimizers'
arithmetic differs: torch's dot products and sums are reductions in the parameters' dtype
in its own order, ours are summed in float64 and rounded once, and torch's line-search
scalars are partly float32 0-d tensors where ours are float64. In float64 that is a few ulps
per iteration, compounded over the step's iterations on a conditioned problem: rtol 1e-9.
In float32 the two first differ by one float32 ulp (6e-8) a few iterations in, and the
iterations amplify that: on Rosenbrock with fixed steps (no line search) by about 1.3x per
iteration (measured: 6e-8 after 3 iterations, 1.7e-5 after 20, 7e-2 after 40 -- the same
growth in float64 stays at 1e-13 after 40), and with the line search near the minimum,
where the loss differences the search compares are below float32's resolution of the
parameters. So float32 is compared over the first 24 iterations (the first step with
max_iter=20), with rtol and atol 2e-4 on parameters of size 1; float64 over every step.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import ferroptim as fo

# -- objectives: (loss, grads) of NumPy arrays --------------------------------------------------


def rosenbrock(x):
    """The n-dimensional Rosenbrock function of a flat x and its gradient."""
    a, b = x[:-1], x[1:]
    loss = np.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2)
    g = np.zeros_like(x)
    g[:-1] = -400.0 * a * (b - a * a) - 2.0 * (1.0 - a)
    g[1:] += 200.0 * (b - a * a)
    return float(loss), [g.astype(x.dtype)]


def logistic_data(dtype):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(64, 5)).astype(dtype)
    w_true = np.array([1.0, -2.0, 0.5, 0.0, 1.5])
    y = (X @ w_true + 0.3 * rng.normal(size=64) > 0).astype(dtype)
    return X, y


def logistic(params, X, y, l2=0.1):
    """Mean logistic loss of X @ w + b with an L2 penalty, and its gradients."""
    w, b = params
    z = X.astype(np.float64) @ w.astype(np.float64) + float(b[0])
    p = 1.0 / (1.0 + np.exp(-z))
    loss = np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * np.sum(w.astype(np.float64) ** 2)
    r = (p - y) / len(y)
    gw = X.T.astype(np.float64) @ r + l2 * w
    gb = np.array([r.sum()])
    return float(loss), [gw.astype(w.dtype), gb.astype(b.dtype)]


def problems(dtype):
    """(name, initial params, objective(params) -> (loss, grads))."""
    X, y = logistic_data(dtype)
    return [
        ("rosenbrock", [np.array([-1.2, 1.0, -0.5, 0.8], dtype=dtype)], lambda ps: rosenbrock(ps[0])),
        ("logistic", [np.zeros(5, dtype=dtype), np.zeros(1, dtype=dtype)], lambda ps: logistic(ps, X, y)),
    ]


TOLERANCE = {np.float32: dict(rtol=2e-4, atol=2e-4), np.float64: dict(rtol=1e-9, atol=1e-12)}
CONFIGS = [
    dict(),
    dict(line_search_fn="strong_wolfe"),
    dict(lr=0.1, max_iter=5, history_size=3),
    dict(lr=0.5, max_iter=7, history_size=4, line_search_fn="strong_wolfe"),
]
STEPS = 4


def compared_steps(kwargs, dtype):
    """The steps compared with torch: all in float64, the first 24 iterations in float32."""
    return STEPS if dtype == np.float64 else max(1, 24 // kwargs.get("max_iter", 20))


def fo_run(make, objective, kwargs, steps=STEPS):
    params = [p.copy() for p in make]
    opt = fo.LBFGS(params, **kwargs)
    losses, path = [], []
    for _ in range(steps):
        losses.append(opt.step(lambda: objective(params)))
        path.append(np.concatenate([p.ravel() for p in params]))
    return losses, path, opt


# -- against torch ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "kwargs", CONFIGS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "defaults"
)
@pytest.mark.parametrize("problem", [0, 1], ids=["rosenbrock", "logistic"])
def test_lbfgs_follows_torch(problem, kwargs, dtype):
    torch = pytest.importorskip("torch", reason="the torch comparison needs torch")
    name, init, objective = problems(dtype)[problem]
    losses, path, opt = fo_run(init, objective, kwargs)

    tparams = [torch.tensor(p.copy()) for p in init]
    topt = torch.optim.LBFGS(tparams, **kwargs)

    def closure():
        loss, grads = objective([p.detach().numpy() for p in tparams])
        for p, g in zip(tparams, grads):
            p.grad = torch.from_numpy(g)
        return torch.tensor(loss, dtype=torch.float64)

    for k in range(compared_steps(kwargs, dtype)):
        tloss = float(topt.step(closure))
        want = np.concatenate([p.detach().numpy().ravel() for p in tparams])
        np.testing.assert_allclose(path[k], want, **TOLERANCE[dtype], err_msg=f"{name} step {k + 1}")
        np.testing.assert_allclose(losses[k], tloss, rtol=TOLERANCE[dtype]["rtol"] * 10, atol=1e-12)
    ts = topt.state_dict()["state"][0]
    s = opt.state_dict()["state"][0]
    assert set(s) == set(ts) - {"al"}
    if dtype == np.float64 or compared_steps(kwargs, dtype) == STEPS:
        assert (s["n_iter"], s["func_evals"]) == (ts["n_iter"], ts["func_evals"])
        assert len(s["old_dirs"]) == len(ts["old_dirs"])
        np.testing.assert_allclose(s["d"], ts["d"].numpy(), rtol=1e-6, atol=TOLERANCE[dtype]["atol"])


def test_lbfgs_reaches_rosenbrocks_minimum_with_the_strong_wolfe_line_search():
    x = np.array([-1.5, 2.0])
    opt = fo.LBFGS([x], line_search_fn="strong_wolfe")
    for _ in range(5):
        opt.step(lambda: rosenbrock(x))
    # stopped by tolerance_change on the loss (|f - f_prev| < 1e-9), as torch stops
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-5)


# -- the step's contract ------------------------------------------------------------------------


def test_step_returns_the_first_loss_object_and_counts_evaluations():
    x = np.array([-1.2, 1.0])
    calls = []

    def closure():
        calls.append(x.copy())
        loss, g = rosenbrock(x)
        return np.float64(loss), g

    opt = fo.LBFGS([x], max_iter=3)
    first = opt.step(closure)
    assert isinstance(first, np.float64) and first == rosenbrock(np.array([-1.2, 1.0]))[0]
    np.testing.assert_array_equal(calls[0], [-1.2, 1.0])
    s = opt.state_dict()["state"][0]
    # max_eval = 3 * 5 // 4 = 3: the start and two iterations' evaluations end the step
    assert s["func_evals"] == len(calls) == 3 and s["n_iter"] == 2


def test_gradients_may_be_a_dict_keyed_like_the_parameters_and_maximize_negates():
    X, y = logistic_data(np.float64)
    named = {"w": np.zeros(5), "b": np.zeros(1)}
    listed = [np.zeros(5), np.zeros(1)]

    def neg(ps):
        loss, (gw, gb) = logistic(ps, X, y)
        return -loss, {"w": -gw, "b": -gb}

    a = fo.LBFGS(named, maximize=True)
    b = fo.LBFGS(listed)
    for _ in range(2):
        a.step(lambda: neg([named["w"], named["b"]]))
        b.step(lambda: logistic(listed, X, y))
    np.testing.assert_array_equal(named["w"], listed[0])
    np.testing.assert_array_equal(named["b"], listed[1])


class Boom(Exception):
    pass


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("fail_at", [1, 2, 5])
def test_a_closure_that_raises_leaves_parameters_and_state_as_before_the_step(fail_at, line_search_fn):
    x = np.array([-1.2, 1.0, 0.3])
    twin = x.copy()
    opt = fo.LBFGS([x], max_iter=6, line_search_fn=line_search_fn)
    ref = fo.LBFGS([twin], max_iter=6, line_search_fn=line_search_fn)
    opt.step(lambda: rosenbrock(x))
    ref.step(lambda: rosenbrock(twin))
    before, state = x.copy(), opt.state_dict()
    calls = []

    def failing():
        calls.append(1)
        if len(calls) == fail_at:
            raise Boom("closure failed")
        return rosenbrock(x)

    with pytest.raises(Boom):
        opt.step(failing)
    np.testing.assert_array_equal(x, before)
    after = opt.state_dict()
    assert after["state"][0].keys() == state["state"][0].keys()
    for k, v in state["state"][0].items():
        np.testing.assert_array_equal(
            np.asarray(after["state"][0][k], dtype=object), np.asarray(v, dtype=object)
        )
    # and the next step is the step that would have been taken
    opt.step(lambda: rosenbrock(x))
    ref.step(lambda: rosenbrock(twin))
    np.testing.assert_array_equal(x, twin)


def diagonal_quadratic(n, dtype, seed=0):
    """A long vector (more than one of the core's chunks of 32768 elements, so the passes
    are chunked and threaded) and the closure of ``sum(c x^2) / 2`` with ``c`` in [0.5, 3]."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(dtype)
    c = rng.uniform(0.5, 3.0, n).astype(dtype)

    def closure(fail=lambda: None):
        fail()
        g = c * x
        return float(np.dot(g.astype(np.float64), x)) / 2, [g]

    return x, closure


def _state_equal(a, b):
    assert a.keys() == b.keys()
    for k, v in a.items():
        if isinstance(v, list):
            assert len(v) == len(b[k])
            for u, w in zip(v, b[k]):
                np.testing.assert_array_equal(u, w)
        else:
            np.testing.assert_array_equal(v, b[k])


@pytest.mark.parametrize(
    "kwargs, fail_at",
    [
        (dict(max_iter=1), 1),  # one evaluation a step: the first fails
        (dict(max_iter=4), 1),
        (dict(max_iter=4), 3),  # after the parameters have moved
        (dict(max_iter=3, line_search_fn="strong_wolfe"), 2),
    ],
)
def test_a_failure_after_the_buffers_are_reused_leaves_parameters_and_state_as_before(kwargs, fail_at):
    n = 3 * 32768 + 5
    x, closure = diagonal_quadratic(n, np.float32)
    twin, twin_closure = diagonal_quadratic(n, np.float32)
    opt = fo.LBFGS([x], history_size=2, lr=0.1, **kwargs)
    ref = fo.LBFGS([twin], history_size=2, lr=0.1, **kwargs)
    for _ in range(5):  # the history is full: its oldest pairs' buffers are reused
        opt.step(closure)
        ref.step(twin_closure)
    before, state = x.copy(), opt.state_dict()["state"][0]
    calls = []

    def fail():
        calls.append(1)
        if len(calls) == fail_at:
            raise Boom("closure failed")

    with pytest.raises(Boom):
        opt.step(lambda: closure(fail))
    np.testing.assert_array_equal(x, before)
    _state_equal(opt.state_dict()["state"][0], state)
    for _ in range(3):
        opt.step(closure)
        ref.step(twin_closure)
        np.testing.assert_array_equal(x, twin)
    _state_equal(opt.state_dict()["state"][0], ref.state_dict()["state"][0])


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_many_steps_after_load_state_dict_continue_bit_for_bit(line_search_fn):
    # a fresh optimizer has no buffers to reuse; the one it resumes had them
    n = 2 * 32768 + 3
    kwargs = dict(max_iter=2, history_size=3, lr=0.2, line_search_fn=line_search_fn)
    x, closure = diagonal_quadratic(n, np.float32, seed=1)
    y, y_closure = diagonal_quadratic(n, np.float32, seed=1)
    opt = fo.LBFGS([x], **kwargs)
    for _ in range(6):
        opt.step(closure)
    y[:] = x
    resumed = fo.LBFGS([y], **kwargs)
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
    for _ in range(8):
        opt.step(closure)
        resumed.step(y_closure)
        np.testing.assert_array_equal(x, y)
    _state_equal(opt.state_dict()["state"][0], resumed.state_dict()["state"][0])


@pytest.mark.parametrize(
    "result, error",
    [
        (lambda x: 1.0, TypeError),  # not a pair
        (lambda x: (1.0, [x.astype(np.float32)]), ValueError),  # wrong dtype
        (lambda x: (1.0, [np.zeros(2)]), ValueError),  # wrong shape
        (lambda x: (1.0, []), ValueError),  # too few
        (lambda x: ("a", [np.zeros_like(x)]), TypeError),  # loss not a number
        (lambda x: (1.0, {"x": np.zeros_like(x)}), TypeError),  # a dict for unnamed params
    ],
)
def test_a_bad_closure_result_is_an_error_and_nothing_changes(result, error):
    x = np.array([-1.2, 1.0, 0.3])
    opt = fo.LBFGS([x])
    with pytest.raises(error):
        opt.step(lambda: result(x))
    np.testing.assert_array_equal(x, [-1.2, 1.0, 0.3])
    assert opt.state_dict()["state"] == {}


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(lr=-1.0), ValueError),
        (dict(lr=float("nan")), ValueError),
        (dict(max_iter=0), ValueError),
        (dict(max_iter=2.5), TypeError),
        (dict(max_eval=0), ValueError),
        (dict(tolerance_grad=-1e-7), ValueError),
        (dict(tolerance_change=-1.0), ValueError),
        (dict(history_size=0), ValueError),
        (dict(history_size=True), TypeError),
        (dict(line_search_fn="backtracking"), ValueError),
        (dict(maximize=1), TypeError),
    ],
)
def test_bad_hyper_parameters_are_refused_at_construction_and_before_a_step_changes_anything(kwargs, error):
    x = np.array([1.0, 2.0])
    with pytest.raises(error):
        fo.LBFGS([x], **kwargs)
    opt = fo.LBFGS([x])
    ((key, value),) = kwargs.items()
    opt.param_groups[0][key] = value
    called = []
    with pytest.raises(error):
        opt.step(lambda: called.append(1) or rosenbrock(x))
    assert not called and opt.state_dict()["state"] == {}
    np.testing.assert_array_equal(x, [1.0, 2.0])


def test_parameters_are_refused_unless_one_group_of_one_float_dtype():
    with pytest.raises(ValueError, match="parameter groups"):
        fo.LBFGS([{"params": [np.zeros(2)]}, {"params": [np.zeros(2)]}])
    with pytest.raises(TypeError, match="one dtype"):
        fo.LBFGS([np.zeros(2), np.zeros(2, dtype=np.float32)])
    with pytest.raises(TypeError, match="float32 or float64"):
        fo.LBFGS([np.zeros(2, dtype=np.int64)])
    with pytest.raises(ValueError, match="C-contiguous"):
        fo.LBFGS([np.zeros((3, 3))[:, 0]])
    a = np.zeros(4)
    with pytest.raises(ValueError, match="share memory"):
        fo.LBFGS([a[:2], a[1:]])
    with pytest.raises(TypeError, match="closure"):
        fo.LBFGS([a]).step(None)


# -- state_dict ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_state_dict_round_trips_and_resuming_continues_bit_for_bit(dtype, line_search_fn):
    kwargs = dict(max_iter=4, history_size=3, line_search_fn=line_search_fn)
    X, y = logistic_data(dtype)
    straight = [np.zeros(5, dtype=dtype), np.zeros(1, dtype=dtype)]
    opt = fo.LBFGS(straight, **kwargs)
    for _ in range(6):
        opt.step(lambda: logistic(straight, X, y))

    first = [np.zeros(5, dtype=dtype), np.zeros(1, dtype=dtype)]
    opt1 = fo.LBFGS(first, **kwargs)
    for _ in range(3):
        opt1.step(lambda: logistic(first, X, y))
    sd = copy.deepcopy(opt1.state_dict())
    s = sd["state"][0]
    assert set(s) == {
        "func_evals",
        "n_iter",
        "d",
        "t",
        "old_dirs",
        "old_stps",
        "ro",
        "H_diag",
        "prev_flat_grad",
        "prev_loss",
    }
    assert s["d"].dtype == dtype and s["ro"][0].dtype == dtype and len(s["old_dirs"]) == 3
    assert sd["param_groups"][0]["params"] == [0, 1] and sd["param_groups"][0]["max_eval"] == 5
    resumed = [p.copy() for p in first]
    opt2 = fo.LBFGS(resumed, lr=123.0)  # the hyper-parameters come from the state_dict
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 1
    for _ in range(3):
        opt2.step(lambda: logistic(resumed, X, y))
    for a, b in zip(resumed, straight):
        np.testing.assert_array_equal(a, b)
    assert opt2.state_dict()["state"][0]["func_evals"] == opt.state_dict()["state"][0]["func_evals"]


def test_a_refused_state_dict_changes_nothing():
    x = np.array([-1.2, 1.0])
    opt = fo.LBFGS([x])
    opt.step(lambda: rosenbrock(x))
    sd = opt.state_dict()
    bad = copy.deepcopy(sd)
    bad["state"][0]["d"] = np.zeros(3)
    with pytest.raises(ValueError, match="'d'"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(sd)
    bad["state"][0]["ro"] = bad["state"][0]["ro"][:-1]
    with pytest.raises(ValueError, match="'ro'"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(sd)
    bad["param_groups"][0]["history_size"] = 0
    with pytest.raises(ValueError, match="history_size"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(sd)
    bad["state"][0]["bogus"] = 1
    with pytest.raises(ValueError, match="bogus"):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    np.testing.assert_array_equal(after["state"][0]["d"], sd["state"][0]["d"])
    assert after["param_groups"] == sd["param_groups"]


def test_a_torch_state_dict_loads():
    torch = pytest.importorskip("torch", reason="loading torch's state_dict needs torch")
    x = np.array([-1.2, 1.0, 0.5])
    tx = torch.tensor(x.copy())
    topt = torch.optim.LBFGS([tx], max_iter=3, line_search_fn="strong_wolfe")

    def closure():
        loss, (g,) = rosenbrock(tx.detach().numpy())
        tx.grad = torch.from_numpy(g)
        return torch.tensor(loss)

    topt.step(closure)
    tsd = topt.state_dict()

    def numpy_of(v):
        if isinstance(v, torch.Tensor):
            return v.numpy()
        if isinstance(v, list):
            return [numpy_of(e) for e in v]
        return v

    sd = {
        "state": {0: {k: numpy_of(v) for k, v in tsd["state"][0].items()}},
        "param_groups": tsd["param_groups"],
    }
    x[:] = tx.detach().numpy()
    opt = fo.LBFGS([x])
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["line_search_fn"] == "strong_wolfe"
    topt.step(closure)
    opt.step(lambda: rosenbrock(x))
    np.testing.assert_allclose(x, tx.detach().numpy(), rtol=1e-9)


def test_pickle_and_deepcopy_keep_the_state_and_the_link_to_the_parameters():
    import pickle

    def closure_of(params):
        def closure():
            loss, (g,) = rosenbrock(params["x"])
            return loss, {"x": g}

        return closure

    x = {"x": np.array([-1.2, 1.0, 0.5])}
    opt = fo.LBFGS(x, max_iter=4, line_search_fn="strong_wolfe")
    opt.step(closure_of(x))
    for clone in (lambda o: pickle.loads(pickle.dumps(o)), copy.deepcopy):
        y, twin = clone((x, opt))
        assert twin._params[0] is y["x"] and y["x"] is not x["x"]
        twin.step(closure_of(y))
        ref = copy.deepcopy(x)
        again = fo.LBFGS(ref, max_iter=4, line_search_fn="strong_wolfe")
        again.load_state_dict(opt.state_dict())
        again.step(closure_of(ref))
        np.testing.assert_array_equal(y["x"], ref["x"])
