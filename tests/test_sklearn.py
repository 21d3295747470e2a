"""ferroptim.sklearn: scikit-learn's conformance suite, quality against scikit-learn's own
estimators (within their seed-to-seed spread), determinism, pickling and the meta-estimators."""

import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits, make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import ferroptim as fo  # noqa: E402
from ferroptim.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# Training cut short on purpose (a few epochs) warns that it has not converged.
CUT_SHORT = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _expected_failures(estimator):
    # scikit-learn's own MLPClassifier(solver="lbfgs") fails this check the same way: trained
    # to convergence on the check's tiny set, sigmoid outputs round to exactly 1.0.
    if estimator.solver == "lbfgs" and isinstance(estimator, MLPClassifier):
        return {
            "check_classifiers_multilabel_output_format_predict_proba": "probabilities of exactly 1.0, "
            "as scikit-learn's own lbfgs MLPClassifier gives"
        }
    return {}


@parametrize_with_checks(
    [MLPClassifier(random_state=0), MLPRegressor(random_state=0)],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_conformance(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# The same checks on the lbfgs solver (half of the checks' time: `make test` runs them,
# `make test-fast` leaves them out).
@pytest.mark.slow
@parametrize_with_checks(
    [MLPClassifier(solver="lbfgs", random_state=0), MLPRegressor(solver="lbfgs", random_state=0)],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_conformance_lbfgs(estimator, check):
    test_sklearn_conformance(estimator, check)


def _digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.3, random_state=0)


def _cancer():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    return train_test_split(X, y, test_size=0.3, random_state=0)


def _regression():
    X, y = make_regression(n_samples=2000, n_features=10, noise=10.0, random_state=0)
    return train_test_split(X, y / y.std(), test_size=0.3, random_state=0)


def _classification():
    X, y = make_classification(n_samples=200_000, n_features=20, n_informative=10, random_state=0)
    return train_test_split(X, y, test_size=0.3, random_state=0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "data, ours, theirs, params",
    [
        (_digits, MLPClassifier, SkMLPClassifier, dict(max_iter=30)),
        (_cancer, MLPClassifier, SkMLPClassifier, dict(max_iter=30)),
        (_classification, MLPClassifier, SkMLPClassifier, dict(max_iter=5, hidden_layer_sizes=(64,))),
        (_regression, MLPRegressor, SkMLPRegressor, dict(max_iter=40, hidden_layer_sizes=(32,))),
        (_digits, MLPClassifier, SkMLPClassifier, dict(max_iter=30, solver="sgd", learning_rate_init=0.05)),
    ],
)
def test_quality_within_sklearn_seed_spread(data, ours, theirs, params):
    """Held-out accuracy / R^2 over 5 seeds: our mean lies within scikit-learn's mean +- 3
    standard deviations (plus 0.01 for a spread of 0 on easy sets), same hyper-parameters."""
    Xt, Xv, yt, yv = data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = [ours(random_state=s, **params).fit(Xt, yt).score(Xv, yv) for s in range(5)]
        b = [theirs(random_state=s, **params).fit(Xt, yt).score(Xv, yv) for s in range(5)]
    spread = 3 * np.std(b) + 0.01
    assert np.mean(a) >= np.mean(b) - spread, (a, b)


@CUT_SHORT
def test_loss_matches_sklearn_definition():
    """loss_ is scikit-learn's: batch costs (log-loss + alpha/(2m) ||W||^2) weighted by batch size."""
    Xt, Xv, yt, yv = _digits()
    clf = MLPClassifier(max_iter=1, random_state=0, batch_size=100).fit(Xt, yt)
    sk = SkMLPClassifier(max_iter=1, random_state=0, batch_size=100).fit(Xt, yt)
    # Same Glorot initialisation as scikit-learn, hence the same first-epoch loss to a few percent.
    assert abs(clf.loss_ - sk.loss_) / sk.loss_ < 0.05
    assert clf.loss_curve_ == [clf.loss_] and clf.n_iter_ == 1 and clf.t_ == len(Xt)


@CUT_SHORT
def test_deterministic_whatever_the_thread_count():
    X, y = make_classification(n_samples=3000, n_features=30, random_state=1)
    n = fo.get_num_threads()
    try:
        fo.set_num_threads(1)
        a = MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=3, random_state=7).fit(X, y)
        fo.set_num_threads(max(2, n))
        b = MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=3, random_state=7).fit(X, y)
    finally:
        fo.set_num_threads(n)
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(u, v)
    assert a.loss_curve_ == b.loss_curve_
    c = MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=3, random_state=8).fit(X, y)
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])


