"""ferroptim.nn: gradients against a NumPy transcription, torch autograd and finite
differences; fit against the Python loop, bit for bit; checkpoints; bad input."""

import itertools
import os

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.nn import MLP

from conftest import wait_for_child

HIDDEN = list(fo.nn.HIDDEN)  # the core's list: a new activation is tested once it has a reference below
assert {"relu", "leaky_relu", "tanh", "sigmoid", "identity"} <= set(HIDDEN)
OUTPUTS = ["sigmoid", "softmax", "identity"]


# -- the NumPy transcription ------------------------------------------------------------------


def _act(z, g):
    if g == "relu":
        return np.maximum(z, 0)
    if g == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z)
    if g == "tanh":
        return np.tanh(z)
    if g == "sigmoid":
        return 1 / (1 + np.exp(-z))
    return z


def _act_grad(z, g):
    if g == "relu":
        return (z > 0).astype(z.dtype)
    if g == "leaky_relu":
        return np.where(z > 0, 1.0, 0.01)
    if g == "tanh":
        return 1 - np.tanh(z) ** 2
    if g == "sigmoid":
        s = 1 / (1 + np.exp(-z))
        return s * (1 - s)
    return np.ones_like(z)


def output_cost(z, Y, output):
    """The output layer's mean cost over the batch and its gradient ``dz`` with respect to
    the pre-activations ``z`` (m, k), in float64: softmax + cross-entropy (``Y`` labels or
    one-hot rows), sigmoid + binary cross-entropy, identity + mean squared error / 2."""
    m, k = z.shape
    if output == "softmax":
        Y = np.eye(k)[Y] if Y.ndim == 1 else Y.astype(np.float64)
        zs = z - z.max(axis=1, keepdims=True)
        logp = zs - np.log(np.exp(zs).sum(axis=1, keepdims=True))
        return -(Y * logp).sum() / m, (np.exp(logp) - Y) / m
    Y = Y.reshape(m, k).astype(np.float64)
    if output == "sigmoid":
        cost = (np.maximum(z, 0) - Y * z + np.log1p(np.exp(-np.abs(z)))).sum() / m
        return cost, (1 / (1 + np.exp(-z)) - Y) / m
    return ((z - Y) ** 2).sum() / (2 * m * k), (z - Y) / (m * k)


def reference(params, X, Y, hidden, output, alpha=0.0):
    """Cost and gradients in float64, written out from the formulas of ferroptim.nn."""
    L = len(params) // 2
    W = [params[f"W{l}"].astype(np.float64) for l in range(1, L + 1)]
    b = [params[f"b{l}"].astype(np.float64) for l in range(1, L + 1)]
    A, Zs = [X.astype(np.float64)], []
    for l in range(L):
        z = A[-1] @ W[l] + b[l]
        Zs.append(z)
        A.append(_act(z, hidden) if l < L - 1 else z)
    z = Zs[-1]
    m = z.shape[0]
    cost, dz = output_cost(z, Y, output)
    cost += alpha / (2 * m) * sum((w**2).sum() for w in W)
    grads = {}
    for l in range(L - 1, -1, -1):
        grads[f"W{l + 1}"] = A[l].T @ dz + alpha / m * W[l]
        grads[f"b{l + 1}"] = dz.sum(axis=0)
        if l > 0:
            dz = (dz @ W[l].T) * _act_grad(Zs[l - 1], hidden)
    return cost, grads


def _problem(sizes, output, m, dtype, seed=0, onehot=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, sizes[0])).astype(dtype)
    k = sizes[-1]
    if output == "softmax":
        Y = rng.integers(0, k, m)
        if onehot:
            Y = np.eye(k, dtype=dtype)[Y]
    elif output == "sigmoid":
        Y = (rng.random((m, k)) > 0.5).astype(dtype)
    else:
        Y = rng.standard_normal((m, k)).astype(dtype)
    return X, Y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden,output", list(itertools.product(HIDDEN, OUTPUTS)))
