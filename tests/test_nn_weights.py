"""ferroptim.nn sample and class weights: scikit-learn's weighted mean against a NumPy
transcription and torch; fit against the Python loop bit for bit; weights of 1 equal none;
class_weight against scikit-learn's formula; bad weights refused before anything changes."""

import numpy as np
import pytest
from test_nn import _act, _act_grad, _problem

import ferroptim as fo
from ferroptim.nn import MLP


def reference_weighted(model, X, Y, w, alpha):
    """sklearn's weighted mean in float64: sum_i w_i loss_i / s + alpha/(2s) sum W^2."""
    params, hidden, output = model.params, model.hidden, model.output
    L = len(params) // 2
    W = [params[f"W{l}"].astype(np.float64) for l in range(1, L + 1)]
    b = [params[f"b{l}"].astype(np.float64) for l in range(1, L + 1)]
    A, Zs = [X.astype(np.float64)], []
    for l in range(L):
        z = A[-1] @ W[l] + b[l]
        Zs.append(z)
        A.append(_act(z, hidden) if l < L - 1 else z)
    z = Zs[-1]
    m, k = z.shape
    w = w.astype(np.float64)
    s = w.sum()
    if output == "softmax":
        Y = np.eye(k)[Y] if Y.ndim == 1 else Y.astype(np.float64)
        zs = z - z.max(axis=1, keepdims=True)
        logp = zs - np.log(np.exp(zs).sum(axis=1, keepdims=True))
        cost = (w * -(Y * logp).sum(axis=1)).sum() / s
        dz = (np.exp(logp) - Y) * w[:, None] / s
    elif output == "sigmoid":
        Y = Y.reshape(m, k).astype(np.float64)
        terms = np.maximum(z, 0) - Y * z + np.log1p(np.exp(-np.abs(z)))
        cost = (w * terms.sum(axis=1)).sum() / s
        dz = (1 / (1 + np.exp(-z)) - Y) * w[:, None] / s
    else:
        Y = Y.reshape(m, k).astype(np.float64)
        cost = (w * ((z - Y) ** 2).sum(axis=1)).sum() / (2 * s * k)
        dz = (z - Y) * w[:, None] / (s * k)
    cost += alpha / (2 * s) * sum((v**2).sum() for v in W)
    grads = {}
    for l in range(L - 1, -1, -1):
        grads[f"W{l + 1}"] = A[l].T @ dz + alpha / s * W[l]
        grads[f"b{l + 1}"] = dz.sum(axis=0)
        if l > 0:
            dz = (dz @ W[l].T) * _act_grad(Zs[l - 1], hidden)
    return cost, grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity"])
@pytest.mark.parametrize("m", [9, 3000])  # 3000: several blocks of rows
def test_weighted_gradients_match_the_numpy_transcription(dtype, output, m):
    sizes = [3, 32, 24, 3] if output != "sigmoid" else [3, 32, 24, 2]
    model = MLP(sizes, hidden="tanh", output=output, dtype=dtype, seed=5, alpha=0.1)
    X, Y = _problem(sizes, output, m, dtype, seed=1)
    w = np.random.default_rng(3).uniform(0, 3, m)
    w[::7] = 0  # zero weights count for nothing
    cost, grads = model.loss_and_grad(X, Y, sample_weight=w)
    ref_cost, ref = reference_weighted(model, X, Y, w.astype(dtype), alpha=0.1)
    tol = 5e-5 if dtype == np.float32 else 1e-11
    assert cost == pytest.approx(ref_cost, rel=tol, abs=tol)
    for name, g in grads.items():
        np.testing.assert_allclose(g, ref[name], rtol=tol * 10, atol=tol, err_msg=name)


def test_integer_weights_equal_repeated_examples():
    sizes = [4, 8, 3]
    model = MLP(sizes, output="softmax", dtype=np.float64, seed=2, alpha=0.3)
    X, Y = _problem(sizes, "softmax", 40, np.float64, seed=4)
    w = np.random.default_rng(1).integers(0, 4, 40)
    cost, grads = model.loss_and_grad(X, Y, sample_weight=w)
    grads = {k: v.copy() for k, v in grads.items()}
    rep_cost, rep = model.loss_and_grad(np.repeat(X, w, axis=0), np.repeat(Y, w))
    assert cost == pytest.approx(rep_cost, rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], rep[k], rtol=1e-10, atol=1e-14)


