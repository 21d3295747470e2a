"""``MLPClassifier``: scikit-learn's multi-layer perceptron classifier, trained by ferroptim."""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import column_or_1d
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import optim
from .base import _BaseMLP, _solver_ok


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier (scikit-learn's ``MLPClassifier``) trained by ferroptim.

    Softmax output and categorical log-loss for multiclass targets; one logistic output and
    binary log-loss for binary targets; one logistic output per label for multilabel
    indicator targets. Parameters, defaults and fitted attributes are scikit-learn's (see
    :mod:`ferroptim.sklearn` for what ``solver``, ``learning_rate`` and ``batch_size``
    accept beyond them).

    Args:
        hidden_layer_sizes: units of each hidden layer (default ``(100,)``).
        activation: hidden units: ``"relu"``, ``"tanh"``, ``"logistic"`` or ``"identity"``.
        solver: ``"adam"`` (default), ``"sgd"``, a ferroptim optimizer name, class or factory.
        alpha: L2 penalty ``alpha / (2 m) * sum W**2`` per batch of ``m`` examples (>= 0).
        batch_size: ``"auto"`` = ``min(200, n_samples)``, an integer or ``epoch -> int``.
        learning_rate: ``"constant"``, ``"invscaling"``, ``"adaptive"`` or a ferroptim schedule.
        learning_rate_init: the optimizer's ``lr`` (> 0, parameter units per gradient unit).
        power_t: the exponent of ``"invscaling"`` (>= 0).
        max_iter: the most epochs (>= 1).
        shuffle: shuffle the examples each epoch.
        random_state: seeds the initial weights, the shuffles and the validation split.
        tol: the improvement of ``loss_`` (nats per example) or validation score that counts.
        verbose: print each epoch's loss (and a tqdm progress bar when tqdm is installed).
        warm_start: continue from the previous fit's weights (and optimizer state reset).
        momentum: ``"sgd"``'s momentum (and ``"momentum"``'s beta), in [0, 1].
        nesterovs_momentum: Nesterov momentum for ``"sgd"``.
        early_stopping: hold out ``validation_fraction`` of the data (stratified) and stop
            when its accuracy stops improving; the best weights are kept.
        validation_fraction: the held-out fraction, in [0, 1).
        beta_1, beta_2, epsilon: Adam's (and the Adam family's) ``betas`` and ``eps``.
        n_iter_no_change: epochs without improvement by ``tol`` before stopping.
        max_fun: the most cost evaluations of ``"lbfgs"`` (unused by the other solvers).

    The fitted attributes are scikit-learn's (``classes_``, ``loss_``, ``best_loss_``,
    ``loss_curve_``, ``validation_scores_``, ``best_validation_score_``, ``t_``, ``coefs_``,
    ``intercepts_``, ``n_features_in_``, ``feature_names_in_``, ``n_iter_``, ``n_layers_``,
    ``n_outputs_``, ``out_activation_``), so skl2onnx's converter reads them (see
    :func:`register_onnx_converters`). ``coefs_[i]`` is (n_units_i, n_units_{i+1}), the layout
    of ``ferroptim.nn.MLP.params["W{i+1}"]``.

    Example:
        >>> from sklearn.datasets import load_breast_cancer
        >>> from ferroptim.sklearn import MLPClassifier
        >>> X, y = load_breast_cancer(return_X_y=True)
        >>> clf = MLPClassifier(max_iter=50, random_state=0).fit(X / X.max(axis=0), y)
        >>> clf.score(X / X.max(axis=0), y) > 0.9
        True
    """

    def __init__(
        self,
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

    def _validate_input(
        self, X: Any, y: Any, incremental: bool, reset: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same "
                        "classes as in the previous call to fit. Previously "
                        f"got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    @staticmethod
    def _score_function(
        y: np.ndarray, y_pred: np.ndarray, sample_weight: Optional[np.ndarray] = None
    ) -> float:
        return accuracy_score(y, y_pred, sample_weight=sample_weight)

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        y_pred = self._forward(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The predicted classes (n_samples,), or the indicator matrix (n_samples, n_labels)
        of a multilabel fit: the most probable class, or each label with probability > 0.5.

        Args:
            X: (n_samples, n_features) array-like of numbers.
        """
        check_is_fitted(self)
        return self._predict(X)

    @available_if(_solver_ok)
    def partial_fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        sample_weight: Optional[ArrayLike] = None,
        classes: Optional[ArrayLike] = None,
    ) -> MLPClassifier:
        """One epoch over (X, y), continuing from the current weights and optimizer state
        (scikit-learn's ``partial_fit``; each call draws a fresh shuffle).

        Args:
            X: (n_samples, n_features) array-like of numbers.
            y: class labels (n_samples,) or a multilabel indicator matrix.
            sample_weight: (n_samples,) weights, as in :meth:`fit`.
            classes: every class of all the calls; required on the first call
                (``np.unique(y_all)``); y may hold only some of them.

        Returns:
            self.
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), columns ordered as ``classes_``
        (``[1 - p, p]`` for a binary fit; each label's sigmoid for multilabel).

        Args:
            X: (n_samples, n_features) array-like of numbers.
        """
        check_is_fitted(self)
        y_pred = self._forward(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """``log(predict_proba(X))``, natural logarithm, (n_samples, n_classes)."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
