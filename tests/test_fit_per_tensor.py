"""MLP.fit with the per-tensor optimizers (Adafactor, Muon, schedule-free) and with several
optimizers together (Muon for the weight matrices, AdamW for the biases, as torch advises):
the Python loop over MiniBatches bit for bit; what is refused, before anything changes."""

from __future__ import annotations

import numpy as np
import pytest

import ferroptim as fo


def _data(m=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, 5))
    return X, (X[:, 0] * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)


def _model(seed=4):
    return fo.nn.MLP([5, 12, 8, 3], hidden=["relu", "tanh"], output="softmax", dtype=np.float64, seed=seed)


def _split(model):
    matrices = {k: v for k, v in model.params.items() if v.ndim == 2}
    return matrices, {k: v for k, v in model.params.items() if v.ndim != 2}


def _loop(model, optimizers, X, Y, epochs, batch_size, seed):
    """The Python loop fit stands for: each batch's gradients, each optimizer stepping its
    own parameters."""
    name_of = {id(v): k for k, v in model.params.items()}
    costs = []
    batches = fo.MiniBatches(X, Y, batch_size=batch_size, seed=seed)
    for _ in range(epochs):
        for Xb, Yb in batches:
            c, g = model.loss_and_grad(Xb, Yb)
            costs.append(c)
            for o in optimizers:
                o.step([g[name_of[id(a)]] for a in o._arrays()])
    return costs


MAKERS = {
    "Adafactor": lambda m: [fo.Adafactor(m.params, lr=0.05)],
    "Muon+AdamW": lambda m: [fo.Muon(_split(m)[0], lr=0.02), fo.AdamW(_split(m)[1], lr=1e-2)],
    "AdamW+Adafactor": lambda m: [fo.AdamW(_split(m)[1], lr=1e-2), fo.Adafactor(_split(m)[0])],
}


@pytest.mark.parametrize("name", MAKERS)
def test_fit_is_the_python_loop_bit_for_bit(name):
    X, Y = _data()
    a, b = _model(), _model()
    ours, theirs = MAKERS[name](a), MAKERS[name](b)
    before = a.cost(X, Y)
    hist = a.fit(X, Y, ours if len(ours) > 1 else ours[0], batch_size=32, epochs=3, seed=2)
    costs = _loop(b, theirs, X, Y, 3, 32, 2)
    np.testing.assert_array_equal(hist.costs, costs)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    assert a.cost(X, Y) < 0.9 * before
    # the history's lr is the first optimizer's
    assert list(hist.lr) == [ours[0].param_groups[0]["lr"]] * 3


def test_a_schedule_free_optimizer_with_a_schedule_records_its_rates():
    X, Y = _data()
    model = _model()
    opt = fo.ScheduleFreeAdamW(model.params, lr=lambda k: 0.01 / (1 + k))
    hist = model.fit(X, Y, opt, batch_size=40, epochs=2)
    assert opt.param_groups[0]["k"] == 10
    np.testing.assert_allclose(hist.lr, [0.01 / 5, 0.01 / 10])  # the rate of each epoch's last update


def _state(model, optimizers):
    return {k: v.copy() for k, v in model.params.items()}, [repr(o) for o in optimizers]


def test_bad_lists_are_refused_before_anything_changes():
    X, Y = _data()
    model = _model()
    matrices, rest = _split(model)
    muon = fo.Muon(matrices)
    before = _state(model, [muon])
    with pytest.raises(ValueError, match=r"pass a list: optimizer=\[fo.Muon"):
        model.fit(X, Y, muon, epochs=1)  # the biases have no optimizer
    with pytest.raises(ValueError, match=r"optimizer\[1\]: .*each parameter in exactly one"):
        model.fit(X, Y, [muon, fo.AdamW(model.params)], epochs=1)  # the matrices twice
    with pytest.raises(ValueError, match="built on other arrays"):
        model.fit(X, Y, [muon], epochs=1)
    with pytest.raises(TypeError, match=r"optimizer\[1\] must be a ferroptim optimizer other than LBFGS"):
        model.fit(X, Y, [muon, fo.LBFGS(rest)], epochs=1)
    with pytest.raises(TypeError, match=r"optimizer\[0\] must be"):
        model.fit(X, Y, ["adam", fo.AdamW(rest)], epochs=1)
    with pytest.raises(ValueError, match="an empty list"):
        model.fit(X, Y, [], epochs=1)
    with pytest.raises(ValueError, match=r"param_groups\[0\]: lr"):
        muon.param_groups[0]["lr"] = -1.0
        model.fit(X, Y, [muon, fo.AdamW(rest)], epochs=1)
    muon.param_groups[0]["lr"] = 1e-3  # its default, as before
    after = _state(model, [muon])
    for k in before[0]:
        np.testing.assert_array_equal(before[0][k], after[0][k])
    assert after[1] == before[1] and muon.state == {}
    assert model.epoch == 0 and model.position == 0
