"""``MLPRegressor``: scikit-learn's multi-layer perceptron regressor, trained by ferroptim."""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils import column_or_1d
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import optim
from .base import _BaseMLP, _Estimator, _solver_ok


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor (scikit-learn's ``MLPRegressor``) trained by ferroptim.

    ``loss="squared_error"`` (the default): identity output and the cost ``J = 1 / (2 m k)
    sum (a - y)**2`` (half the mean squared error, scikit-learn's ``squared_error``) plus the
    L2 penalty. ``loss="poisson"`` (scikit-learn >= 1.7): the log link, an exponential output
    ``a = exp(z)`` (``out_activation_ == "exp"``), and half the Poisson deviance ``J = 1/m
    sum_i sum_k (y log(y / a) - y + a)`` (``0 log 0 = 0``) plus the L2 penalty, as
    scikit-learn computes it (``loss_`` and ``loss_curve_`` included); ``y`` must be
    ``>= 0`` (refused otherwise). Parameters and attributes as :class:`MLPClassifier`
    (``validation_scores_`` hold R^2 for either loss, as in scikit-learn).

    Example:
        >>> from sklearn.datasets import make_regression
        >>> from ferroptim.sklearn import MLPRegressor
        >>> X, y = make_regression(n_samples=500, n_features=5, noise=1.0, random_state=0)
        >>> reg = MLPRegressor(max_iter=300, learning_rate_init=0.01, random_state=0).fit(X, y / 100)
        >>> reg.score(X, y / 100) > 0.95
        True
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(
        self,
        loss: str = "squared_error",
        hidden_layer_sizes: ArrayLike = (100,),
        activation: str = "relu",
        *,
        solver: str | Callable[..., optim.Optimizer] = "adam",
        alpha: float = 0.0001,
        batch_size: int | str | Callable[[int], int] = "auto",
        learning_rate: str | Callable[[int], float] = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: int | np.random.RandomState | None = None,
        tol: float = 1e-4,
        verbose: int = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: float = 10,
        max_fun: int = 15000,
    ) -> None:
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun

    def _fit(
        self: _Estimator,
        X: ArrayLike,
        y: ArrayLike,
        incremental: bool = False,
        sample_weight: Optional[ArrayLike] = None,
    ) -> _Estimator:
        return super()._fit(X, y, incremental, sample_weight)

    def _validate_input(
        self, X: Any, y: Any, incremental: bool, reset: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(
            self, X, y, multi_output=True, y_numeric=True, dtype=(np.float64, np.float32), reset=reset
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and (y < 0).any():
            raise ValueError(
                f"loss='poisson' needs targets y >= 0 (counts or rates), got a minimum of {float(y.min()):g}"
            )
        return X, y

    @staticmethod
    def _score_function(
        y: np.ndarray, y_pred: np.ndarray, sample_weight: Optional[np.ndarray] = None
    ) -> float:
        return r2_score(y, y_pred, sample_weight=sample_weight)

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        y_pred = self._forward(X, check_input=check_input)
        return y_pred.ravel() if y_pred.shape[1] == 1 else y_pred

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The predictions (n_samples,) or (n_samples, n_outputs), in the units of y.

        Args:
            X: (n_samples, n_features) array-like of numbers.
        """
        check_is_fitted(self)
        return self._predict(X)

    @available_if(_solver_ok)
    def partial_fit(
        self, X: ArrayLike, y: ArrayLike, sample_weight: Optional[ArrayLike] = None
    ) -> MLPRegressor:
        """One epoch over (X, y), continuing from the current weights and optimizer state
        (scikit-learn's ``partial_fit``).

        Args:
            X: (n_samples, n_features) array-like of numbers.
            y: (n_samples,) or (n_samples, n_outputs) real targets.
            sample_weight: (n_samples,) weights, as in :meth:`fit`.

        Returns:
            self.
        """
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)