@pytest.mark.parametrize("binary", [True, False])
def test_pickle_clone_and_partial_fit_after_unpickling(binary):
    Xt, Xv, yt, yv = _digits()
    if binary:
        yt, yv = yt % 2, yv % 2
    unfitted = MLPClassifier(hidden_layer_sizes=(20,), random_state=0)
    assert pickle.loads(pickle.dumps(unfitted)).get_params() == unfitted.get_params()
    clf = clone(unfitted).partial_fit(Xt, yt, classes=np.unique(yt))
    twin = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(twin.predict_proba(Xv), clf.predict_proba(Xv))
    clf.partial_fit(Xt, yt)
    twin.partial_fit(Xt, yt)  # optimizer state and shuffle position travel with the pickle
    np.testing.assert_array_equal(twin.predict_proba(Xv), clf.predict_proba(Xv))
    assert clf.n_iter_ == twin.n_iter_ == 2


def test_pipeline_gridsearch_cross_val_score():
    Xt, Xv, yt, yv = _cancer()
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=20, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(pipe, Xt, yt, cv=3)
        grid = GridSearchCV(pipe, {"mlpclassifier__solver": ["adam", "rmsprop"]}, cv=2).fit(Xt, yt)
    assert scores.shape == (3,) and scores.min() > 0.85
    assert grid.best_params_["mlpclassifier__solver"] in ("adam", "rmsprop")
    assert grid.score(Xv, yv) > 0.85


def test_ferroptim_solvers_schedules_and_batch_schedule():
    Xt, Xv, yt, yv = _digits()
    from functools import partial

    from ferroptim.schedules import ExponentialDecay

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for solver in ["rmsprop", "momentum", "adamw", "nadam", fo.AdamW, partial(fo.RMSprop, alpha=0.9)]:
            lr = 0.1 if solver == "momentum" else 1e-3
            clf = MLPClassifier(solver=solver, learning_rate_init=lr, max_iter=15, random_state=0).fit(Xt, yt)
            assert clf.score(Xv, yv) > 0.85, solver
        sched = ExponentialDecay(1e-2, 0.5, decay_steps=100)
        clf = MLPClassifier(learning_rate=sched, max_iter=15, random_state=0).fit(Xt, yt)
        assert clf._optimizer.param_groups[0]["lr"] is sched and clf.score(Xv, yv) > 0.85
        sizes = []

        def batch_size(epoch):
            sizes.append(epoch)
            return 32 if epoch < 3 else 512

        clf = MLPClassifier(batch_size=batch_size, max_iter=6, random_state=0).fit(Xt, yt)
        assert sizes == list(range(6))
        # 3 epochs of ceil(1257/32) updates then 3 of ceil(1257/512)
        assert clf._optimizer.state["W1"]["step"] == 3 * 40 + 3 * 3


def test_sgd_learning_rate_schedules_follow_sklearn():
    Xt, Xv, yt, yv = _digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        inv = MLPClassifier(solver="sgd", learning_rate="invscaling", power_t=0.5, max_iter=3, random_state=0)
        inv.fit(Xt, yt)
        assert inv._optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 / (2 * len(Xt) + 1) ** 0.5)
        ada = MLPClassifier(solver="sgd", learning_rate="adaptive", tol=10.0, n_iter_no_change=1, max_iter=5)
        ada.fit(Xt, yt)  # nothing improves by tol=10: count 0, 1, 2 (>1: lr / 5), 1, 2 (lr / 5)
        assert ada._learning_rate == pytest.approx(1e-3 / 25) and ada.n_iter_ == 5
        # adam ignores learning_rate="adaptive", as in scikit-learn: it stops instead
        adam = MLPClassifier(learning_rate="adaptive", tol=10.0, n_iter_no_change=1, max_iter=10).fit(Xt, yt)
        assert adam.n_iter_ == 3


def test_early_stopping_keeps_best_validation_weights():
    Xt, Xv, yt, yv = _digits()
    clf = MLPClassifier(early_stopping=True, n_iter_no_change=3, max_iter=200, random_state=0).fit(Xt, yt)
    assert clf.n_iter_ < 200 and len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_) and clf.best_loss_ is None
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        clf.partial_fit(Xt, yt)


