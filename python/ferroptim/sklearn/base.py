"""What :class:`MLPClassifier` and :class:`MLPRegressor` share: ``_BaseMLP`` — the parameters
and their constraints, pickling, the ferroptim network and optimizer behind the estimator,
the epoch loop with scikit-learn's stopping rules, and prediction."""

from __future__ import annotations

import inspect
import warnings
from numbers import Integral, Real
from typing import Any, Callable, Optional, TypeVar

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import _check_sample_weight, validate_data

from .. import optim
from ..nn import MLP

_Estimator = TypeVar("_Estimator", bound="_BaseMLP")

# ferroptim's optimizers by name (solver="adam", ...): the optimizers' own registry.
_SOLVERS: dict[str, Callable[..., optim.Optimizer]] = dict(optim.OPTIMIZERS)
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_OUTPUTS = {"identity": "identity", "logistic": "sigmoid", "softmax": "softmax", "exp": "exp"}


def _solver_ok(est: _BaseMLP) -> bool:
    if est.solver == "lbfgs":
        raise AttributeError(
            "partial_fit is only available for stochastic optimizers. lbfgs is not stochastic."
        )
    return True


class _BaseMLP(BaseEstimator):
    """The training loop shared by :class:`MLPClassifier` and :class:`MLPRegressor`."""

    # The parameters (set by each estimator's __init__) and the fitted state (set by fit),
    # declared for the type checker only: nothing here exists on an instance before it is
    # set, so check_is_fitted and hasattr see what they saw.
    hidden_layer_sizes: ArrayLike
    activation: str
    solver: str | Callable[..., optim.Optimizer]
    alpha: float
    batch_size: int | str | Callable[[int], int]
    learning_rate: str | Callable[[int], float]
    learning_rate_init: float
    power_t: float
    max_iter: int
    shuffle: bool
    random_state: int | np.random.RandomState | None
    tol: float
    verbose: int
    warm_start: bool
    momentum: float
    nesterovs_momentum: bool
    early_stopping: bool
    validation_fraction: float
    beta_1: float
    beta_2: float
    epsilon: float
    n_iter_no_change: float
    max_fun: int
    coefs_: list[np.ndarray]
    intercepts_: list[np.ndarray]
    n_iter_: int
    t_: int
    n_outputs_: int
    n_layers_: int
    out_activation_: str
    loss_: float
    loss_curve_: list[float]
    validation_scores_: list[float] | None
    best_validation_score_: float | None
    best_loss_: float | None
    _label_binarizer: LabelBinarizer
    _random_state: np.random.RandomState
    _shuffle_seed: int
    _best_coefs: list[np.ndarray]
    _best_intercepts: list[np.ndarray]
    _no_improvement_count: int
    _learning_rate: float
    _model: MLP | None
    _optimizer: optim.Optimizer | None
    _optimizer_state: dict[str, Any] | None
    _epoch: int

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", *_SOLVERS}), callable],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left"), callable],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"}), callable],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
    }

    # -- pickling: the Rust network and optimizer are rebuilt from plain arrays ----------

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state = dict(state)
        model = state.pop("_model", None)
        opt = state.pop("_optimizer", None)
        if model is not None:
            state["_epoch"] = model.epoch + (model.position > 0)
        if opt is not None:
            state["_optimizer_state"] = opt._state_dict(view=False)  # loads without ml_dtypes
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._model = None
        self._optimizer = None

    # -- the network -----------------------------------------------------------------------

    def _network(self) -> MLP:
        """The ferroptim network whose ``params`` are ``coefs_`` / ``intercepts_`` (the same
        arrays: ``coefs_`` and ``intercepts_`` are the source of truth, so arrays assigned
        to them after a fit rebuild the network, and the optimizer carries its state over)."""
        model = getattr(self, "_model", None)
        if model is not None:
            linked = len(self.coefs_) == len(self.intercepts_) == len(model.layer_sizes) - 1 and all(
                model.params[f"W{l}"] is w and model.params[f"b{l}"] is b
                for l, (w, b) in enumerate(zip(self.coefs_, self.intercepts_), start=1)
            )
            if linked:
                return model
            # Weights were assigned: rebuild on them, keeping the epoch and optimizer state.
            self._epoch = model.epoch + (model.position > 0)
            opt = getattr(self, "_optimizer", None)
            if opt is not None:
                self._optimizer_state = opt.state_dict()
                self._optimizer = None
            self._model = None
        self.coefs_, self.intercepts_ = list(self.coefs_), list(self.intercepts_)
        sizes = [self.coefs_[0].shape[0]] + [c.shape[1] for c in self.coefs_]
        dtype = self.coefs_[0].dtype
        model = MLP(
            sizes,
            _ACTIVATIONS[self.activation],
            _OUTPUTS[self.out_activation_],
            dtype=dtype,
            seed=self._shuffle_seed,
            alpha=float(self.alpha),
        )
        # Writeable C-contiguous copies where needed (an unpickled memory map is read-only).
        self.coefs_ = [np.require(c, dtype, ["C", "W", "A"]) for c in self.coefs_]
        self.intercepts_ = [np.require(b, dtype, ["C", "W", "A"]) for b in self.intercepts_]
        for l, (w, b) in enumerate(zip(self.coefs_, self.intercepts_), start=1):
            model.params[f"W{l}"] = w
            model.params[f"b{l}"] = b
        model.epoch = getattr(self, "_epoch", 0)
        self._model = model
        return model

    def _initialize(self, y: np.ndarray, layer_units: list[int], dtype: np.dtype) -> None:
        """scikit-learn's ``_initialize``: attributes, and Glorot-uniform weights and biases
        in ``+-sqrt(f / (fan_in + fan_out))``, ``f = 2`` for logistic units, else 6."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            # scikit-learn >= 1.7: loss="poisson" has the log link, an exponential output.
            self.out_activation_ = "exp" if getattr(self, "loss", None) == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        factor = 2.0 if self.activation == "logistic" else 6.0
        self.coefs_, self.intercepts_ = [], []
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            w = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            b = self._random_state.uniform(-bound, bound, fan_out)
            self.coefs_.append(np.ascontiguousarray(w, dtype=dtype))
            self.intercepts_.append(np.ascontiguousarray(b, dtype=dtype))
        self._shuffle_seed = int(self._random_state.randint(0, 2**31 - 1))
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [b.copy() for b in self.intercepts_]
        self._model = None
        self._optimizer = None
        self._optimizer_state = None
        self._epoch = 0
        if self.solver == "lbfgs":  # as scikit-learn: the per-epoch records are the stochastic solvers'
            return
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    # -- the optimizer ---------------------------------------------------------------------

    def _uses_sklearn_schedule(self) -> bool:
        """Whether ``learning_rate="invscaling"/"adaptive"`` act (as in scikit-learn: not on Adam)."""
        return isinstance(self.learning_rate, str) and self.solver != "adam"

    def _make_optimizer(self, params: dict[str, np.ndarray]) -> optim.Optimizer:
        lr = self.learning_rate if callable(self.learning_rate) else float(self.learning_rate_init)
        solver = self.solver
        if isinstance(solver, str):
            cls = _SOLVERS[solver]
            kwargs: dict[str, Any] = {}
            names = inspect.signature(cls.__init__).parameters
            if solver == "sgd":
                m = float(self.momentum)
                kwargs = dict(momentum=m, nesterov=bool(self.nesterovs_momentum) and m > 0)
            elif solver == "momentum":
                kwargs = dict(beta=float(self.momentum))
            else:
                if "betas" in names and solver != "lion":
                    kwargs["betas"] = (float(self.beta_1), float(self.beta_2))
                if "eps" in names and solver not in ("adagrad", "adadelta"):
                    kwargs["eps"] = float(self.epsilon)
            opt = cls(params, lr=lr, **kwargs)
        else:
            opt = solver(params, lr=lr)
            if not isinstance(opt, optim.Optimizer):
                raise TypeError(
                    "solver must be a ferroptim optimizer name, class or factory returning a ferroptim "
                    f"optimizer; solver(params, lr=...) returned {type(opt).__name__}"
                )
        return opt

    def _set_lr(self, lr: float) -> None:
        assert self._optimizer is not None  # made by _fit before training
        for g in self._optimizer.param_groups:
            g["lr"] = lr

    # -- training ----------------------------------------------------------------------

    def _fit(
        self: _Estimator,
        X: ArrayLike,
        y: ArrayLike,
        incremental: bool = False,
        sample_weight: Optional[ArrayLike] = None,
    ) -> _Estimator:
        self._validate_params()
        hidden: Any = self.hidden_layer_sizes
        if not hasattr(hidden, "__iter__"):
            hidden = [hidden]
        hidden = list(hidden)
        if np.any(np.array(hidden) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        sw: Optional[np.ndarray] = None
        if sample_weight is not None:
            sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
            if not sw.any():
                raise ValueError("sample_weight is all zero: at least one sample needs a non-zero weight")
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        layer_units = [X.shape[1]] + hidden + [y.shape[1]]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, X.dtype)
        elif [self.coefs_[0].shape[0]] + [c.shape[1] for c in self.coefs_] != layer_units:
            raise ValueError(
                f"the layer sizes {layer_units} differ from the fitted network's; "
                "refit without warm_start to change hidden_layer_sizes or the data"
            )
        self.n_outputs_ = y.shape[1]
        model = self._network()
        model.alpha = float(self.alpha)
        if X.dtype != model.dtype:
            X = X.astype(model.dtype)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if self.solver == "lbfgs":
            self._fit_lbfgs(model, X, y, sw)
        else:
            self._fit_with_optimizer(model, X, y, incremental, sw)
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )
        return self

    def _fit_with_optimizer(
        self, model: MLP, X: np.ndarray, y: np.ndarray, incremental: bool, sw: Optional[np.ndarray]
    ) -> None:
        """The stochastic solvers: a ferroptim optimizer over the network's epochs."""
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = self._make_optimizer(model.params)
            saved = getattr(self, "_optimizer_state", None)
            if incremental and saved is not None:
                self._optimizer.load_state_dict(saved)
            self._optimizer_state = None
            self._learning_rate = float(self.learning_rate_init)
            if self._uses_sklearn_schedule() and self.learning_rate == "invscaling" and self.t_ > 0:
                self._learning_rate = float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
        self._fit_stochastic(model, X, y, incremental, sw)

    def _fit_lbfgs(self, model: MLP, X: np.ndarray, y: np.ndarray, sw: Optional[np.ndarray]) -> None:
        """``solver="lbfgs"`` as scikit-learn runs it — SciPy's L-BFGS-B over all the
        parameters packed into one float64 vector, ``maxiter=max_iter``, ``maxfun=max_fun``,
        ``gtol=tol`` — with the cost ``J = data cost + alpha/(2m) * sum ||W||^2`` and its
        gradient over the whole data computed by the fused network (one Rust call each);
        with ``sample_weight``, scikit-learn's weighted mean (``m`` replaced by the weights'
        sum)."""
        from scipy.optimize import minimize

        X = np.ascontiguousarray(X)
        Y = model._check_Y(self._targets(y, model.dtype), X.shape[0])
        params = model._param_list()
        grads = [model.grads[n] for n in model._param_names()]
        bounds = np.cumsum([0] + [p.size for p in params])
        w = None if sw is None else model._check_weights(sw, X.shape[0], total=False)

        def cost_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            for p, a, b in zip(params, bounds[:-1], bounds[1:]):
                p.reshape(-1)[...] = theta[a:b]
            cost = model._core.loss_and_grad(params, X, Y, grads, None, w)
            return float(cost), np.concatenate([g.reshape(-1) for g in grads]).astype(np.float64)

        theta0 = np.concatenate([p.reshape(-1) for p in params]).astype(np.float64)
        res = minimize(
            cost_and_grad,
            theta0,
            method="L-BFGS-B",
            jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol},
        )
        cost_and_grad(res.x)  # the parameters at the solution (the last call may be another)
        if res.status != 0:
            warnings.warn(
                f"lbfgs failed to converge after {res.nit} iteration(s) (status={res.status}): "
                f"{res.message}. Increase the number of iterations (max_iter) or scale the data.",
                ConvergenceWarning,
                stacklevel=4,
            )
        self.n_iter_ = min(int(res.nit), self.max_iter)
        self.t_ = X.shape[0] * self.n_iter_
        self.loss_ = float(res.fun)

    def _targets(self, y: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """y as ferroptim.nn trains on it: class indices for softmax, else floats (m, k)."""
        if self.out_activation_ == "softmax":
            return np.argmax(y, axis=1).astype(np.int64)
        return np.ascontiguousarray(y, dtype=dtype)

    def _batch_size(self, n_samples: int) -> int:
        bs: Any = self.batch_size  # "auto", an int or a callable (checked by _validate_params)
        if bs == "auto":
            return min(200, n_samples)
        if callable(bs):
            value = bs(self.n_iter_)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (Integral, np.integer)):
                raise TypeError(
                    f"batch_size({self.n_iter_}) must return an integer, got {type(value).__name__}"
                )
            bs = int(value)
        if bs < 1 or bs > n_samples:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                stacklevel=4,
            )
        return int(np.clip(bs, 1, n_samples))

    def _fit_stochastic(
        self, model: MLP, X: np.ndarray, y: np.ndarray, incremental: bool, sw: Optional[np.ndarray] = None
    ) -> None:
        early_stopping = self.early_stopping
        sw_val: Optional[np.ndarray] = None
        if early_stopping:
            stratify = y if is_classifier(self) and self.n_outputs_ == 1 else None
            if sw is None:
                X, X_val, y, y_val = train_test_split(
                    X,
                    y,
                    random_state=self._random_state,
                    test_size=self.validation_fraction,
                    stratify=stratify,
                )
            else:
                X, X_val, y, y_val, sw, sw_val = train_test_split(
                    X,
                    y,
                    sw,
                    random_state=self._random_state,
                    test_size=self.validation_fraction,
                    stratify=stratify,
                )
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
                )
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
        else:
            X_val = y_val = None
        X = np.ascontiguousarray(X)
        Y = self._targets(y, model.dtype)
        n_samples = X.shape[0]
        bar = _progress_bar(self.verbose, 1 if incremental else self.max_iter)
        say = print if bar is None else bar.write
        checked = False
        try:
            if not incremental:
                self.n_iter_ = 0
            for _ in range(self.max_iter):
                if model.position:
                    # An epoch left unfinished (a caught Ctrl-C): each pass starts a new one.
                    model.epoch, model.position = model.epoch + 1, 0
                batch_size = self._batch_size(n_samples)
                if self._uses_sklearn_schedule():
                    self._set_lr(self._learning_rate)
                history = model.fit(
                    X,
                    Y,
                    self._optimizer,
                    batch_size=batch_size,
                    epochs=1,
                    shuffle=bool(self.shuffle),
                    check_input=not checked,
                    sample_weight=sw,
                )
                checked = True
                costs = history.costs
                # scikit-learn's loss_: the batch costs weighted by the batch sizes.
                sizes = np.full(len(costs), batch_size, dtype=np.float64)
                if len(costs) == -(-n_samples // batch_size):
                    sizes[-1] = n_samples - batch_size * (len(costs) - 1)
                self.n_iter_ += 1
                self.loss_ = float(np.dot(costs, sizes) / sizes.sum())
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if bar is not None:
                    bar.set_postfix(loss=f"{self.loss_:.6g}")
                    bar.update(1)
                if self.verbose:
                    say(f"Iteration {self.n_iter_:d}, loss = {self.loss_:.8f}")
                self._update_no_improvement_count(early_stopping, X_val, y_val, say, sw_val)
                if self._uses_sklearn_schedule() and self.learning_rate == "invscaling":
                    self._learning_rate = float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
                if self._no_improvement_count > self.n_iter_no_change:
                    what = "Validation score" if early_stopping else "Training loss"
                    msg = (
                        f"{what} did not improve more than tol={self.tol:f}"
                        f" for {self.n_iter_no_change:d} consecutive epochs."
                    )
                    if self._trigger_stopping(msg, say):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        f"Stochastic Optimizer: Maximum iterations ({self.max_iter:d}) reached and the "
                        "optimization hasn't converged yet.",
                        ConvergenceWarning,
                        stacklevel=3,
                    )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        finally:
            if bar is not None:
                bar.close()
        if early_stopping:
            for c, best in zip(self.coefs_ + self.intercepts_, self._best_coefs + self._best_intercepts):
                c[...] = best

    def _trigger_stopping(self, msg: str, say: Callable[[str], Any]) -> bool:
        """scikit-learn's ``trigger_stopping``: ``"adaptive"`` divides the rate by 5 (and
        stops below 1e-6); every other schedule stops."""
        if not (self._uses_sklearn_schedule() and self.learning_rate == "adaptive"):
            if self.verbose:
                say(msg + " Stopping.")
            return True
        if self._learning_rate <= 1e-6:
            if self.verbose:
                say(msg + " Learning rate too small. Stopping.")
            return True
        self._learning_rate /= 5.0
        if self.verbose:
            say(msg + f" Setting learning rate to {self._learning_rate:f}")
        return False

    def _update_no_improvement_count(
        self,
        early_stopping: bool,
        X_val: Optional[np.ndarray],
        y_val: Optional[np.ndarray],
        say: Callable[[str], Any],
        sw_val: Optional[np.ndarray] = None,
    ) -> None:
        if early_stopping:
            assert X_val is not None and y_val is not None  # held out by _fit_stochastic
            if self.validation_scores_ is None or self.best_validation_score_ is None:
                # A warm start after a fit without early stopping: its record starts here.
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
            y_pred = self._predict(X_val, check_input=False)
            if np.issubdtype(np.asarray(y_pred).dtype, np.floating) and not np.isfinite(y_pred).all():
                score = np.nan
            else:
                score = self._score_function(y_val, y_pred, sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                say(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [b.copy() for b in self.intercepts_]
        else:
            if self.best_loss_ is None:
                # A warm start after a fit with early stopping: the best loss starts here.
                self.best_loss_ = np.inf
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def fit(
        self: _Estimator, X: ArrayLike, y: ArrayLike, sample_weight: Optional[ArrayLike] = None
    ) -> _Estimator:
        """Trains the network on (X, y) for up to ``max_iter`` epochs (scikit-learn's ``fit``).

        Each epoch shuffles (with ``shuffle``), splits into batches of ``batch_size`` and
        makes one optimizer step per batch on the cost ``J = loss + alpha / (2 m) *
        sum_l ||W_l||^2`` (``m`` the batch's examples): log-loss in nats per example for
        the classifier, half the mean squared error for the regressor. Stops early when
        ``loss_`` (or, with ``early_stopping``, the validation score) does not improve by
        ``tol`` for ``n_iter_no_change`` epochs.

        Args:
            X: (n_samples, n_features) array-like of numbers (float32 stays float32, other
                types become float64).
            y: the targets: class labels (n_samples,), or a 0/1 indicator matrix
                (n_samples, n_labels) for the classifier (multilabel); real values
                (n_samples,) or (n_samples, n_outputs) for the regressor.
            sample_weight: (n_samples,) weights >= 0 (not all zero), as scikit-learn >= 1.7:
                each batch's cost and gradient is the weighted mean ``sum_i w_i loss_i /
                sum_i w_i`` (the L2 term divided by ``sum_i w_i`` too); with
                ``early_stopping``, the held-out weights weigh the validation score. None:
                every sample weighs 1.

        Returns:
            self.
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    # -- what each estimator defines ---------------------------------------------------------

    def _validate_input(
        self, X: Any, y: Any, incremental: bool, reset: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    @staticmethod
    def _score_function(
        y: np.ndarray, y_pred: np.ndarray, sample_weight: Optional[np.ndarray] = None
    ) -> float:
        raise NotImplementedError

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        raise NotImplementedError

    # -- prediction ------------------------------------------------------------------------

    def _forward(self, X: Any, check_input: bool = True) -> np.ndarray:
        if check_input:
            X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        model = self._network()
        X = np.ascontiguousarray(X, dtype=model.dtype)
        return model.forward(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


def _progress_bar(verbose: int, total: int) -> Any:
    if not verbose:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="epoch", leave=False)