@pytest.mark.parametrize("m", [1, 7, 64, 5000])  # 5000: several blocks of rows
def test_gradients_match_the_numpy_transcription(dtype, hidden, output, m):
    sizes = [3, 6, 5, 4] if output != "sigmoid" else [3, 6, 5, 2]
    model = MLP(sizes, hidden=hidden, output=output, dtype=dtype, seed=1, alpha=0.1, init="glorot")
    X, Y = _problem(sizes, output, m, dtype)
    cost, grads = model.loss_and_grad(X, Y)
    ref_cost, ref = reference(model.params, X, Y, hidden, output, alpha=0.1)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    assert cost == pytest.approx(ref_cost, rel=tol, abs=tol)
    for name, g in grads.items():
        assert g.dtype == dtype and g.shape == model.params[name].shape
        np.testing.assert_allclose(g, ref[name], rtol=tol * 10, atol=tol, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_hot_targets_equal_labels(dtype):
    model = MLP([4, 8, 3], hidden="tanh", output="softmax", dtype=dtype)
    X, y = _problem([4, 8, 3], "softmax", 20, dtype)
    c1, g1 = model.loss_and_grad(X, y)
    g1 = {k: v.copy() for k, v in g1.items()}
    c2, g2 = model.loss_and_grad(X, np.eye(3, dtype=dtype)[y])
    assert c1 == pytest.approx(c2, rel=1e-6)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("hidden,output", list(itertools.product(HIDDEN, OUTPUTS)))
def test_gradients_match_finite_differences(hidden, output):
    sizes = [3, 4, 3]
    model = MLP(sizes, hidden=hidden, output=output, dtype=np.float64, seed=2, alpha=0.05)
    X, Y = _problem(sizes, output, 9, np.float64, seed=3)
    if hidden in ("relu", "leaky_relu"):
        X = X + 0.1  # keep pre-activations off the kink at 0 for the step below
    _, grads = model.loss_and_grad(X, Y)
    grads = {k: v.copy() for k, v in grads.items()}
    h = 1e-6
    for name, p in model.params.items():
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + h
            up = model.loss_and_grad(X, Y)[0]
            p[idx] = old - h
            down = model.loss_and_grad(X, Y)[0]
            p[idx] = old
            assert (up - down) / (2 * h) == pytest.approx(grads[name][idx], rel=1e-5, abs=1e-7), (name, idx)


@pytest.mark.parametrize("hidden,output", list(itertools.product(HIDDEN, OUTPUTS)))
def test_gradients_match_torch_autograd(hidden, output):
    torch = pytest.importorskip("torch")
    sizes = [3, 5, 4, 3]
    model = MLP(sizes, hidden=hidden, output=output, dtype=np.float64, seed=4, alpha=0.2)
    X, Y = _problem(sizes, output, 11, np.float64, seed=5)
    cost, grads = model.loss_and_grad(X, Y)
    act = {
        "relu": torch.relu,
        "leaky_relu": lambda z: torch.nn.functional.leaky_relu(z, 0.01),
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "identity": lambda z: z,
    }[hidden]
    P = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    a = torch.tensor(X)
    for l in range(1, 4):
        z = a @ P[f"W{l}"] + P[f"b{l}"]
        a = act(z) if l < 3 else z
    m = X.shape[0]
    if output == "softmax":
        J = torch.nn.functional.cross_entropy(z, torch.tensor(Y))
    elif output == "sigmoid":
        J = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.tensor(Y), reduction="sum") / m
    else:
        J = torch.nn.functional.mse_loss(z, torch.tensor(Y)) / 2
    J = J + 0.2 / (2 * m) * sum((P[f"W{l}"] ** 2).sum() for l in range(1, 4))
    J.backward()
    assert cost == pytest.approx(J.item(), rel=1e-12)
    for k, v in grads.items():
        np.testing.assert_allclose(v, P[k].grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=k)


# -- fit against the Python loop --------------------------------------------------------------


def _python_loop(model, opt, X, Y, epochs, **kw):
    batches = fo.MiniBatches(X, Y, **kw)
    costs = []
    for _ in range(epochs):
        for Xb, Yb in batches:
            c, g = model.loss_and_grad(Xb, Yb)
            costs.append(c)
            opt.step(g)
    return np.array(costs)


