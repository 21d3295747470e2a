"""ferroptim.nn batch normalization: gradients in training and inference mode against a NumPy
transcription and torch autograd (nn.Linear(bias=False) + nn.BatchNorm1d); running statistics
against torch after several steps; fit against the Python loop bit for bit at every thread
count; resume; predict on the running statistics; state_dict, pickle, save/load; ONNX; bad
arguments refused before anything changes."""

import copy
import pickle

import numpy as np
import pytest
from test_nn import _act, _act_grad, _problem, output_cost

import ferroptim as fo
from ferroptim.nn import MLP

HIDDEN = list(fo.nn.HIDDEN)


def reference_batch_norm(model, X, Y, training, alpha=0.0):
    """Cost, gradients and (training) the batch's ``(mean, unbiased var)`` per hidden layer,
    in float64, written out from the formulas of MLP's docstring."""
    p, bufs, L = model.params, model.buffers, len(model.layer_sizes) - 1
    eps, hidden, output = model.batch_norm_eps, model.activations, model.output
    W = [p[f"W{l}"].astype(np.float64) for l in range(1, L + 1)]
    A, cache, stats = [X.astype(np.float64)], [], []
    for l in range(1, L):
        z = A[-1] @ W[l - 1]
        if training:
            mu, var = z.mean(axis=0), z.var(axis=0)
            stats.append((mu, z.var(axis=0, ddof=1)))
        else:
            mu, var = bufs[f"running_mean{l}"].astype(np.float64), bufs[f"running_var{l}"].astype(np.float64)
        inv = 1 / np.sqrt(var + eps)
        xhat = (z - mu) * inv
        zt = p[f"gamma{l}"] * xhat + p[f"beta{l}"]
        cache.append((xhat, inv, zt))
        A.append(_act(zt, hidden[l - 1]))
    z = A[-1] @ W[-1] + p[f"b{L}"]
    m = z.shape[0]
    cost, dz = output_cost(z, Y, output)
    cost += alpha / (2 * m) * sum((w**2).sum() for w in W)
    g = {f"W{L}": A[-1].T @ dz + alpha / m * W[-1], f"b{L}": dz.sum(axis=0)}
    for l in range(L - 1, 0, -1):
        xhat, inv, zt = cache[l - 1]
        dzt = (dz @ W[l].T) * _act_grad(zt, hidden[l - 1])
        g[f"gamma{l}"], g[f"beta{l}"] = (dzt * xhat).sum(axis=0), dzt.sum(axis=0)
        f = p[f"gamma{l}"] * inv
        if training:
            dz = f * (dzt - g[f"beta{l}"] / m - xhat * g[f"gamma{l}"] / m)
        else:
            dz = f * dzt
        g[f"W{l}"] = A[l - 1].T @ dz + alpha / m * W[l - 1]
    return cost, g, stats