@CUT_SHORT
def test_warm_start_may_switch_early_stopping_either_way():
    # scikit-learn 1.9 fails here (None.append, None - float): the record of the new mode
    # starts at the warm start.
    Xt, _, yt, _ = _digits()
    clf = MLPClassifier(max_iter=3, warm_start=True, random_state=0).fit(Xt, yt)
    clf.set_params(early_stopping=True).fit(Xt, yt)
    assert len(clf.validation_scores_) == 3
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    clf = MLPClassifier(max_iter=3, warm_start=True, early_stopping=True, random_state=0).fit(Xt, yt)
    clf.set_params(early_stopping=False).fit(Xt, yt)
    assert clf.best_loss_ == min(clf.loss_curve_[3:])


@CUT_SHORT
def test_multilabel_and_multioutput():
    X, Y = sklearn.datasets.make_multilabel_classification(n_samples=400, n_classes=4, random_state=0)
    clf = MLPClassifier(max_iter=100, random_state=0).fit(X, Y)
    assert clf.out_activation_ == "logistic" and clf.predict(X).shape == Y.shape
    assert clf.predict_proba(X).shape == Y.shape and clf.score(X, Y) > 0.3
    X, y = make_regression(n_samples=500, n_features=5, n_targets=3, random_state=0)
    reg = MLPRegressor(max_iter=200, learning_rate_init=0.01, random_state=0).fit(X, y / y.std())
    assert reg.predict(X).shape == (500, 3) and reg.n_outputs_ == 3


@CUT_SHORT
def test_errors_and_messages(capsys):
    X, y = load_breast_cancer(return_X_y=True)
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(X)
    with pytest.raises(ValueError, match="loss='poisson' needs targets y >= 0"):
        MLPRegressor(loss="poisson").fit(X, y - 0.5)
    with pytest.raises(ValueError, match="The 'solver' parameter"):
        MLPClassifier(solver="newton").fit(X, y)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MLPClassifier().fit(np.full_like(X, np.nan), y)
    with pytest.raises(TypeError, match="must return an integer"):
        MLPClassifier(batch_size=lambda e: 1.5).fit(X, y)
    with pytest.raises(TypeError, match="ferroptim optimizer"):
        MLPClassifier(solver=lambda params, lr: None).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(2\\) reached"):
        MLPClassifier(max_iter=2, verbose=True).fit(X / X.max(axis=0), y)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 2, loss = " in out
    clf = MLPClassifier(max_iter=5).fit(X / X.max(axis=0), y)
    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 30"):
        clf.predict(X[:, :3])


def test_docstring_examples():
    import doctest

    import ferroptim.sklearn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = doctest.testmod(ferroptim.sklearn, verbose=False)
    assert result.failed == 0 and result.attempted >= 4


@pytest.mark.slow
def test_ferroptim_itself_never_imports_sklearn():
    import subprocess
    import sys

    code = "import sys, ferroptim, ferroptim.nn; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _relu_logistic(X, coefs, intercepts):
    a = X
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        z = a @ W + b
        a = np.maximum(z, 0) if i < len(coefs) - 1 else 1 / (1 + np.exp(-z))
    return a.ravel()


