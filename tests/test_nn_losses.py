"""ferroptim.nn, issue 31 item 2: per-layer hidden activations and the regression losses
(Huber, Poisson with the log link). Gradients against a NumPy transcription (always), torch
autograd (where installed) and finite differences; fit against the Python loop, bit for
bit; saving, pickling, ONNX and gradient checking carry them; bad arguments refused."""

import copy
import pickle

import numpy as np
import pytest
from test_nn import _act, _act_grad, _python_loop

import ferroptim as fo
from ferroptim.nn import MLP

# (hidden, output, loss): every loss, per-layer and single activations.
CASES = [
    (["tanh", "relu"], "identity", "squared_error"),
    (["relu", "sigmoid"], "identity", "huber"),
    ("tanh", "identity", "huber"),
    (["leaky_relu", "tanh"], "exp", "poisson"),
    ("sigmoid", "exp", "poisson"),
    (["identity", "sigmoid"], "softmax", "log_loss"),
    (["sigmoid", "leaky_relu"], "sigmoid", "log_loss"),
]


def reference(params, X, Y, hidden, output, loss, alpha=0.0, delta=1.0, weights=None):
    """Cost and gradients in float64, written out from the formulas of ferroptim.nn: one
    activation name per hidden layer, the output and its cost ``loss``."""
    L = len(params) // 2
    W = [params[f"W{l}"].astype(np.float64) for l in range(1, L + 1)]
    b = [params[f"b{l}"].astype(np.float64) for l in range(1, L + 1)]
    A, Zs = [X.astype(np.float64)], []
    for l in range(L):
        z = A[-1] @ W[l] + b[l]
        Zs.append(z)
        A.append(_act(z, hidden[l]) if l < L - 1 else z)
    z = Zs[-1]
    m, k = z.shape
    w = np.ones(m) if weights is None else weights.astype(np.float64)
    s = w.sum()
    if loss == "log_loss" and Y.ndim == 1:  # softmax labels
        Y = np.eye(k)[Y]
    Y = Y.reshape(m, k).astype(np.float64)
    if loss == "huber":
        r = z - Y
        small = np.abs(r) < delta
        terms = np.where(small, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
        cost = (w[:, None] * terms).sum() / (s * k)
        dz = np.where(small, r, delta * np.sign(r)) / (s * k)
    elif loss == "poisson":
        a = np.exp(z)
        xlogy = np.where(Y > 0, Y * (np.log(np.where(Y > 0, Y, 1.0)) - z), 0.0)
        cost = (w[:, None] * (xlogy - Y + a)).sum() / s
        dz = (a - Y) / s
    elif loss == "squared_error":
        cost = (w[:, None] * (z - Y) ** 2).sum() / (2 * s * k)
        dz = (z - Y) / (s * k)
    elif output == "softmax":
        zs = z - z.max(axis=1, keepdims=True)
        logp = zs - np.log(np.exp(zs).sum(axis=1, keepdims=True))
        cost = -(w[:, None] * Y * logp).sum() / s
        dz = (np.exp(logp) - Y) / s
    else:  # sigmoid
        cost = (w[:, None] * (np.maximum(z, 0) - Y * z + np.log1p(np.exp(-np.abs(z))))).sum() / s
        dz = (1 / (1 + np.exp(-z)) - Y) / s
    dz = dz * w[:, None]
    cost += alpha / (2 * s) * sum((v**2).sum() for v in W)
    grads = {}
    for l in range(L - 1, -1, -1):
        grads[f"W{l + 1}"] = A[l].T @ dz + alpha / s * W[l]
        grads[f"b{l + 1}"] = dz.sum(axis=0)
        if l > 0:
            dz = (dz @ W[l].T) * _act_grad(Zs[l - 1], hidden[l - 1])
    return cost, grads


def _problem(output, m, k, dtype, seed=0, n0=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n0)).astype(dtype)
    if output == "softmax":
        Y = rng.integers(0, k, m)
    elif output == "sigmoid":
        Y = (rng.random((m, k)) > 0.5).astype(dtype)
    elif output == "exp":
        Y = rng.poisson(1.5, (m, k)).astype(dtype)  # counts, zeros included
    else:
        Y = (2 * rng.standard_normal((m, k))).astype(dtype)  # residuals on both sides of delta
    return X, Y


def _model(hidden, output, loss, dtype=np.float64, sizes=(3, 6, 5, 2), **kw):
    delta = {"huber_delta": 0.7} if loss == "huber" else {}
    return MLP(list(sizes), hidden=hidden, output=output, loss=loss, dtype=dtype, seed=1, **delta, **kw)