def _randomize(model, seed):
    """Non-trivial gamma, beta and running statistics."""
    rng = np.random.default_rng(seed)
    for k, v in model.params.items():
        if k.startswith("gamma"):
            v[...] = 1 + 0.3 * rng.standard_normal(v.shape)
        elif k.startswith(("beta", "b")):
            v[...] = 0.3 * rng.standard_normal(v.shape)
    for k, v in model.buffers.items():
        v[...] = rng.random(v.shape) + 0.5 if "var" in k else 0.2 * rng.standard_normal(v.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("m", [7, 3000])  # 3000: plain training would cut it into blocks
def test_gradients_match_the_numpy_transcription(dtype, hidden, output, training, m):
    sizes = [3, 32, 24, 4] if output != "sigmoid" else [3, 32, 24, 2]
    model = MLP(sizes, hidden=hidden, output=output, dtype=dtype, seed=5, alpha=0.1, batch_norm=True)
    _randomize(model, 1)
    X, Y = _problem(sizes, output, m, dtype, seed=1)
    before = {k: v.copy() for k, v in model.buffers.items()}
    ref_cost, ref, stats = reference_batch_norm(model, X, Y, training, alpha=0.1)
    cost, grads = model.loss_and_grad(X, Y, training=training)
    assert list(grads) == ["W1", "gamma1", "beta1", "W2", "gamma2", "beta2", "W3", "b3"]
    tol = 2e-4 if dtype == np.float32 else 1e-10
    assert cost == pytest.approx(ref_cost, rel=tol, abs=tol)
    for name, g in grads.items():
        scale = max(1.0, float(np.abs(ref[name]).max()))
        np.testing.assert_allclose(g, ref[name], rtol=tol * 10, atol=tol * scale, err_msg=name)
    if training:  # the running statistics moved towards the batch's, with momentum 0.1
        for l, (mu, var) in enumerate(stats, start=1):
            want_mean = 0.1 * mu + 0.9 * before[f"running_mean{l}"]
            want_var = 0.1 * var + 0.9 * before[f"running_var{l}"]
            np.testing.assert_allclose(model.buffers[f"running_mean{l}"], want_mean, rtol=tol, atol=tol)
            np.testing.assert_allclose(model.buffers[f"running_var{l}"], want_var, rtol=tol, atol=tol)
    else:
        for k, v in model.buffers.items():
            np.testing.assert_array_equal(v, before[k], err_msg=k)


def _torch_net(torch, model, momentum=0.1, eps=1e-5):
    """nn.Linear(bias=False) + nn.BatchNorm1d + activation per hidden layer, as the model."""
    nn = torch.nn
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity}
    L = len(model.layer_sizes) - 1
    layers = []
    for l in range(1, L + 1):
        n_in, n_out = model.layer_sizes[l - 1], model.layer_sizes[l]
        lin = nn.Linear(n_in, n_out, bias=l == L).double()
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(model.params[f"W{l}"].T.astype(np.float64)))
            if l == L:
                lin.bias.copy_(torch.tensor(model.params[f"b{l}"].astype(np.float64)))
        layers.append(lin)
        if l < L:
            bn = nn.BatchNorm1d(n_out, momentum=momentum, eps=eps).double()
            with torch.no_grad():
                bn.weight.copy_(torch.tensor(model.params[f"gamma{l}"].astype(np.float64)))
                bn.bias.copy_(torch.tensor(model.params[f"beta{l}"].astype(np.float64)))
                bn.running_mean.copy_(torch.tensor(model.buffers[f"running_mean{l}"].astype(np.float64)))
                bn.running_var.copy_(torch.tensor(model.buffers[f"running_var{l}"].astype(np.float64)))
            layers += [bn, acts[model.activations[l - 1]]()]
    return nn.Sequential(*layers)


def _torch_grads(net, L):
    """The torch net's gradients under the model's names."""
    out, lin = {}, [m for m in net if m.__class__.__name__ == "Linear"]
    bns = [m for m in net if m.__class__.__name__ == "BatchNorm1d"]
    for l in range(1, L + 1):
        out[f"W{l}"] = lin[l - 1].weight.grad.numpy().T
        if l < L:
            out[f"gamma{l}"], out[f"beta{l}"] = bns[l - 1].weight.grad.numpy(), bns[l - 1].bias.grad.numpy()
        else:
            out[f"b{l}"] = lin[l - 1].bias.grad.numpy()
    return out