CASES = [
    ([2, 32, 32, 1], "relu", "sigmoid", np.float32, 1000, 64),
    ([2, 5, 2, 1], "tanh", "sigmoid", np.float64, 301, 64),  # partial last batch
    ([6, 10], "relu", "softmax", np.float32, 500, 128),
    ([6, 16, 4], "leaky_relu", "softmax", np.float64, 333, 1),
    ([3, 8, 2], "sigmoid", "identity", np.float32, 257, 50),
    ([64, 128, 64, 10], "relu", "softmax", np.float32, 700, 256),  # products split over threads
    ([4, 32, 16, 4], "relu", "identity", np.float32, 6000, 6000),  # full batch, 11 blocks
    ([2, 32, 32, 1], "tanh", "sigmoid", np.float64, 3000, 1100),  # 3 blocks; last batch 2
    ([3, 16, 8, 4], ["tanh", "leaky_relu"], "softmax", np.float32, 6000, 2500),  # per-layer, blocks
    ([3, 8, 6, 2], ["sigmoid", "relu"], "identity", np.float64, 257, 50),  # per-layer activations
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("sizes,hidden,output,dtype,m,batch", CASES)
def test_fit_equals_the_python_loop_bit_for_bit(threads, sizes, hidden, output, dtype, m, batch):
    before = fo.get_num_threads()
    fo.set_num_threads(threads)
    try:
        X, Y = _problem(sizes, output, m, dtype, seed=7)
        a = MLP(sizes, hidden=hidden, output=output, dtype=dtype, seed=3, alpha=1e-3)
        b = MLP(sizes, hidden=hidden, output=output, dtype=dtype, seed=3, alpha=1e-3)
        oa, ob = fo.Adam(a.params, lr=1e-2), fo.Adam(b.params, lr=1e-2)
        h = a.fit(X, Y, oa, batch_size=batch, epochs=3, seed=11)
        costs = _python_loop(b, ob, X, Y, 3, batch_size=batch, seed=11)
        np.testing.assert_array_equal(h.costs, costs)
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
        sa, sb = oa.state_dict()["state"], ob.state_dict()["state"]
        for k in sa:
            for name in sa[k]:
                np.testing.assert_array_equal(sa[k][name], sb[k][name])
        assert len(h.costs) == 3 * -(-m // batch) and a.epoch == 3
    finally:
        fo.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_full_batch_in_blocks_is_the_same_bits_at_every_thread_count(dtype):
    # 20,000 rows: many more blocks than threads, in groups summed in a fixed order.
    sizes = [5, 24, 12, 3]
    X, Y = _problem(sizes, "softmax", 20_000, dtype, seed=2)
    model = MLP(sizes, hidden="tanh", output="softmax", dtype=dtype, seed=4, alpha=0.01)
    before = fo.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 3):
            fo.set_num_threads(threads)
            cost, grads = model.loss_and_grad(X, Y)
            p = model.predict_proba(X)
            runs.append((cost, {k: g.copy() for k, g in grads.items()}, p, model.cost(X, Y)))
    finally:
        fo.set_num_threads(before)
    for cost, grads, p, data_cost in runs[1:]:
        assert cost == runs[0][0] and data_cost == runs[0][3]
        np.testing.assert_array_equal(p, runs[0][2])
        for k in grads:
            np.testing.assert_array_equal(grads[k], runs[0][1][k], err_msg=k)
    # Each row's prediction is its own: the same as predicted alone, to rounding.
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(runs[0][2][::997], model.predict_proba(X[::997]), rtol=tol, atol=tol)
    ref_cost, ref = reference(model.params, X, Y, "tanh", "softmax", alpha=0.01)
    assert runs[0][0] == pytest.approx(ref_cost, rel=tol)
    for k, g in runs[0][1].items():
        np.testing.assert_allclose(g, ref[k], rtol=10 * tol, atol=tol, err_msg=k)


def test_fit_follows_schedules_clipping_and_param_groups_like_step():
    sizes = [2, 8, 1]
    X, Y = _problem(sizes, "sigmoid", 400, np.float64, seed=1)
    sched = fo.schedules.InverseTimeDecay(0.05, decay_rate=0.5, decay_steps=3)
    plain = lambda k: 0.01 / (1 + k)  # noqa: E731

    def build():
        m = MLP(sizes, hidden="tanh", dtype=np.float64, seed=0)
        groups = [
            {"params": {"W1": m.params["W1"], "b1": m.params["b1"]}, "lr": sched},
            {"params": {"W2": m.params["W2"], "b2": m.params["b2"]}, "lr": plain},
        ]
        return m, fo.Adam(groups, max_grad_norm=0.1)

    a, oa = build()
    b, ob = build()
    h = a.fit(X, Y, oa, batch_size=32, epochs=2, seed=5)
    costs = _python_loop(b, ob, X, Y, 2, batch_size=32, seed=5)
    np.testing.assert_array_equal(h.costs, costs)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert oa.last_grad_norm == ob.last_grad_norm


def test_fit_reads_schedules_as_step_does_one_call_per_execution_when_vectorized():
    sizes = [2, 4, 1]
    X, Y = _problem(sizes, "sigmoid", 64, np.float64, seed=3)
    calls = []

    class Counted(fo.schedules.ExponentialDecay):
        def __call__(self, step):
            calls.append(np.ndim(step))
            return super().__call__(step)

    def run(lr, **kw):
        m = MLP(sizes, dtype=np.float64, seed=0)
        m.fit(X, Y, fo.SGD(m.params, lr=lr), batch_size=8, epochs=1, **kw)
        return m.params

    sched = Counted(0.1, 0.5, decay_steps=4)
    vectorized = run(sched, steps_per_execution=4)
    assert calls.count(1) == 2  # 8 updates, two Rust calls of 4: one array of steps each
    plain = run(lambda k: float(fo.schedules.ExponentialDecay(0.1, 0.5, decay_steps=4)(k)))
    for k in vectorized:
        np.testing.assert_array_equal(vectorized[k], plain[k])
    # A bad value is refused, naming the group and the step, before that call's updates.
    m = MLP(sizes, dtype=np.float64, seed=0)
    before = {k: v.copy() for k, v in m.params.items()}
    with pytest.raises(ValueError, match=r"param_groups\[0\] gives NaN at step 2; expected a finite"):
        m.fit(X, Y, fo.SGD(m.params, lr=lambda k: float("nan") if k == 2 else 0.1), batch_size=8)
    for k in before:
        np.testing.assert_array_equal(m.params[k], before[k])
    with pytest.raises(TypeError, match=r"returned str at step 0"):
        m.fit(X, Y, fo.SGD(m.params, lr=lambda k: "0.1"), batch_size=8)


@pytest.mark.parametrize("opt_class", [fo.SGD, fo.RMSprop, fo.AdamW, fo.Momentum, fo.Lion, fo.Rprop, fo.ASGD])
def test_fit_equals_the_loop_for_other_optimizers(opt_class):
    sizes = [4, 8, 3]
    X, Y = _problem(sizes, "softmax", 200, np.float32, seed=2)
    a, b = (MLP(sizes, output="softmax", seed=1) for _ in range(2))
    h = a.fit(X, Y, opt_class(a.params, lr=1e-2), batch_size=16, epochs=2, seed=0)
    costs = _python_loop(b, opt_class(b.params, lr=1e-2), X, Y, 2, batch_size=16, seed=0)
    np.testing.assert_array_equal(h.costs, costs)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def test_fit_one_epoch_at_a_time_equals_fit_all_epochs():
    sizes = [2, 16, 1]
    X, Y = _problem(sizes, "sigmoid", 500, np.float32)
    a, b = MLP(sizes, seed=0), MLP(sizes, seed=0)
    oa, ob = fo.Adam(a.params), fo.Adam(b.params)
    h = a.fit(X, Y, oa, batch_size=64, epochs=4)
    hs = [b.fit(X, Y, ob, batch_size=64, epochs=1, check_input=i == 0) for i in range(4)]
    np.testing.assert_array_equal(h.costs, np.concatenate([x.costs for x in hs]))
    np.testing.assert_array_equal(h.epochs, [x.epochs[0] for x in hs])
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_trains_the_epoch_its_parent_was_shuffling_ahead(threads):
    # fit shuffles the next epoch on a pool thread, which a forked child does not have: the
    # child must compute that order itself rather than wait for it.
    fo.set_num_threads(2)
    m, b = 4_000_000, 64  # shuffling 4M samples on one thread takes tens of ms
    X, Y = _problem([2, 4, 1], "sigmoid", m, np.float32, seed=1)
    model = MLP([2, 4, 1], seed=0)
    opt = fo.Adam(model.params)
    model.fit(X, Y, opt, batch_size=b, epochs=1, max_steps=1)  # epoch 1 is being shuffled
    pid = os.fork()
    rest = 2 * -(-m // b) - 1
    if pid == 0:  # pragma: no cover - runs in the child
        h = model.fit(X, Y, opt, batch_size=b, epochs=2, check_input=False)
        os._exit(0 if len(h.costs) == rest and np.all(np.isfinite(h.costs)) else 1)
    assert wait_for_child(pid) == 0
    assert len(model.fit(X, Y, opt, batch_size=b, epochs=2, check_input=False).costs) == rest


def test_a_resumed_run_equals_one_never_stopped():
    sizes = [3, 12, 3]
    X, Y = _problem(sizes, "softmax", 600, np.float64, seed=9)
    full, of = MLP(sizes, output="softmax", dtype=np.float64, seed=2), None
    of = fo.Adam(full.params, lr=3e-3)
    hf = full.fit(X, Y, of, batch_size=50, epochs=3)

    first = MLP(sizes, output="softmax", dtype=np.float64, seed=2)
    o1 = fo.Adam(first.params, lr=3e-3)
    h1 = first.fit(X, Y, o1, batch_size=50, epochs=1)
    ckpt_model, ckpt_opt = first.state_dict(), o1.state_dict()

    resumed = MLP(sizes, output="softmax", dtype=np.float64, seed=99)
    o2 = fo.Adam(resumed.params, lr=3e-3)
    resumed.load_state_dict(ckpt_model)
    o2.load_state_dict(ckpt_opt)
    h2 = resumed.fit(X, Y, o2, batch_size=50, epochs=2)
    np.testing.assert_array_equal(hf.costs, np.concatenate([h1.costs, h2.costs]))
    for k in full.params:
        np.testing.assert_array_equal(full.params[k], resumed.params[k])


@pytest.mark.parametrize("threads", [1, 2])
def test_steps_per_execution_and_max_steps_give_the_same_updates(threads):
    before = fo.get_num_threads()
    fo.set_num_threads(threads)
    try:
        sizes = [3, 16, 1]
        X, Y = _problem(sizes, "sigmoid", 1000, np.float32, seed=3)
        a, b, c = (MLP(sizes, seed=4) for _ in range(3))
        oa, ob, oc = (fo.Adam(m.params, lr=1e-2) for m in (a, b, c))
        ha = a.fit(X, Y, oa, batch_size=64, epochs=3, seed=1)  # 16 batches per epoch
        logs = []
        hb = b.fit(
            X, Y, ob, batch_size=64, epochs=3, seed=1, steps_per_execution=5, batch_callbacks=[logs.append]
        )
        np.testing.assert_array_equal(ha.costs, hb.costs)
        np.testing.assert_array_equal(ha.epoch_costs, hb.epoch_costs)
        # 5, 5, 5, 1 updates per epoch: a call at every 5 and at each epoch's end.
        assert [(d["epoch"], d["position"]) for d in logs[:5]] == [(0, 5), (0, 10), (0, 15), (1, 0), (1, 5)]
        assert logs[-1]["updates"] == 48 and logs[-1]["seconds"] > 0
        assert logs[0]["cost"] == pytest.approx(float(np.mean(ha.costs[:5])))
        # max_steps stops mid-epoch; a checkpoint there resumes bit for bit.
        h1 = c.fit(X, Y, oc, batch_size=64, epochs=3, seed=1, max_steps=21)
        assert len(h1.costs) == 21 and (c.epoch, c.position) == (1, 5) and len(h1.epoch_costs) == 1
        resumed = MLP(sizes, seed=99)
        ro = fo.Adam(resumed.params, lr=1e-2)
        resumed.load_state_dict(c.state_dict())
        ro.load_state_dict(oc.state_dict())
        h2 = resumed.fit(X, Y, ro, batch_size=64, epochs=3, seed=1, steps_per_execution=7)
        assert resumed.epoch == 4
        h3 = resumed.fit(X, Y, ro, batch_size=64, epochs=0)
        assert len(h3.costs) == 0
        np.testing.assert_array_equal(np.concatenate([h1.costs, h2.costs])[:48], ha.costs)
        a.fit(X, Y, oa, batch_size=64, epochs=1, seed=1)
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], resumed.params[k], err_msg=k)
    finally:
        fo.set_num_threads(before)