def _layers(hidden, n=2):
    return [hidden] * n if isinstance(hidden, str) else hidden


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden,output,loss", CASES)
@pytest.mark.parametrize("m", [1, 9, 5000])  # 5000: several blocks of rows
def test_gradients_match_the_numpy_transcription(dtype, hidden, output, loss, m):
    model = _model(hidden, output, loss, dtype, alpha=0.1, init="glorot")
    X, Y = _problem(output, m, 2, dtype)
    cost, grads = model.loss_and_grad(X, Y)
    delta = model.huber_delta
    ref_cost, ref = reference(model.params, X, Y, _layers(hidden), output, loss, alpha=0.1, delta=delta)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    assert cost == pytest.approx(ref_cost, rel=tol, abs=tol)
    for name, g in grads.items():
        assert g.dtype == dtype
        np.testing.assert_allclose(g, ref[name], rtol=tol * 10, atol=tol, err_msg=name)


@pytest.mark.parametrize("hidden,output,loss", CASES)
def test_weighted_gradients_match_the_numpy_transcription(hidden, output, loss):
    model = _model(hidden, output, loss, alpha=0.05)
    X, Y = _problem(output, 13, 2, np.float64, seed=4)
    w = np.random.default_rng(5).uniform(0, 2, 13)
    cost, grads = model.loss_and_grad(X, Y, sample_weight=w)
    ref_cost, ref = reference(model.params, X, Y, _layers(hidden), output, loss, 0.05, model.huber_delta, w)
    assert cost == pytest.approx(ref_cost, rel=1e-12)
    for name, g in grads.items():
        np.testing.assert_allclose(g, ref[name], rtol=1e-10, atol=1e-13, err_msg=name)


@pytest.mark.parametrize("hidden,output,loss", CASES)
def test_gradients_match_torch_autograd(hidden, output, loss):
    torch = pytest.importorskip("torch", reason="torch autograd is the second reference")
    F = torch.nn.functional
    model = _model(hidden, output, loss, alpha=0.2)
    X, Y = _problem(output, 11, 2, np.float64, seed=5)
    cost, grads = model.loss_and_grad(X, Y)
    acts = {
        "relu": torch.relu,
        "leaky_relu": lambda z: F.leaky_relu(z, 0.01),
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "identity": lambda z: z,
    }
    P = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    a = torch.tensor(X)
    for l, g in enumerate(_layers(hidden) + ["out"], start=1):
        z = a @ P[f"W{l}"] + P[f"b{l}"]
        a = acts[g](z) if g != "out" else z
    y = torch.tensor(Y)
    m = X.shape[0]
    if loss == "huber":
        J = torch.nn.HuberLoss(delta=model.huber_delta)(z, y)
    elif loss == "poisson":
        # torch's PoissonNLLLoss(log_input=True) is exp(z) - y z, mean over elements; the
        # deviance adds y log y - y per element and sums over outputs.
        J = F.poisson_nll_loss(z, y, log_input=True, reduction="sum") / m
        J = J + (torch.special.xlogy(y, y) - y).sum() / m
    elif loss == "squared_error":
        J = F.mse_loss(z, y) / 2
    elif output == "softmax":
        J = F.cross_entropy(z, y)
    else:
        J = F.binary_cross_entropy_with_logits(z, y, reduction="sum") / m
    J = J + 0.2 / (2 * m) * sum((P[f"W{l}"] ** 2).sum() for l in range(1, 4))
    J.backward()
    assert cost == pytest.approx(J.item(), rel=1e-12)
    for k, v in grads.items():
        np.testing.assert_allclose(v, P[k].grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("hidden,output,loss", CASES)
def test_gradient_check_honours_the_activations_and_the_loss(hidden, output, loss):
    model = _model(hidden, output, loss, dtype=np.float32, sizes=(3, 4, 3, 2), alpha=0.1)
    X, Y = _problem(output, 6, 2, np.float32, seed=6)
    X = X + 0.1  # off relu's kink
    diffs = model.gradient_check(X, Y, eps=1e-6)
    assert max(diffs.values()) < 1e-6, diffs


def test_huber_is_half_the_squared_error_below_delta_and_linear_above():
    X, Y = _problem("identity", 40, 2, np.float64, seed=8)
    sq = _model("tanh", "identity", "squared_error")
    big = MLP(
        [3, 6, 5, 2],
        hidden="tanh",
        output="identity",
        loss="huber",
        huber_delta=1e6,
        seed=1,
        dtype=np.float64,
    )
    assert big.loss_and_grad(X, Y)[0] == pytest.approx(sq.loss_and_grad(X, Y)[0], rel=1e-14)
    # Far outside delta the cost grows by delta per unit of residual: delta / (m k) per
    # element of one row moved by 1000.
    hub = MLP(
        [3, 6, 5, 2],
        hidden="tanh",
        output="identity",
        loss="huber",
        huber_delta=0.5,
        seed=1,
        dtype=np.float64,
    )
    c0 = hub.cost(X, Y + 1000.0)
    c1 = hub.cost(X, Y + 1001.0)
    assert c1 - c0 == pytest.approx(0.5, rel=1e-9)


def test_poisson_predicts_exp_and_its_cost_is_scikit_learns_deviance():
    model = _model("relu", "exp", "poisson")
    X, Y = _problem("exp", 30, 2, np.float64, seed=9)
    Yhat = model.forward(X)
    np.testing.assert_allclose(model.predict(X), Yhat)
    assert (Yhat > 0).all()
    # scikit-learn's poisson_loss: the mean over examples of the summed half deviance.
    xlogy = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1) / Yhat), 0.0)
    assert model.cost(X, Y) == pytest.approx((xlogy - Y + Yhat).sum() / 30, rel=1e-12)
    # At a perfect prediction the deviance is 0 (the constant terms are in).
    model2 = MLP([3, 2], output="exp", seed=0, dtype=np.float64)
    assert model2.cost(X, model2.forward(X)) == pytest.approx(0.0, abs=1e-12)
    assert model.score(X, Y) < 1 and "accuracy" not in model.evaluate(X, Y)