@pytest.mark.parametrize("hidden", ["relu", "tanh", "sigmoid", "identity"])
@pytest.mark.parametrize("training", [True, False])
def test_gradients_and_running_statistics_match_torch(hidden, training):
    torch = pytest.importorskip("torch", reason="torch autograd is the second reference")
    sizes = [3, 6, 5, 3]
    model = MLP(sizes, hidden=hidden, output="softmax", dtype=np.float64, seed=4, batch_norm=True)
    _randomize(model, 2)
    X, Y = _problem(sizes, "softmax", 13, np.float64, seed=5)
    net = _torch_net(torch, model)
    net.train(training)
    J = torch.nn.functional.cross_entropy(net(torch.tensor(X)), torch.tensor(Y))
    J.backward()
    cost, grads = model.loss_and_grad(X, Y, training=training)
    assert cost == pytest.approx(J.item(), rel=1e-12)
    for k, v in _torch_grads(net, 3).items():
        np.testing.assert_allclose(grads[k], v, rtol=1e-9, atol=1e-12, err_msg=k)
    bns = [m for m in net if m.__class__.__name__ == "BatchNorm1d"]
    for l, bn in enumerate(bns, start=1):
        np.testing.assert_allclose(model.buffers[f"running_mean{l}"], bn.running_mean.numpy(), rtol=1e-13)
        np.testing.assert_allclose(model.buffers[f"running_var{l}"], bn.running_var.numpy(), rtol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_with_sgd_follows_torch_for_several_steps(dtype):
    """Ten SGD steps on batches of 32 (momentum 0.3, eps 1e-3): parameters, running statistics
    and the predictions in eval mode follow torch's to float rounding."""
    torch = pytest.importorskip("torch", reason="torch's BatchNorm1d is the reference")
    sizes = [4, 16, 8, 1]
    model = MLP(
        sizes, hidden="tanh", output="sigmoid", dtype=dtype, seed=3, batch_norm=True,
        batch_norm_momentum=0.3, batch_norm_eps=1e-3,
    )  # fmt: skip
    X, Y = _problem(sizes, "sigmoid", 320, dtype, seed=8)
    net = _torch_net(torch, model, momentum=0.3, eps=1e-3)
    opt_t = torch.optim.SGD(net.parameters(), lr=0.1)
    opt = fo.SGD(model.params, lr=0.1)
    h = model.fit(X, Y, opt, batch_size=32, epochs=1, shuffle=False)
    net.train()
    for j in range(10):
        xb, yb = (
            torch.tensor(X[32 * j : 32 * j + 32].astype(np.float64)),
            torch.tensor(Y[32 * j : 32 * j + 32].astype(np.float64)),
        )
        opt_t.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xb), yb)
        loss.backward()
        opt_t.step()
        assert h.costs[j] == pytest.approx(loss.item(), rel=1e-4 if dtype == np.float32 else 1e-11)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    bns = [m for m in net if m.__class__.__name__ == "BatchNorm1d"]
    for l, bn in enumerate(bns, start=1):
        np.testing.assert_allclose(
            model.buffers[f"running_mean{l}"], bn.running_mean.numpy(), rtol=tol, atol=tol
        )
        np.testing.assert_allclose(
            model.buffers[f"running_var{l}"], bn.running_var.numpy(), rtol=tol, atol=tol
        )
    net.eval()
    with torch.no_grad():
        want = torch.sigmoid(net(torch.tensor(X.astype(np.float64)))).numpy()
    np.testing.assert_allclose(model.forward(X), want, rtol=tol * 10, atol=tol)


def test_predict_forward_and_cost_use_the_running_statistics():
    sizes = [4, 12, 3]
    model = MLP(sizes, output="softmax", dtype=np.float64, seed=1, batch_norm=True)
    _randomize(model, 3)
    X, Y = _problem(sizes, "softmax", 40, np.float64, seed=4)
    p, b = model.params, model.buffers
    s = p["gamma1"] / np.sqrt(b["running_var1"] + 1e-5)
    z = np.maximum((X @ p["W1"] - b["running_mean1"]) * s + p["beta1"], 0) @ p["W2"] + p["b2"]
    prob = np.exp(z - z.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.forward(X), prob, rtol=1e-12)
    np.testing.assert_array_equal(model.predict(X), np.argmax(model.forward(X), axis=1))
    assert model.cost(X, Y) == pytest.approx(-np.log(prob[np.arange(40), Y]).mean(), rel=1e-12)
    # One row predicts (inference needs no batch), and the same as in a batch of 40.
    np.testing.assert_allclose(model.forward(X[:1]), model.forward(X)[:1], rtol=1e-13)
    # The running statistics change the predictions; training does not until they do.
    before = model.forward(X)
    model.buffers["running_mean1"] += 1.0
    assert not np.allclose(model.forward(X), before)