def test_a_batch_callback_stops_training_within_an_epoch():
    sizes = [2, 8, 1]
    X, Y = _problem(sizes, "sigmoid", 640, np.float32, seed=5)
    model = MLP(sizes, seed=0)
    h = model.fit(
        X,
        Y,
        fo.SGD(model.params, lr=0.1),
        batch_size=8,
        epochs=5,
        steps_per_execution=3,
        batch_callbacks=[lambda logs: logs["updates"] >= 10],
    )
    assert len(h.costs) == 12 and (model.epoch, model.position) == (0, 12) and len(h.epoch_costs) == 0


@pytest.mark.parametrize(
    "wrap",
    [
        lambda o: fo.GradientAccumulation(o, steps=3),
        lambda o: fo.Lookahead(o, sync_period=4),
        lambda o: fo.Lookahead(fo.GradientAccumulation(o, steps=2)),
    ],
)
@pytest.mark.parametrize("axis", [0, 1])
def test_fit_takes_optimizer_wrappers_through_the_python_loop(wrap, axis):
    sizes = [3, 8, 2]
    X, Y = _problem(sizes, "softmax", 300, np.float64, seed=6)
    a, b = (
        MLP(sizes, output="softmax", dtype=np.float64, seed=1),
        MLP(sizes, output="softmax", dtype=np.float64, seed=1),
    )
    wa, wb = wrap(fo.Adam(a.params, lr=1e-2)), wrap(fo.Adam(b.params, lr=1e-2))
    Xa = X.T.copy() if axis == 1 else X
    h = a.fit(Xa, Y, wa, batch_size=32, epochs=2, seed=2, axis=axis, steps_per_execution=4)
    costs = _python_loop(b, wb, X, Y, 2, batch_size=32, seed=2)
    np.testing.assert_array_equal(h.costs, costs)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    assert a.epoch == 2 and len(h.epoch_costs) == 2
    other = MLP(sizes, output="softmax", dtype=np.float64, seed=1)
    with pytest.raises(ValueError, match="other arrays"):
        other.fit(X, Y, wrap(fo.Adam(b.params)))