def test_issue29_8_assigned_coefs_and_intercepts_are_used_at_once():
    X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        clf.partial_fit(X, y)  # the estimator now holds a network and an optimizer
    rng = np.random.default_rng(1)
    clf.coefs_ = [rng.normal(size=c.shape) for c in clf.coefs_]
    clf.intercepts_ = [rng.normal(size=b.shape) for b in clf.intercepts_]
    p = _relu_logistic(X, clf.coefs_, clf.intercepts_)
    np.testing.assert_allclose(clf.predict_proba(X)[:, 1], p, rtol=1e-12)
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    # In-place edits too.
    clf.intercepts_[-1][...] += 1.0
    np.testing.assert_allclose(
        clf.predict_proba(X)[:, 1], _relu_logistic(X, clf.coefs_, clf.intercepts_), rtol=1e-12
    )
    copy.intercepts_[-1][...] += 1.0
    # partial_fit and a warm start continue from the assigned weights (and the optimizer's
    # state), as the pickled copy does.
    clf.partial_fit(X, y)
    copy.partial_fit(X, y)
    for a, b in zip(clf.coefs_ + clf.intercepts_, copy.coefs_ + copy.intercepts_):
        np.testing.assert_array_equal(a, b)
    clf.coefs_ = [c * 0.5 for c in clf.coefs_]
    copy.coefs_ = [c * 0.5 for c in copy.coefs_]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.set_params(warm_start=True, max_iter=2).fit(X, y)
        copy = pickle.loads(pickle.dumps(copy))
        copy.set_params(warm_start=True, max_iter=2).fit(X, y)
    for a, b in zip(clf.coefs_ + clf.intercepts_, copy.coefs_ + copy.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_issue29_9_partial_fit_after_a_caught_ctrl_c_is_one_pass_over_its_chunk():
    import _thread
    import threading

    rng = np.random.default_rng(0)
    X = rng.standard_normal((2_000_000, 8))
    y = (X[:, 0] > 0).astype(np.int64)
    timer = threading.Timer(0.5, _thread.interrupt_main)
    armed = []

    def one(epoch):  # a batch size of 1 that starts the Ctrl-C timer once training starts
        if armed and not timer.is_alive() and not timer.finished.is_set():
            timer.start()
        return 1

    clf = MLPClassifier(hidden_layer_sizes=(16,), batch_size=one, random_state=0)
    clf.partial_fit(X[:100], y[:100], classes=[0, 1])
    armed.append(True)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        clf.partial_fit(X, y)  # 2 * 10**6 updates: far longer than 0.5 s
    timer.join()
    assert clf._model.position > 0  # stopped inside the epoch
    steps = clf._optimizer.state_dict()["state"][0]["step"]
    clf.set_params(batch_size=10)
    twin = pickle.loads(pickle.dumps(clf))  # rebuilt from the attributes: no half epoch
    for est in (clf, twin):
        est.partial_fit(X[:95], y[:95])  # a smaller chunk than the interrupted one
        assert est._optimizer.state_dict()["state"][0]["step"] == steps + 10
        assert est._model.position == 0
    # loss_ averages the 10 batches of this chunk, as on the copy that never saw a half epoch.
    assert np.isfinite(clf.loss_) and clf.loss_ == twin.loss_
    for a, b in zip(clf.coefs_ + clf.intercepts_, twin.coefs_ + twin.intercepts_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_lbfgs_follows_scikit_learns_lbfgs(kind):
    # The same initial weights (random_state), the same cost and gradient to float64
    # rounding, and SciPy's L-BFGS-B as scikit-learn runs it: the same path.
    if kind == "classifier":
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        ours, theirs = MLPClassifier, SkMLPClassifier
    else:
        X, y = make_regression(n_samples=400, n_features=10, noise=1.0, random_state=0)
        y = y / y.std()
        ours, theirs = MLPRegressor, SkMLPRegressor
    kw = dict(solver="lbfgs", hidden_layer_sizes=(20,), alpha=1e-3, max_iter=15, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = ours(**kw).fit(X, y)
        b = theirs(**kw).fit(X, y)
    assert a.n_iter_ == b.n_iter_ == 15
    assert a.loss_ == pytest.approx(b.loss_, rel=1e-6)
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(ca, cb, rtol=1e-4, atol=1e-6)
    assert not hasattr(a, "loss_curve_") and not hasattr(b, "loss_curve_")


@pytest.mark.slow  # trains to convergence twice: about 5 s
def test_lbfgs_converges_warns_when_cut_short_and_refuses_partial_fit():
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X / 16.0, y, random_state=0)
    kw = dict(solver="lbfgs", hidden_layer_sizes=(64,), max_iter=300, random_state=0)
    ours = MLPClassifier(**kw).fit(X_tr, y_tr)
    theirs = SkMLPClassifier(**kw).fit(X_tr, y_tr)
    assert ours.score(X_te, y_te) >= theirs.score(X_te, y_te) - 0.02
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge after 3 iteration"):
        MLPClassifier(solver="lbfgs", max_iter=3, random_state=0).fit(X_tr, y_tr)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        short = MLPClassifier(solver="lbfgs", max_fun=5, random_state=0).fit(X_tr, y_tr)
    assert short.n_iter_ <= 5
    with pytest.raises(AttributeError, match="partial_fit"):
        MLPClassifier(solver="lbfgs").partial_fit(X_tr, y_tr, classes=np.arange(10))


@CUT_SHORT
@pytest.mark.parametrize("early_stopping", [False, True])
def test_sample_weight_follows_sklearn(early_stopping):
    X, y = make_classification(n_samples=400, n_features=8, random_state=3)
    kw = dict(hidden_layer_sizes=(16,), max_iter=5, random_state=0, early_stopping=early_stopping)
    plain = MLPClassifier(**kw).fit(X, y)
    ones = MLPClassifier(**kw).fit(X, y, sample_weight=np.ones(len(y)))
    for u, v in zip(plain.coefs_ + plain.intercepts_, ones.coefs_ + ones.intercepts_):
        np.testing.assert_array_equal(u, v)  # weights of 1 are no weights, bit for bit
    w = np.where(y == 1, 5.0, 0.2)
    weighted = MLPClassifier(**kw).fit(X, y, sample_weight=w)
    assert not np.array_equal(weighted.coefs_[0], plain.coefs_[0])
    # Class 1 weighs 25 times class 0: more of the training set is called class 1.
    assert (weighted.predict(X) == 1).mean() > (plain.predict(X) == 1).mean()
    # The regressor and partial_fit take weights too.
    if not early_stopping:
        reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
        reg.fit(X, X[:, 0], sample_weight=w)
        reg.partial_fit(X, X[:, 0], sample_weight=w)
        MLPClassifier(**kw).partial_fit(X, y, sample_weight=w, classes=[0, 1])
    with pytest.raises(ValueError, match="zero"):
        MLPClassifier(**kw).fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match="Negative values"):
        MLPClassifier(**kw).fit(X, y, sample_weight=-np.ones(len(y)))


def test_lbfgs_with_sample_weight_follows_scikit_learns():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    w = np.random.default_rng(0).uniform(0.0, 3.0, len(y))
    kw = dict(solver="lbfgs", hidden_layer_sizes=(16,), max_iter=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(**kw).fit(X, y, sample_weight=w)
        b = SkMLPClassifier(**kw).fit(X, y, sample_weight=w)
        c = MLPClassifier(**kw).fit(X, y)
    assert a.loss_ == pytest.approx(b.loss_, rel=1e-6)
    for ca, cb in zip(a.coefs_, b.coefs_):
        np.testing.assert_allclose(ca, cb, rtol=1e-4, atol=1e-6)
    assert not np.allclose(a.coefs_[0], c.coefs_[0])


def _counts(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6))
    y = rng.poisson(np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1] + 0.2)).astype(np.float64)
    return X, y