def _python_loop(model, opt, X, Y, epochs, **kw):
    """The loop fit equals: each batch in training mode, then the optimizer's step."""
    batches = fo.MiniBatches(X, Y, **kw)
    costs = []
    for e in range(epochs):
        for j, (Xb, Yb) in enumerate(batches):
            c, g = model.loss_and_grad(Xb, Yb, dropout_key=(e, j), training=True)
            costs.append(c)
            opt.step(g)
    return np.array(costs)


CASES = [
    ([2, 32, 32, 1], "relu", "sigmoid", np.float32, 1000, 64, 0.0),
    ([6, 16, 4], "tanh", "softmax", np.float64, 333, 50, 0.3),
    ([4, 32, 16, 4], "sigmoid", "identity", np.float32, 6000, 6000, 0.0),  # blocks without BN
    ([2, 64, 64, 1], "leaky_relu", "sigmoid", np.float64, 3000, 1100, 0.2),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("sizes,hidden,output,dtype,m,batch,rate", CASES)
def test_fit_equals_the_python_loop_bit_for_bit(threads, sizes, hidden, output, dtype, m, batch, rate):
    before = fo.get_num_threads()
    fo.set_num_threads(threads)
    try:
        X, Y = _problem(sizes, output, m, dtype, seed=7)
        kw = dict(
            hidden=hidden, output=output, dtype=dtype, seed=3, alpha=1e-3, dropout=rate, batch_norm=True
        )
        a, b = MLP(sizes, **kw), MLP(sizes, **kw)
        oa, ob = fo.Adam(a.params, lr=1e-2), fo.Adam(b.params, lr=1e-2)
        h = a.fit(X, Y, oa, batch_size=batch, epochs=2, seed=11)
        costs = _python_loop(b, ob, X, Y, 2, batch_size=batch, seed=11)
        np.testing.assert_array_equal(h.costs, costs)
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
        for k in a.buffers:
            np.testing.assert_array_equal(a.buffers[k], b.buffers[k], err_msg=k)
    finally:
        fo.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_same_bits_at_every_thread_count(dtype):
    sizes = [5, 160, 96, 3]
    X, Y = _problem(sizes, "softmax", 20_000, dtype, seed=2)  # tiles and row blocks
    before = fo.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            fo.set_num_threads(threads)
            model = MLP(sizes, hidden="tanh", output="softmax", dtype=dtype, seed=4, batch_norm=True)
            cost, grads = model.loss_and_grad(X, Y, training=True)
            runs.append((cost, {k: g.copy() for k, g in grads.items()}))
            opt = fo.SGD(model.params, lr=0.1)
            h = model.fit(X, Y, opt, batch_size=4096, epochs=1, drop_last=True)
            state = {**model.params, **model.buffers}
            runs[-1] += (h.costs, {k: v.copy() for k, v in state.items()}, model.forward(X))
    finally:
        fo.set_num_threads(before)
    cost, grads, costs, state, out = runs[1]
    assert cost == runs[0][0]
    np.testing.assert_array_equal(costs, runs[0][2])
    np.testing.assert_array_equal(out, runs[0][4])
    for k in grads:
        np.testing.assert_array_equal(grads[k], runs[0][1][k], err_msg=k)
    for k in state:
        np.testing.assert_array_equal(state[k], runs[0][3][k], err_msg=k)


def test_a_run_resumed_mid_epoch_equals_one_never_stopped():
    sizes = [3, 12, 12, 3]
    X, Y = _problem(sizes, "softmax", 600, np.float64, seed=9)
    kw = dict(output="softmax", dtype=np.float64, batch_norm=True, dropout=0.2)
    full = MLP(sizes, seed=2, **kw)
    of = fo.Adam(full.params, lr=3e-3)
    hf = full.fit(X, Y, of, batch_size=50, epochs=2)

    first = MLP(sizes, seed=2, **kw)
    o1 = fo.Adam(first.params, lr=3e-3)
    h1 = first.fit(X, Y, o1, batch_size=50, epochs=2, max_steps=17)  # stops in epoch 1
    ckpt_model, ckpt_opt = pickle.loads(pickle.dumps((first.state_dict(), o1.state_dict())))

    resumed = MLP(sizes, seed=99, **kw)
    o2 = fo.Adam(resumed.params, lr=3e-3)
    resumed.load_state_dict(ckpt_model)
    o2.load_state_dict(ckpt_opt)
    h2 = resumed.fit(X, Y, o2, batch_size=50, epochs=1)
    np.testing.assert_array_equal(hf.costs, np.concatenate([h1.costs, h2.costs]))
    for k in full.params:
        np.testing.assert_array_equal(full.params[k], resumed.params[k])
    for k in full.buffers:
        np.testing.assert_array_equal(full.buffers[k], resumed.buffers[k])


def test_state_dict_pickle_deepcopy_and_save_load_keep_the_running_statistics(tmp_path):
    sizes = [3, 8, 6, 2]
    X, Y = _problem(sizes, "softmax", 200, np.float32, seed=1)
    model = MLP(
        sizes, output="softmax", seed=1, batch_norm=True, batch_norm_momentum=0.2, batch_norm_eps=1e-4
    )
    opt = fo.Adam(model.params, lr=1e-2)
    model.fit(X, Y, opt, batch_size=32, epochs=2)
    sd = model.state_dict()
    assert set(sd["buffers"]) == {"running_mean1", "running_var1", "running_mean2", "running_var2"}
    assert sd["batch_norm"] == [0.2, 1e-4]
    other = MLP(
        sizes, output="softmax", seed=7, batch_norm=True, batch_norm_momentum=0.2, batch_norm_eps=1e-4
    )
    other.load_state_dict(sd)
    model.save(tmp_path / "m.npz", optimizer=opt)
    for copy_ in (
        other,
        pickle.loads(pickle.dumps(model)),
        copy.deepcopy(model),
        fo.nn.load(tmp_path / "m.npz"),
    ):
        assert copy_.batch_norm and copy_.batch_norm_momentum == 0.2 and copy_.batch_norm_eps == 1e-4
        np.testing.assert_array_equal(copy_.forward(X), model.forward(X))
        for k in model.buffers:
            np.testing.assert_array_equal(copy_.buffers[k], model.buffers[k], err_msg=k)
    # A state_dict of another batch norm is refused before anything changes.
    plain = MLP(sizes, output="softmax", seed=1)
    with pytest.raises(ValueError, match="batch_norm"):
        plain.load_state_dict(sd)
    eps = MLP(sizes, output="softmax", seed=1, batch_norm=True)
    kept = {k: v.copy() for k, v in eps.params.items()}
    with pytest.raises(ValueError, match="batch_norm"):
        eps.load_state_dict(sd)
    for k in kept:
        np.testing.assert_array_equal(eps.params[k], kept[k])


def test_gradient_check_covers_gamma_and_beta():
    sizes = [3, 5, 4, 2]
    model = MLP(sizes, hidden="tanh", output="softmax", seed=2, batch_norm=True)
    _randomize(model, 4)
    X, Y = _problem(sizes, "softmax", 9, np.float32, seed=3)
    diffs = model.gradient_check(X, Y)
    assert set(diffs) == set(model.params) and {"gamma1", "beta2"} <= set(diffs)
    assert max(diffs.values()) < 1e-6, diffs


def test_every_optimizer_and_a_distributed_one_train_gamma_and_beta():
    sizes = [3, 8, 2]
    X, Y = _problem(sizes, "softmax", 128, np.float32, seed=5)
    for make in (
        lambda p: fo.SGD(p, lr=0.1, momentum=0.9),
        lambda p: fo.RMSprop(p, lr=1e-2),
        lambda p: fo.AdamW(p, lr=1e-2),
    ):
        model = MLP(sizes, output="softmax", seed=1, batch_norm=True)
        gamma = model.params["gamma1"].copy()
        model.fit(X, Y, make(model.params), batch_size=32, epochs=1)
        assert not np.array_equal(model.params["gamma1"], gamma)
    pytest.importorskip("mpi4py", reason="DistributedOptimizer runs on MPI")
    from ferroptim.distributed import DistributedOptimizer

    model = MLP(sizes, output="softmax", seed=1, batch_norm=True)
    opt = DistributedOptimizer(fo.Adam(model.params, lr=1e-2))  # one process: averages over 1
    beta = model.params["beta1"].copy()
    model.fit(X, Y, opt, batch_size=32, epochs=1)
    assert not np.array_equal(model.params["beta1"], beta)


def test_onnx_folds_batch_norm_into_the_dense_layers():
    ort = pytest.importorskip("onnxruntime", reason="the ONNX test runs the graph with onnxruntime")
    pytest.importorskip("onnx", reason="MLP.to_onnx builds the graph with onnx")
    for dtype in (np.float32, np.float64):
        model = MLP(
            [4, 7, 5, 3], hidden="relu", output="softmax", dtype=dtype, seed=1, batch_norm=True, dropout=0.3
        )
        _randomize(model, 5)
        X = np.random.default_rng(0).standard_normal((50, 4)).astype(dtype)
        proto = model.to_onnx()
        assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node)
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        (out,) = sess.run(None, {"X": X})
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(out, model.forward(X), rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "kw,error,match",
    [
        (dict(batch_norm=1), TypeError, "batch_norm must be True or False"),
        (dict(batch_norm=True, batch_norm_momentum=1.5), ValueError, "batch_norm_momentum"),
        (dict(batch_norm=True, batch_norm_momentum="0.1"), TypeError, "batch_norm_momentum"),
        (dict(batch_norm=True, batch_norm_eps=0.0), ValueError, "batch_norm_eps"),
        (dict(batch_norm=True, batch_norm_eps=float("nan")), ValueError, "batch_norm_eps"),
    ],
)
def test_bad_arguments_are_refused(kw, error, match):
    with pytest.raises(error, match=match):
        MLP([3, 4, 2], **kw)