def test_bad_steps_arguments():
    sizes = [2, 4, 1]
    X, Y = _problem(sizes, "sigmoid", 50, np.float32)
    model = MLP(sizes)
    opt = fo.SGD(model.params, lr=0.1)
    with pytest.raises(ValueError, match="steps_per_execution"):
        model.fit(X, Y, opt, steps_per_execution=0)
    with pytest.raises(TypeError, match="max_steps"):
        model.fit(X, Y, opt, max_steps=1.5)
    with pytest.raises(TypeError, match="batch_callbacks"):
        model.fit(X, Y, opt, batch_callbacks=[1])
    assert model.epoch == 0 and model.position == 0


def test_column_layout_trains_like_rows():
    sizes = [3, 8, 2]
    X, Y = _problem(sizes, "identity", 120, np.float64, seed=4)
    a, b = (MLP(sizes, output="identity", dtype=np.float64, seed=0) for _ in range(2))
    ha = a.fit(X, Y, fo.SGD(a.params, lr=0.1), batch_size=16, epochs=2)
    hb = b.fit(
        np.ascontiguousarray(X.T),
        np.ascontiguousarray(Y.T),
        fo.SGD(b.params, lr=0.1),
        batch_size=16,
        epochs=2,
        axis=1,
    )
    np.testing.assert_allclose(ha.costs, hb.costs, rtol=1e-12)
    for k in a.params:
        np.testing.assert_allclose(a.params[k], b.params[k], rtol=1e-12, atol=1e-14)