def test_each_hidden_layer_uses_its_own_activation():
    X, Y = _problem("identity", 20, 2, np.float64)
    mixed = _model(["tanh", "relu"], "identity", "squared_error")
    for same in ("tanh", "relu"):
        other = _model(same, "identity", "squared_error")
        assert mixed.loss_and_grad(X, Y)[0] != other.loss_and_grad(X, Y)[0]
    assert mixed.activations == ("tanh", "relu") and _model("tanh", "identity", None).activations == (
        "tanh",
        "tanh",
    )
    # The list of one name repeated equals the name, bit for bit.
    a, b = _model(["sigmoid", "sigmoid"], "identity", None), _model("sigmoid", "identity", None)
    np.testing.assert_array_equal(a.forward(X), b.forward(X))


CASES_FIT = [
    ([3, 16, 8, 2], ["tanh", "relu"], "identity", "huber", np.float32, 300, 32),
    ([3, 16, 8, 2], ["relu", "sigmoid"], "exp", "poisson", np.float64, 301, 64),
    ([3, 16, 8, 2], "tanh", "exp", "poisson", np.float32, 6000, 6000),  # full batch in blocks
    ([3, 16, 8, 2], ["leaky_relu", "identity"], "identity", "huber", np.float64, 6000, 3000),
]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("sizes,hidden,output,loss,dtype,m,batch", CASES_FIT)
def test_fit_equals_the_python_loop_bit_for_bit(threads, sizes, hidden, output, loss, dtype, m, batch):
    before = fo.get_num_threads()
    fo.set_num_threads(threads)
    try:
        X, Y = _problem(output, m, sizes[-1], dtype, seed=7)
        a, b = (_model(hidden, output, loss, dtype, sizes, alpha=1e-3) for _ in range(2))
        oa, ob = fo.Adam(a.params, lr=1e-2), fo.Adam(b.params, lr=1e-2)
        w = np.random.default_rng(2).uniform(0.5, 1.5, m).astype(dtype)
        h = a.fit(X, Y, oa, batch_size=batch, epochs=2, seed=11, sample_weight=w)
        batches = fo.MiniBatches(X, Y, w, batch_size=batch, seed=11)
        costs = []
        for _ in range(2):
            for Xb, Yb, wb in batches:
                c, g = b.loss_and_grad(Xb, Yb, sample_weight=wb)
                costs.append(c)
                ob.step(g)
        np.testing.assert_array_equal(h.costs, costs)
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
        # And without weights, the plain loop.
        a2, b2 = (_model(hidden, output, loss, dtype, sizes) for _ in range(2))
        oa2, ob2 = fo.SGD(a2.params, lr=1e-2, momentum=0.9), fo.SGD(b2.params, lr=1e-2, momentum=0.9)
        h2 = a2.fit(X, Y, oa2, batch_size=batch, epochs=2, seed=3)
        np.testing.assert_array_equal(h2.costs, _python_loop(b2, ob2, X, Y, 2, batch_size=batch, seed=3))
        assert h2.epoch_costs[-1] < h2.epoch_costs[0]
    finally:
        fo.set_num_threads(before)


