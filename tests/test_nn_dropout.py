"""ferroptim.nn dropout: gradients with the training masks against a NumPy transcription and
torch autograd; fit against the Python loop bit for bit at every thread count; resume; the
masks' statistics; bad rates refused."""

import copy
import pickle

import numpy as np
import pytest
from test_nn import _act, _act_grad, _problem, output_cost

import ferroptim as fo
from ferroptim.nn import MLP

HIDDEN = list(fo.nn.HIDDEN)


def reference_dropout(model, X, Y, masks, alpha=0.0):
    """Cost and gradients in float64 of inverted dropout with the given masks: after each
    hidden activation ``A *= mask * scale`` (``scale = 1 / (1 - rate)`` rounded to the
    model's dtype), and ``dA *= mask * scale`` backward."""
    params, hidden, output = model.params, model.hidden, model.output
    L = len(params) // 2
    W = [params[f"W{l}"].astype(np.float64) for l in range(1, L + 1)]
    b = [params[f"b{l}"].astype(np.float64) for l in range(1, L + 1)]
    scales = [m * float(model.dtype.type(1 / (1 - r))) for m, r in zip(masks, model.dropout)]
    A, Zs = [X.astype(np.float64)], []
    for l in range(L):
        z = A[-1] @ W[l] + b[l]
        Zs.append(z)
        A.append(_act(z, hidden) * scales[l] if l < L - 1 else z)
    z = Zs[-1]
    m = z.shape[0]
    cost, dz = output_cost(z, Y, output)
    cost += alpha / (2 * m) * sum((w**2).sum() for w in W)
    grads = {}
    for l in range(L - 1, -1, -1):
        grads[f"W{l + 1}"] = A[l].T @ dz + alpha / m * W[l]
        grads[f"b{l + 1}"] = dz.sum(axis=0)
        if l > 0:
            dz = (dz @ W[l].T) * scales[l - 1] * _act_grad(Zs[l - 1], hidden)
    return cost, grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity"])
@pytest.mark.parametrize("m", [7, 3000])  # 3000: several blocks of rows
def test_gradients_with_the_masks_match_the_numpy_transcription(dtype, hidden, output, m):
    sizes = [3, 32, 24, 4] if output != "sigmoid" else [3, 32, 24, 2]
    model = MLP(sizes, hidden=hidden, output=output, dtype=dtype, seed=5, alpha=0.1, dropout=[0.3, 0.5])
    X, Y = _problem(sizes, output, m, dtype, seed=1)
    cost, grads = model.loss_and_grad(X, Y, dropout_key=(4, 9))
    masks = model.dropout_masks(m, 4, 9)
    assert [mk.shape for mk in masks] == [(m, 32), (m, 24)] and masks[0].dtype == bool
    ref_cost, ref = reference_dropout(model, X, Y, masks, alpha=0.1)
    tol = 5e-5 if dtype == np.float32 else 1e-11
    assert cost == pytest.approx(ref_cost, rel=tol, abs=tol)
    for name, g in grads.items():
        np.testing.assert_allclose(g, ref[name], rtol=tol * 10, atol=tol, err_msg=name)
    # Another batch position draws other masks, and other gradients.
    other = model.dropout_masks(m, 4, 10)
    assert not np.array_equal(other[0], masks[0])


@pytest.mark.parametrize("hidden", HIDDEN)
def test_gradients_with_the_masks_match_torch_autograd(hidden):
    torch = pytest.importorskip("torch", reason="torch autograd is the second reference")
    sizes = [3, 6, 5, 3]
    model = MLP(sizes, hidden=hidden, output="softmax", dtype=np.float64, seed=4, alpha=0.2, dropout=0.4)
    X, Y = _problem(sizes, "softmax", 13, np.float64, seed=5)
    cost, grads = model.loss_and_grad(X, Y, dropout_key=(0, 3))
    masks = model.dropout_masks(13, 0, 3)
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
        # nn.Dropout's formula with our mask: input * mask / (1 - p).
        a = act(z) * torch.tensor(masks[l - 1], dtype=torch.float64) / (1 - 0.4) if l < 3 else z
    m = X.shape[0]
    J = torch.nn.functional.cross_entropy(z, torch.tensor(Y))
    J = J + 0.2 / (2 * m) * sum((P[f"W{l}"] ** 2).sum() for l in range(1, 4))
    J.backward()
    assert cost == pytest.approx(J.item(), rel=1e-12)
    for k, v in grads.items():
        np.testing.assert_allclose(v, P[k].grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=k)


