"""ONNX export (issue 31, item 6): the estimators through skl2onnx, the network through
MLP.to_onnx; onnxruntime's predictions equal ferroptim's to float rounding."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.nn import MLP

ort = pytest.importorskip("onnxruntime", reason="the ONNX tests run the graphs with onnxruntime")
pytest.importorskip("onnx", reason="MLP.to_onnx builds the graph with onnx")


def _run(proto, X):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden", [*fo.nn.HIDDEN, ["tanh", "leaky_relu"], ["sigmoid", "relu"]])
@pytest.mark.parametrize("output", fo.nn.OUTPUTS)
def test_the_network_in_onnxruntime_equals_forward(dtype, hidden, output):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4)).astype(dtype)
    model = MLP([4, 7, 5, 3], hidden=hidden, output=output, dtype=dtype, seed=1)
    for p in model.params.values():  # non-zero biases too
        p[...] = rng.standard_normal(p.shape).astype(dtype) * 0.7
    (out,) = _run(model.to_onnx(), X)
    assert out.dtype == dtype and out.shape == (50, 3)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(out, model.forward(X), rtol=tol, atol=tol)


def test_to_onnx_without_onnx_says_which_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install ferroptim\[onnx\]"):
        MLP([2, 1]).to_onnx()


# -- the estimators -----------------------------------------------------------------------------


@pytest.fixture
def skl2onnx():
    mod = pytest.importorskip("skl2onnx", reason="the estimators convert through skl2onnx")
    from ferroptim.sklearn import register_onnx_converters

    register_onnx_converters()
    return mod


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of the short fits
        return est.fit(X, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("labels", ["binary", "multiclass", "strings"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_the_classifier_through_skl2onnx(skl2onnx, dtype, labels, activation):
    from ferroptim.sklearn import MLPClassifier

    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 4)).astype(dtype)
    y = {
        "binary": (X[:, 0] > 0).astype(np.int64),
        "multiclass": np.digitize(X[:, 0], [-0.5, 0.5]),
        "strings": np.where(X[:, 1] > 0, "yes", "no"),
    }[labels]
    clf = _fit(
        MLPClassifier(hidden_layer_sizes=(6, 5), activation=activation, max_iter=5, random_state=0), X, y
    )
    onx = skl2onnx.to_onnx(clf, X[:1], options={id(clf): {"zipmap": False}})
    label, proba = _run(onx, X)
    np.testing.assert_array_equal(label, clf.predict(X))
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_outputs", [1, 2])
@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_the_regressor_through_skl2onnx(skl2onnx, dtype, n_outputs, loss):
    from ferroptim.sklearn import MLPRegressor

    rng = np.random.default_rng(1)
    X = rng.standard_normal((100, 3)).astype(dtype)
    y = np.stack([X[:, 0] * 2 - X[:, 1], X[:, 2] ** 2], axis=1)[:, :n_outputs].squeeze()
    if loss == "poisson":
        y = np.abs(y)
    est = MLPRegressor(loss=loss, hidden_layer_sizes=(8,), activation="tanh", max_iter=5, random_state=0)
    reg = _fit(est, X, y)
    assert reg.out_activation_ == ("exp" if loss == "poisson" else "identity")
    (out,) = _run(skl2onnx.to_onnx(reg, X[:1]), X)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out.reshape(reg.predict(X).shape), reg.predict(X), rtol=tol, atol=tol)


def test_registration_without_skl2onnx_says_which_extra(monkeypatch):
    pytest.importorskip("sklearn", reason="the estimators need scikit-learn")
    import ferroptim.sklearn.onnx as fonnx

    monkeypatch.setattr(fonnx, "_registered", False)
    monkeypatch.setitem(sys.modules, "skl2onnx", None)
    with pytest.raises(ImportError, match=r"pip install ferroptim\[onnx\]"):
        fonnx.register_onnx_converters()