def test_history_validation_and_callbacks():
    sizes = [2, 16, 16, 1]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 2)).astype(np.float32)
    Y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)
    model = MLP(sizes, hidden="tanh", seed=0)
    opt = fo.Adam(model.params, lr=1e-2)
    seen = []
    h = model.fit(
        X[:1500],
        Y[:1500],
        opt,
        batch_size=100,
        epochs=10,
        validation_data=(X[1500:], Y[1500:]),
        callbacks=[lambda e, logs: seen.append(logs) or e == 5],
        timing=True,
    )
    assert len(h.epoch_costs) == 6 and len(seen) == 6 and len(h.costs) == 6 * 15
    assert h.val_costs.shape == (6,) and h.val_accuracy[-1] > 0.8
    assert h.epoch_costs[-1] < h.epoch_costs[0]
    assert set(h.timing) == {"gather", "forward", "backward", "step"}
    assert h.val_costs[-1] == pytest.approx(model.cost(X[1500:], Y[1500:]))
    assert model.predict_proba(X[:5]).shape == (5, 2) and model.predict(X[:5]).shape == (5,)


# -- bad input --------------------------------------------------------------------------------


def _snapshot(model, opt):
    return {k: v.copy() for k, v in model.params.items()}, opt.state_dict()


@pytest.mark.parametrize(
    "change,error,match",
    [
        (lambda X, Y: (X[:, :2], Y), ValueError, "X has shape"),
        (lambda X, Y: (X.astype(np.complex64), Y), TypeError, "X has dtype complex64, expected real"),
        (
            lambda X, Y: (np.where(np.arange(len(X))[:, None] == 7, np.nan, X).astype(np.float32), Y),
            ValueError,
            "NaN",
        ),
        (lambda X, Y: (X, np.where(np.arange(len(Y)) == 3, 4, Y)), ValueError, "labels in"),
        (lambda X, Y: (X, Y.astype(np.float32)), TypeError, "integers"),
        (lambda X, Y: (X, Y[:-1]), ValueError, "Y has shape"),
    ],
)
def test_bad_data_raises_before_anything_changes(change, error, match):
    sizes = [3, 4, 4]
    model = MLP(sizes, output="softmax", seed=0)
    opt = fo.Adam(model.params)
    X, Y = _problem(sizes, "softmax", 50, np.float32)
    X, Y = change(X, Y)
    before = _snapshot(model, opt)
    with pytest.raises(error, match=match):
        model.fit(X, Y, opt, batch_size=8)
    with pytest.raises(error, match=match):
        model.loss_and_grad(X, Y)
    after = _snapshot(model, opt)
    for k in before[0]:
        np.testing.assert_array_equal(before[0][k], after[0][k])
    assert after[1]["state"] == {} and model.epoch == 0