def test_forward_cost_and_a_keyless_gradient_drop_nothing():
    sizes = [4, 16, 16, 3]
    X, Y = _problem(sizes, "softmax", 200, np.float64, seed=2)
    a = MLP(sizes, output="softmax", dtype=np.float64, seed=3, dropout=0.5)
    b = MLP(sizes, output="softmax", dtype=np.float64, seed=3)
    np.testing.assert_array_equal(a.forward(X), b.forward(X))
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert a.cost(X, Y) == b.cost(X, Y)
    ca, ga = a.loss_and_grad(X, Y)
    ga = {k: v.copy() for k, v in ga.items()}
    cb, gb = b.loss_and_grad(X, Y)
    assert ca == cb
    for k in ga:
        np.testing.assert_array_equal(ga[k], gb[k])
    # With the key, dropout changes the cost.
    assert a.loss_and_grad(X, Y, dropout_key=(0, 0))[0] != cb


def _python_loop(model, opt, X, Y, epochs, **kw):
    """The loop fit equals: batch j of epoch e draws the masks of dropout_key (e, j)."""
    batches = fo.MiniBatches(X, Y, **kw)
    costs = []
    for e in range(epochs):
        for j, (Xb, Yb) in enumerate(batches):
            c, g = model.loss_and_grad(Xb, Yb, dropout_key=(e, j))
            costs.append(c)
            opt.step(g)
    return np.array(costs)


CASES = [
    ([2, 32, 32, 1], "relu", "sigmoid", np.float32, 1000, 64, 0.2),
    ([6, 16, 4], "tanh", "softmax", np.float64, 333, 50, [0.5]),
    ([4, 32, 16, 4], "sigmoid", "identity", np.float32, 6000, 6000, [0.1, 0.3]),  # blocks
    ([2, 32, 32, 1], "leaky_relu", "sigmoid", np.float64, 3000, 1100, [0.3, 0.0]),  # 3 blocks
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("sizes,hidden,output,dtype,m,batch,rate", CASES)
def test_fit_with_dropout_equals_the_python_loop_bit_for_bit(
    threads, sizes, hidden, output, dtype, m, batch, rate
):
    before = fo.get_num_threads()
    fo.set_num_threads(threads)
    try:
        X, Y = _problem(sizes, output, m, dtype, seed=7)
        a = MLP(sizes, hidden=hidden, output=output, dtype=dtype, seed=3, alpha=1e-3, dropout=rate)
        b = MLP(sizes, hidden=hidden, output=output, dtype=dtype, seed=3, alpha=1e-3, dropout=rate)
        oa, ob = fo.Adam(a.params, lr=1e-2), fo.Adam(b.params, lr=1e-2)
        h = a.fit(X, Y, oa, batch_size=batch, epochs=2, seed=11)
        costs = _python_loop(b, ob, X, Y, 2, batch_size=batch, seed=11)
        np.testing.assert_array_equal(h.costs, costs)
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    finally:
        fo.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_is_the_same_bits_at_every_thread_count(dtype):
    sizes = [5, 24, 12, 3]
    X, Y = _problem(sizes, "softmax", 20_000, dtype, seed=2)  # many blocks
    before = fo.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 3):
            fo.set_num_threads(threads)
            model = MLP(sizes, hidden="tanh", output="softmax", dtype=dtype, seed=4, dropout=0.25)
            cost, grads = model.loss_and_grad(X, Y, dropout_key=(1, 2))
            runs.append((cost, {k: g.copy() for k, g in grads.items()}))
            opt = fo.SGD(model.params, lr=0.1)
            h = model.fit(X, Y, opt, batch_size=4096, epochs=1)
            runs[-1] += (h.costs, {k: v.copy() for k, v in model.params.items()})
    finally:
        fo.set_num_threads(before)
    for cost, grads, costs, params in runs[1:]:
        assert cost == runs[0][0]
        np.testing.assert_array_equal(costs, runs[0][2])
        for k in grads:
            np.testing.assert_array_equal(grads[k], runs[0][1][k], err_msg=k)
            np.testing.assert_array_equal(params[k], runs[0][3][k], err_msg=k)