def test_no_hidden_layer_and_batches_of_one_row_are_refused_before_anything_changes():
    with pytest.raises(ValueError, match="at least one hidden layer"):
        MLP([3, 2], batch_norm=True)
    sizes = [3, 4, 2]
    model = MLP(sizes, output="softmax", seed=1, batch_norm=True)
    X, Y = _problem(sizes, "softmax", 33, np.float32, seed=1)
    state = {k: v.copy() for k, v in {**model.params, **model.buffers}.items()}
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        model.loss_and_grad(X[:1], Y[:1], training=True)
    opt = fo.Adam(model.params, lr=0.1)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        model.fit(X, Y, opt, batch_size=16)  # 33 = 2 * 16 + 1: the last batch holds one row
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        model.fit(X, Y, opt, batch_size=1)
    with pytest.raises(TypeError, match="training must be True or False"):
        model.loss_and_grad(X, Y, training="yes")
    for k, v in {**model.params, **model.buffers}.items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)
    assert model.epoch == 0 and opt.state_dict()["state"] == {}
    # drop_last leaves the row out; one row in inference is fine.
    model.fit(X, Y, opt, batch_size=16, drop_last=True)
    model.loss_and_grad(X[:1], Y[:1])
    assert model.forward(X[:1]).shape == (1, 2)
    model.buffers["running_var1"] = np.ones(5, np.float32)
    with pytest.raises(ValueError, match="running_var1"):
        model.forward(X)