def test_weighted_gradients_match_torch():
    torch = pytest.importorskip("torch", reason="torch is the second reference")
    sizes = [3, 5, 2]
    model = MLP(sizes, hidden="relu", output="softmax", dtype=np.float64, seed=4, alpha=0.2)
    X, Y = _problem(sizes, "softmax", 11, np.float64, seed=5)
    w = np.linspace(0.5, 2.0, 11)
    cost, grads = model.loss_and_grad(X, Y, sample_weight=w)
    P = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    z = torch.relu(torch.tensor(X) @ P["W1"] + P["b1"]) @ P["W2"] + P["b2"]
    tw = torch.tensor(w)
    per = torch.nn.functional.cross_entropy(z, torch.tensor(Y), reduction="none")
    J = (tw * per).sum() / tw.sum() + 0.2 / (2 * tw.sum()) * sum((P[f"W{l}"] ** 2).sum() for l in (1, 2))
    J.backward()
    assert cost == pytest.approx(J.item(), rel=1e-12)
    for k, v in grads.items():
        np.testing.assert_allclose(v, P[k].grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity"])
def test_weights_of_one_equal_no_weights_bit_for_bit(output):
    sizes = [4, 16, 8, 2]
    X, Y = _problem(sizes, output, 700, np.float32, seed=1)
    a, b = (MLP(sizes, output=output, seed=0, alpha=0.01) for _ in range(2))
    ca, ga = a.loss_and_grad(X, Y, sample_weight=np.ones(700))
    ga = {k: v.copy() for k, v in ga.items()}
    cb, gb = b.loss_and_grad(X, Y)
    assert ca == cb
    for k in ga:
        np.testing.assert_array_equal(ga[k], gb[k])
    ha = a.fit(X, Y, fo.Adam(a.params, lr=1e-2), batch_size=64, epochs=2, sample_weight=np.ones(700))
    hb = b.fit(X, Y, fo.Adam(b.params, lr=1e-2), batch_size=64, epochs=2)
    np.testing.assert_array_equal(ha.costs, hb.costs)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def _python_loop(model, opt, X, Y, w, epochs, **kw):
    batches = fo.MiniBatches(X, Y, w, **kw)
    costs = []
    for _ in range(epochs):
        for Xb, Yb, Wb in batches:
            c, g = model.loss_and_grad(Xb, Yb, sample_weight=Wb)
            costs.append(c)
            opt.step(g)
    return np.array(costs)


CASES = [
    ([2, 32, 32, 1], "relu", "sigmoid", np.float32, 1000, 64),
    ([6, 16, 4], "tanh", "softmax", np.float64, 333, 50),
    ([4, 32, 16, 4], "sigmoid", "identity", np.float32, 6000, 6000),  # blocks
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("sizes,hidden,output,dtype,m,batch", CASES)
def test_weighted_fit_equals_the_python_loop_bit_for_bit(threads, sizes, hidden, output, dtype, m, batch):
    before = fo.get_num_threads()
    fo.set_num_threads(threads)
    try:
        X, Y = _problem(sizes, output, m, dtype, seed=7)
        w = np.random.default_rng(0).uniform(0, 2, m).astype(dtype)
        a, b = (MLP(sizes, hidden=hidden, output=output, dtype=dtype, seed=3, alpha=1e-3) for _ in range(2))
        oa, ob = fo.Adam(a.params, lr=1e-2), fo.Adam(b.params, lr=1e-2)
        h = a.fit(X, Y, oa, batch_size=batch, epochs=2, seed=11, sample_weight=w)
        costs = _python_loop(b, ob, X, Y, w, 2, batch_size=batch, seed=11)
        np.testing.assert_array_equal(h.costs, costs)
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    finally:
        fo.set_num_threads(before)


def test_a_wrapped_optimizer_gathers_the_weights_too():
    sizes = [3, 8, 2]
    X, Y = _problem(sizes, "softmax", 300, np.float64, seed=6)
    w = np.random.default_rng(2).uniform(0, 2, 300)
    a, b = (MLP(sizes, output="softmax", dtype=np.float64, seed=1) for _ in range(2))
    wa = fo.Lookahead(fo.Adam(a.params, lr=1e-2), sync_period=4)
    wb = fo.Lookahead(fo.Adam(b.params, lr=1e-2), sync_period=4)
    h = a.fit(X, Y, wa, batch_size=32, epochs=2, seed=2, sample_weight=w)
    costs = _python_loop(b, wb, X, Y, w, 2, batch_size=32, seed=2)
    np.testing.assert_array_equal(h.costs, costs)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)


def test_column_layout_takes_weights_like_rows():
    sizes = [3, 8, 3]
    X, Y = _problem(sizes, "softmax", 200, np.float64, seed=6, onehot=True)
    w = np.random.default_rng(2).uniform(0, 2, 200)
    a, b = (MLP(sizes, output="softmax", dtype=np.float64, seed=1) for _ in range(2))
    ha = a.fit(X, Y, fo.SGD(a.params, lr=0.1), batch_size=32, sample_weight=w, class_weight={2: 3.0})
    hb = b.fit(
        X.T.copy(),
        Y.T.copy(),
        fo.SGD(b.params, lr=0.1),
        batch_size=32,
        axis=1,
        sample_weight=w,
        class_weight={2: 3.0},
    )
    np.testing.assert_allclose(ha.costs, hb.costs, rtol=1e-12)


@pytest.mark.parametrize("output,k", [("softmax", 3), ("sigmoid", 1)])
def test_class_weight_follows_scikit_learn(output, k):
    utils = pytest.importorskip(
        "sklearn.utils", reason="scikit-learn's compute_class_weight is the reference"
    )
    sizes = [4, 8, k]
    X, Y = _problem(sizes, output, 300, np.float64, seed=3)
    y = Y.reshape(-1).astype(np.int64)
    y[:150] = 0  # unbalanced
    Y = y if output == "softmax" else y.astype(np.float64)
    classes = np.unique(y)
    sk = utils.compute_class_weight("balanced", classes=classes, y=y)
    sw = np.random.default_rng(0).uniform(0.5, 1.5, 300)
    for class_weight, per_class in [("balanced", dict(zip(classes, sk))), ({0: 0.5}, {0: 0.5})]:
        expected = sw * np.array([per_class.get(c, 1.0) for c in y])
        a, b = (MLP(sizes, output=output, dtype=np.float64, seed=1) for _ in range(2))
        ha = a.fit(X, Y, fo.SGD(a.params, lr=0.1), batch_size=50, sample_weight=sw, class_weight=class_weight)
        hb = b.fit(X, Y, fo.SGD(b.params, lr=0.1), batch_size=50, sample_weight=expected)
        np.testing.assert_array_equal(ha.costs, hb.costs)


@pytest.mark.parametrize(
    "kw,error,match",
    [
        (dict(sample_weight=-np.ones(50)), ValueError, "negative weights"),
        (dict(sample_weight=np.full(50, np.nan)), ValueError, "NaN or infinity"),
        (dict(sample_weight=np.ones(49)), ValueError, r"shape \(49,\), expected \(50,\)"),
        (dict(sample_weight=np.zeros(50)), ValueError, "all zero"),
        (dict(sample_weight=np.array(["a"] * 50)), TypeError, "must hold numbers"),
        (dict(class_weight={5: 1.0}), ValueError, r"label 5; expected class indices in \[0, 3\)"),
        (dict(class_weight={0: -1.0}), ValueError, "finite number >= 0"),
        (dict(class_weight="even"), ValueError, "'balanced'"),
        (dict(class_weight=[1, 2]), TypeError, "dict"),
    ],
)
def test_bad_weights_are_refused_before_anything_changes(kw, error, match):
    sizes = [4, 6, 3]
    X, Y = _problem(sizes, "softmax", 50, np.float64)
    model = MLP(sizes, output="softmax", dtype=np.float64)
    opt = fo.Adam(model.params, lr=0.1)
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(error, match=match):
        model.fit(X, Y, opt, batch_size=10, **kw)
    assert model.epoch == 0 and model.position == 0
    for k in before:
        np.testing.assert_array_equal(model.params[k], before[k])


def test_class_weight_needs_a_classifier_and_weights_need_arrays():
    X, Y = _problem([3, 2], "identity", 20, np.float32)
    model = MLP([3, 2], output="identity")
    with pytest.raises(ValueError, match="class_weight needs a classifier"):
        model.fit(X, Y, fo.SGD(model.params, lr=0.1), class_weight="balanced")
    src = fo.data.Sliced(X, Y, block_size=8)
    with pytest.raises(ValueError, match="need arrays X and Y"):
        model.fit(src, optimizer=fo.SGD(model.params, lr=0.1), sample_weight=np.ones(20))
    with pytest.raises(ValueError, match="sample_weight has shape"):
        model.loss_and_grad(X, Y, sample_weight=np.ones(3))


@pytest.mark.parametrize("m", [10, 3000])  # 3000: several blocks of rows
def test_a_batch_whose_weights_sum_to_zero_has_no_cost_and_no_gradient(m):
    sizes = [3, 32, 24, 2]
    model = MLP(sizes, output="sigmoid", dtype=np.float64, seed=1, alpha=0.5)
    X, Y = _problem(sizes, "sigmoid", m, np.float64)
    cost, grads = model.loss_and_grad(X, Y, sample_weight=np.zeros(m))
    assert cost == 0.0
    for k, g in grads.items():
        assert not g.any(), k