def test_bad_arguments():
    sizes = [2, 3, 1]
    model = MLP(sizes, seed=0)
    X, Y = _problem(sizes, "sigmoid", 10, np.float32)
    with pytest.raises(ValueError, match="other arrays"):
        model.fit(X, Y, fo.Adam({k: v.copy() for k, v in model.params.items()}))
    with pytest.raises(ValueError, match="built on 1 arrays"):
        model.fit(X, Y, fo.Adam([model.params["W1"]]))
    opt = fo.Adam(model.params)
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(X, Y, opt, batch_size=0)
    with pytest.raises(TypeError, match="optimizer"):
        model.fit(X, Y, "adam")
    with pytest.raises(TypeError, match="epochs"):
        model.fit(X, Y, opt, epochs=1.5)
    with pytest.raises(ValueError, match="probability rows"):
        MLP([2, 3], output="softmax").loss_and_grad(X, np.ones((10, 3), np.float32))
    with pytest.raises(ValueError, match="hidden"):
        MLP(sizes, hidden="gelu")
    with pytest.raises(ValueError, match="softmax"):
        MLP([2, 1], output="softmax")
    with pytest.raises(ValueError, match="layer_sizes"):
        MLP([2, 0, 1])
    with pytest.raises(TypeError, match="dtype"):
        MLP(sizes, dtype=np.int32)
    with pytest.raises(ValueError, match="alpha"):
        MLP(sizes, alpha=-1.0)
    with pytest.raises(FloatingPointError):
        model.params["W1"][0, 0] = np.inf
        model.fit(X, Y, fo.Adam(model.params, nan_policy="raise"), check_input=False)
    assert model.epoch == 0


