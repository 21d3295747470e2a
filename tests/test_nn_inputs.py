"""Inputs as users have them (issue 31, item 5): X of another real dtype converted to the
model's with one copy; non-numeric X refused; ``progress=True`` without tqdm warns; the
progress bar counts updates."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.nn import MLP


def _data(m=40, n=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n))
    y = (X[:, 0] > 0).astype(np.int64)
    return X, y


@pytest.mark.parametrize("kind", ["float64", "int64", "bool", "float64-F"])
def test_other_real_dtypes_train_and_predict_as_the_converted_array(kind):
    X64, y = _data()
    X = {"float64": X64, "int64": np.round(X64 * 3).astype(np.int64), "bool": X64 > 0}.get(
        kind, np.asfortranarray(X64)
    )
    X32 = np.asarray(X).astype(np.float32)
    a, b = (MLP([3, 5, 1], output="sigmoid", seed=1) for _ in range(2))
    ha = a.fit(X, y, fo.Adam(a.params, lr=1e-2), batch_size=8, epochs=2)
    hb = b.fit(X32, y, fo.Adam(b.params, lr=1e-2), batch_size=8, epochs=2)
    np.testing.assert_array_equal(ha.costs, hb.costs)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    np.testing.assert_array_equal(a.forward(X), b.forward(X32))
    assert a.cost(X, y) == b.cost(X32, y)
    assert a.loss_and_grad(X, y)[0] == b.loss_and_grad(X32, y)[0]
    # validation data converts too
    a.fit(X, y, fo.Adam(a.params), validation_data=(X, y))


def test_transposed_float64_converts():
    X, y = _data()
    a, b = (MLP([3, 4, 1], seed=2) for _ in range(2))
    ha = a.fit(X.T, y, fo.SGD(a.params, lr=0.1), batch_size=16, axis=1)
    hb = b.fit(X.T.astype(np.float32), y, fo.SGD(b.params, lr=0.1), batch_size=16, axis=1)
    np.testing.assert_array_equal(ha.costs, hb.costs)


def test_a_float32_array_is_not_copied():
    X, _ = _data()
    X = X.astype(np.float32)
    model = MLP([3, 2, 1])
    assert model._check_X(X) is X


@pytest.mark.parametrize(
    "X,match",
    [
        (np.ones((4, 3), np.complex128), "X has dtype complex128, expected real numbers"),
        (np.full((4, 3), "a"), "X has dtype <U1, expected real numbers"),
        (np.full((4, 3), None, dtype=object), "X has dtype object, expected real numbers"),
    ],
)
def test_non_numeric_X_is_refused_before_anything_changes(X, match):
    model = MLP([3, 2, 1], seed=0)
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(TypeError, match=match):
        model.fit(X, np.zeros(4), fo.Adam(model.params))
    with pytest.raises(TypeError, match=match):
        model.predict(X)
    for k in before:
        np.testing.assert_array_equal(before[k], model.params[k])
    assert model.epoch == 0


def test_progress_without_tqdm_warns(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import tqdm.auto raises ImportError
    X, y = _data()
    model = MLP([3, 2, 1], seed=0)
    with pytest.warns(UserWarning, match=r"pip install ferroptim\[demo\]") as record:
        model.fit(X, y, fo.Adam(model.params), epochs=3, progress=True)
    assert len(record) == 1 and record[0].filename == __file__
    assert model.epoch == 3


def test_the_progress_bar_counts_updates(monkeypatch):
    tqdm_auto = pytest.importorskip("tqdm.auto", reason="the progress bar is tqdm's")
    bars = []

    class Bar:
        def __init__(self, total, unit):
            self.total, self.unit, self.n, self.steps = total, unit, 0, []
            bars.append(self)

        def update(self, n):
            self.n += n
            self.steps.append(n)

        def set_postfix(self, **kw):
            self.postfix = kw

        def close(self):
            pass

    monkeypatch.setattr(tqdm_auto, "tqdm", Bar)
    X, y = _data(m=40)
    model = MLP([3, 2, 1], seed=0)
    model.fit(X, y, fo.Adam(model.params), batch_size=8, epochs=2, steps_per_execution=2, progress=True)
    (bar,) = bars
    assert (bar.total, bar.unit, bar.n) == (10, "update", 10)
    assert bar.steps == [2, 2, 1] * 2 and bar.postfix["epoch"] == 2
    model.fit(X, y, fo.Adam(model.params), batch_size=8, epochs=3, max_steps=7, progress=True)
    assert (bars[1].total, bars[1].n) == (7, 7)