def test_a_run_resumed_mid_epoch_equals_one_never_stopped():
    sizes = [3, 12, 12, 3]
    X, Y = _problem(sizes, "softmax", 600, np.float64, seed=9)
    full = MLP(sizes, output="softmax", dtype=np.float64, seed=2, dropout=0.3)
    of = fo.Adam(full.params, lr=3e-3)
    hf = full.fit(X, Y, of, batch_size=50, epochs=2)

    first = MLP(sizes, output="softmax", dtype=np.float64, seed=2, dropout=0.3)
    o1 = fo.Adam(first.params, lr=3e-3)
    h1 = first.fit(X, Y, o1, batch_size=50, epochs=2, max_steps=17)  # stops in epoch 1
    assert (first.epoch, first.position) == (1, 5)
    ckpt_model, ckpt_opt = pickle.loads(pickle.dumps((first.state_dict(), o1.state_dict())))

    resumed = MLP(sizes, output="softmax", dtype=np.float64, seed=99, dropout=0.3)
    o2 = fo.Adam(resumed.params, lr=3e-3)
    resumed.load_state_dict(ckpt_model)
    o2.load_state_dict(ckpt_opt)
    h2 = resumed.fit(X, Y, o2, batch_size=50, epochs=1)
    np.testing.assert_array_equal(hf.costs, np.concatenate([h1.costs, h2.costs]))
    for k in full.params:
        np.testing.assert_array_equal(full.params[k], resumed.params[k])


def test_a_wrapped_optimizer_draws_the_same_masks_as_the_fused_loop():
    sizes = [3, 16, 2]
    X, Y = _problem(sizes, "softmax", 300, np.float64, seed=6)
    a = MLP(sizes, output="softmax", dtype=np.float64, seed=1, dropout=0.4)
    b = MLP(sizes, output="softmax", dtype=np.float64, seed=1, dropout=0.4)
    wa = fo.Lookahead(fo.Adam(a.params, lr=1e-2), sync_period=4)
    wb = fo.Lookahead(fo.Adam(b.params, lr=1e-2), sync_period=4)
    h = a.fit(X, Y, wa, batch_size=32, epochs=2, seed=2, steps_per_execution=3)
    costs = _python_loop(b, wb, X, Y, 2, batch_size=32, seed=2)
    np.testing.assert_array_equal(h.costs, costs)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)


@pytest.mark.parametrize("zero", [0.0, 0, [0.0, 0.0]])
def test_dropout_zero_equals_no_dropout_bit_for_bit(zero):
    sizes = [4, 16, 8, 1]
    X, Y = _problem(sizes, "sigmoid", 500, np.float32, seed=1)
    a = MLP(sizes, seed=0, dropout=zero)
    b = MLP(sizes, seed=0)
    assert a.dropout == (0.0, 0.0)
    ha = a.fit(X, Y, fo.Adam(a.params, lr=1e-2), batch_size=64, epochs=2)
    hb = b.fit(X, Y, fo.Adam(b.params, lr=1e-2), batch_size=64, epochs=2)
    np.testing.assert_array_equal(ha.costs, hb.costs)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def test_dropout_actually_changes_training():
    sizes = [4, 16, 8, 1]
    X, Y = _problem(sizes, "sigmoid", 500, np.float32, seed=1)
    a, b = MLP(sizes, seed=0, dropout=0.2), MLP(sizes, seed=0)
    ha = a.fit(X, Y, fo.Adam(a.params, lr=1e-2), batch_size=64)
    hb = b.fit(X, Y, fo.Adam(b.params, lr=1e-2), batch_size=64)
    assert not np.array_equal(ha.costs, hb.costs)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_the_kept_fraction_is_one_minus_the_rate(rate):
    model = MLP([2, 200, 100, 1], dropout=[rate, 0.0], seed=7)
    first, second = model.dropout_masks(1000, 3, 5)
    n = first.size
    kept = first.mean()
    assert abs(kept - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / n)
    assert second.all()  # rate 0: every unit kept
    # Units and rows are not correlated: each column and each row keeps about the same share.
    assert abs(first.mean(axis=0) - (1 - rate)).max() < 6 * np.sqrt(rate * (1 - rate) / 1000)
    # The masks depend on the seed, the epoch and the position.
    for other in (MLP([2, 200, 100, 1], dropout=rate, seed=8).dropout_masks(1000, 3, 5)[0],
                  model.dropout_masks(1000, 4, 5)[0], model.dropout_masks(1000, 3, 6)[0]):  # fmt: skip
        assert 0.5 * (1 - rate) < (other == first).mean() < 1