@pytest.mark.parametrize("how", ["epochs", "steps_per_execution", "wrapper"])
def test_ctrl_c_stops_after_a_complete_update_and_fit_continues_there(how):
    import _thread
    import threading

    sizes = [2, 16, 1]
    X, Y = _problem(sizes, "sigmoid", 20_000, np.float64, seed=1)
    a, b = MLP(sizes, dtype=np.float64, seed=0), MLP(sizes, dtype=np.float64, seed=0)
    oa, ob = fo.SGD(a.params, lr=0.05), fo.SGD(b.params, lr=0.05)
    if how == "wrapper":
        oa, ob = fo.Lookahead(oa), fo.Lookahead(ob)
    kw = {"steps_per_execution": 30} if how == "steps_per_execution" else {}
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        a.fit(X, Y, oa, batch_size=8, epochs=100_000, **kw)  # far longer than 0.3 s
    timer.join()
    assert a.epoch < 100_000
    # Finish the interrupted epoch and one more; b trains as many epochs without a stop.
    epochs = a.epoch + 2
    a.fit(X, Y, oa, batch_size=8, epochs=epochs - a.epoch, check_input=False, **kw)
    assert (a.epoch, a.position) == (epochs, 0)
    b.fit(X, Y, ob, batch_size=8, epochs=epochs)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
def test_fit_with_lbfgs_is_full_batch_steps_equal_to_the_loop(line_search):
    sizes = [3, 8, 2]
    X, Y = _problem(sizes, "softmax", 300, np.float64, seed=4)
    kw = dict(lr=0.5 if line_search is None else 1.0, max_iter=5, line_search_fn=line_search)
    a, b = (MLP(sizes, output="softmax", dtype=np.float64, seed=2) for _ in range(2))
    h = a.fit(X, Y, fo.LBFGS(a.params, **kw), batch_size=None, epochs=4)
    opt = fo.LBFGS(b.params, **kw)
    costs = []
    for _ in range(4):
        costs.append(opt.step(lambda: b.loss_and_grad(X, Y)))
    np.testing.assert_array_equal(h.costs, costs)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert a.epoch == 4 and a.position == 0
    assert h.epoch_costs[-1] < h.epoch_costs[0]
    w = np.random.default_rng(0).uniform(0.0, 2.0, len(X))
    c, d = (MLP(sizes, output="softmax", dtype=np.float64, seed=2) for _ in range(2))
    c.fit(X, Y, fo.LBFGS(c.params, **kw), batch_size=None, epochs=2, sample_weight=w)
    opt = fo.LBFGS(d.params, **kw)
    for _ in range(2):
        opt.step(lambda: d.loss_and_grad(X, Y, sample_weight=w))
    for k in c.params:
        np.testing.assert_array_equal(c.params[k], d.params[k])
    with pytest.raises(ValueError, match="LBFGS takes the cost and gradient of the whole data"):
        a.fit(X, Y, fo.LBFGS(a.params), batch_size=32)
    with pytest.raises(ValueError, match="other arrays than model.params"):
        a.fit(X, Y, fo.LBFGS([p.copy() for p in a.params.values()]), batch_size=None)