def test_poisson_lbfgs_follows_scikit_learns():
    # scikit-learn >= 1.7's MLPRegressor(loss="poisson"): the same initial weights, the same
    # exponential output and half Poisson deviance (constant terms included) to float64
    # rounding, and SciPy's L-BFGS-B: the same path.
    X, y = _counts()
    kw = dict(
        loss="poisson", solver="lbfgs", hidden_layer_sizes=(12,), alpha=1e-3, max_iter=20, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPRegressor(**kw).fit(X, y)
        b = SkMLPRegressor(**kw).fit(X, y)
    assert a.out_activation_ == b.out_activation_ == "exp"
    assert a.n_iter_ == b.n_iter_ == 20
    assert a.loss_ == pytest.approx(b.loss_, rel=1e-6)
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(ca, cb, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-4)
    assert (a.predict(X) > 0).all() and a.score(X, y) == pytest.approx(b.score(X, y), rel=1e-4)


@CUT_SHORT
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_poisson_loss_curve_follows_scikit_learns(solver):
    # One full batch per epoch, no shuffle: the same updates as scikit-learn's (SGD at a
    # constant rate, Adam), hence the same loss curve to rounding; and a model that learns.
    X, y = _counts(seed=1)
    kw = dict(loss="poisson", solver=solver, hidden_layer_sizes=(10,), batch_size=len(y), shuffle=False,
              learning_rate_init=0.01, max_iter=30, random_state=0, tol=0.0, n_iter_no_change=100)  # fmt: skip
    a = MLPRegressor(**kw).fit(X, y)
    b = SkMLPRegressor(**kw).fit(X, y)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-6)
    assert a.loss_curve_[-1] < a.loss_curve_[0]
    # Adam's epsilon sits outside the bias correction here (torch's), inside in scikit-learn.
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-5 if solver == "sgd" else 1e-4)
    # float32 data trains a float32 network, as scikit-learn's, to float32 rounding.
    a32 = MLPRegressor(**kw).fit(X.astype(np.float32), y.astype(np.float32))
    b32 = SkMLPRegressor(**kw).fit(X.astype(np.float32), y.astype(np.float32))
    assert a32.coefs_[0].dtype == np.float32
    np.testing.assert_allclose(a32.loss_curve_, b32.loss_curve_, rtol=1e-4)


@CUT_SHORT
def test_poisson_with_sample_weight_partial_fit_and_pickle():
    X, y = _counts(seed=2)
    reg = MLPRegressor(loss="poisson", hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    reg.fit(X, y, sample_weight=np.ones(len(y)))
    plain = MLPRegressor(loss="poisson", hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)
    for u, v in zip(reg.coefs_, plain.coefs_):
        np.testing.assert_array_equal(u, v)
    reg.partial_fit(X, y)
    again = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(again.predict(X), reg.predict(X))
    assert again._network().loss == "poisson"