@pytest.mark.parametrize(
    "dropout,error,match",
    [
        (-0.1, ValueError, r"dropout must be in \[0, 1\)"),
        (1.0, ValueError, r"dropout must be in \[0, 1\)"),
        (float("nan"), ValueError, r"dropout must be in \[0, 1\)"),
        ([0.1, 1.5], ValueError, r"dropout\[1\] must be in \[0, 1\)"),
        ([0.1], ValueError, r"one rate or one per hidden layer \(2\), got 1 rates"),
        ([0.1, 0.2, 0.3], ValueError, r"one per hidden layer \(2\), got 3"),
        ("0.2", TypeError, r"dropout must be a number"),
        (True, TypeError, r"dropout must be a number"),
        ([0.1, None], TypeError, r"dropout\[1\] must be a number"),
    ],
)
def test_bad_rates_are_refused(dropout, error, match):
    with pytest.raises(error, match=match):
        MLP([3, 4, 4, 1], dropout=dropout)


def test_bad_dropout_keys_are_refused_before_anything_changes():
    model = MLP([3, 4, 1], dropout=0.5, dtype=np.float64)
    X, Y = _problem([3, 4, 1], "sigmoid", 10, np.float64)
    before = {k: v.copy() for k, v in model.grads.items()}
    for key, error in [((1,), TypeError), (3, TypeError), ((-1, 0), ValueError), ((0, 2**64), ValueError)]:
        with pytest.raises(error, match="dropout_key"):
            model.loss_and_grad(X, Y, dropout_key=key)
        for k in before:
            np.testing.assert_array_equal(model.grads[k], before[k])


def test_the_rates_travel_with_pickles_copies_and_state_dicts():
    model = MLP([3, 8, 6, 2], output="softmax", dropout=[0.25, 0.5], seed=5)
    assert model.dropout == (0.25, 0.5) and "dropout=[0.25, 0.5]" in repr(model)
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert clone.dropout == (0.25, 0.5)
        X, Y = _problem([3, 8, 6, 2], "softmax", 20, np.float32)
        assert (
            clone.loss_and_grad(X, Y, dropout_key=(0, 1))[0]
            == model.loss_and_grad(X, Y, dropout_key=(0, 1))[0]
        )
    sd = model.state_dict()
    assert sd["dropout"] == [0.25, 0.5]
    MLP([3, 8, 6, 2], output="softmax", dropout=[0.25, 0.5]).load_state_dict(sd)
    other = MLP([3, 8, 6, 2], output="softmax", dropout=0.25)
    before = {k: v.copy() for k, v in other.params.items()}
    with pytest.raises(ValueError, match="dropout"):
        other.load_state_dict(sd)
    for k in before:
        np.testing.assert_array_equal(other.params[k], before[k])
    # alpha's setter keeps the rates.
    model.alpha = 0.1
    assert model.dropout == (0.25, 0.5)


@pytest.mark.parametrize("steps", [None, 3])
def test_fit_on_a_source_draws_the_masks_of_each_batch_position(steps):
    # A source trains in runs of batches (one Rust call per chunk): each run's first batch
    # keeps its position in the epoch for the masks.
    rng = np.random.default_rng(2)
    X = rng.standard_normal((400, 3)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0, 0.5], np.float32))[:, None]
    src = fo.data.Sliced(X, y, block_size=32, buffer_blocks=2)
    m1 = MLP([3, 8, 1], output="identity", dropout=0.3)
    m1.fit(
        src, optimizer=fo.SGD(m1.params, lr=0.05), batch_size=20, epochs=2, seed=1, steps_per_execution=steps
    )
    m2 = MLP([3, 8, 1], output="identity", dropout=0.3)
    opt2 = fo.SGD(m2.params, lr=0.05)
    order = fo.MiniBatches(X, y, batch_size=20, seed=1, block_size=32, buffer_blocks=2)
    for e in range(2):
        for j, (xb, yb) in enumerate(order):
            opt2.step(m2.loss_and_grad(xb, yb, dropout_key=(e, j))[1])
    for k in m1.params:
        np.testing.assert_array_equal(m1.params[k], m2.params[k], err_msg=k)