@pytest.mark.parametrize("hidden,output,loss", CASES)
def test_save_load_pickle_and_deepcopy_keep_activations_and_loss(tmp_path, hidden, output, loss):
    model = _model(hidden, output, loss)
    X, Y = _problem(output, 25, 2, np.float64, seed=10)
    model.fit(X, Y, fo.Adam(model.params, lr=1e-2), batch_size=8, epochs=1)
    model.save(tmp_path / "m.npz")
    copies = [fo.nn.load(tmp_path / "m.npz"), pickle.loads(pickle.dumps(model)), copy.deepcopy(model)]
    for c in copies:
        assert (c.hidden, c.activations, c.output, c.loss, c.huber_delta) == (
            model.hidden,
            model.activations,
            output,
            loss,
            model.huber_delta,
        )
        np.testing.assert_array_equal(c.forward(X), model.forward(X))
        assert c.loss_and_grad(X, Y)[0] == model.loss_and_grad(X, Y)[0]
    assert repr(copies[0]) == repr(model)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_to_onnx_runs_per_layer_activations_and_the_exp_output(dtype):
    ort = pytest.importorskip("onnxruntime", reason="the ONNX graphs run in onnxruntime")
    pytest.importorskip("onnx", reason="MLP.to_onnx builds the graph with onnx")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3)).astype(dtype)
    model = MLP([3, 6, 5, 4, 2], hidden=["leaky_relu", "tanh", "sigmoid"], output="exp", dtype=dtype)
    for p in model.params.values():
        p[...] = rng.standard_normal(p.shape).astype(dtype) * 0.7
    session = ort.InferenceSession(model.to_onnx().SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"X": X})
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(out, model.forward(X), rtol=tol, atol=tol)


BAD = [
    (
        dict(hidden=["relu"]),
        ValueError,
        r"hidden must be one activation or a list of one per hidden layer \(2\)",
    ),
    (dict(hidden=["relu", "tanh", "relu"]), ValueError, r"hidden must be .* \(2\), got 3"),
    (dict(hidden=["relu", "swish"]), ValueError, r"hidden\[1\] must be one of"),
    (dict(hidden="swish"), ValueError, "hidden must be one of"),
    (dict(hidden=("relu", 3)), ValueError, r"hidden\[1\]"),
    (dict(hidden={"relu": 1}), TypeError, "hidden must be an activation name or a list"),
    (dict(output="identity", loss="poisson"), ValueError, "loss='poisson' needs output='exp'"),
    (dict(output="exp", loss="huber"), ValueError, "loss='huber' needs output='identity'"),
    (dict(output="sigmoid", loss="squared_error"), ValueError, "loss must be one of"),
    (dict(output="identity", loss="hinge"), ValueError, "loss must be one of"),
    (
        dict(output="identity", loss="huber", huber_delta=0.0),
        ValueError,
        "huber_delta must be a finite number > 0",
    ),
    (dict(output="identity", loss="huber", huber_delta=np.inf), ValueError, "huber_delta"),
    (dict(output="identity", loss="huber", huber_delta="1"), TypeError, "huber_delta must be a number"),
    (dict(output="identity", huber_delta=2.0), ValueError, "huber_delta is the threshold of loss='huber'"),
    (dict(output="linear"), ValueError, "output must be one of"),
]


@pytest.mark.parametrize("kw,error,match", BAD)
def test_bad_arguments_are_refused_up_front(monkeypatch, kw, error, match):
    built = []
    monkeypatch.setattr(fo._core, "Network", lambda *a, **k: built.append(a))
    with pytest.raises(error, match=match):
        MLP([3, 4, 4, 2], **kw)
    assert not built  # refused before the core network is built


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_poisson_refuses_negative_targets_before_anything_changes(dtype):
    model = _model("relu", "exp", "poisson", dtype)
    X, Y = _problem("exp", 20, 2, dtype)
    Y[3, 1] = -1.0
    before = {k: v.copy() for k, v in model.params.items()}
    opt = fo.Adam(model.params, lr=1e-2)
    for call in (
        lambda: model.fit(X, Y, opt, batch_size=4),
        lambda: model.loss_and_grad(X, Y),
        lambda: model.cost(X, Y),
    ):
        with pytest.raises(ValueError, match="needs targets >= 0"):
            call()
    for k, v in before.items():
        np.testing.assert_array_equal(model.params[k], v)
    assert model.epoch == 0
    # The core refuses too, when the Python check is skipped (at the batch holding it).
    with pytest.raises(ValueError, match="targets >= 0"):
        model.fit(X, Y, opt, batch_size=4, shuffle=False, check_input=False)
    assert model.position == 0 and model.epoch == 0
