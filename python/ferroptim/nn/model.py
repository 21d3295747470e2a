"""The network: :class:`MLP` (architecture, parameters, passes, inputs, checkpoints) and the
:class:`History` its :meth:`MLP.fit` returns (the loop itself is in :mod:`.training`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from .. import _core
from ..data import _fit as _data
from ._args import _count, _int
from .architecture import (
    _CORE_OUTPUT,
    INITS,
    LOSSES,
    OUTPUTS,
    _batch_norm,
    _dropout_rates,
    _hidden_activations,
    _loss,
    _new_buffers,
)
from .checkpoints import _Checkpoints
from .inputs import _Inputs


@dataclass
class History:
    """What :meth:`MLP.fit` recorded, as NumPy arrays (one entry per update or per epoch).

    Attributes:
        costs: the cost of every mini-batch at the parameters it was computed with (before
            that batch's update), data cost plus L2 penalty, in nats per example for the
            cross-entropies; float64, one per update.
        epoch_costs: the mean of each epoch's batch costs.
        epochs: the epoch numbers (counting from 0 over the model's life: fit continues).
        updates: the updates made by the end of each epoch, counted from this call.
        seconds: the wall time of each epoch's training (not the evaluation), in seconds.
        val_costs: the data cost on ``validation_data`` after each epoch (empty without).
        val_accuracy: the accuracy on ``validation_data`` after each epoch (classifiers).
        lr: the first param group's learning rate at each epoch's last update.
        timing: with ``timing=True``, seconds per epoch spent in ``"gather"``,
            ``"forward"``, ``"backward"`` and ``"step"``.
    """

    costs: np.ndarray = field(default_factory=lambda: np.empty(0))
    epoch_costs: np.ndarray = field(default_factory=lambda: np.empty(0))
    epochs: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    updates: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    seconds: np.ndarray = field(default_factory=lambda: np.empty(0))
    val_costs: np.ndarray = field(default_factory=lambda: np.empty(0))
    val_accuracy: np.ndarray = field(default_factory=lambda: np.empty(0))
    lr: np.ndarray = field(default_factory=lambda: np.empty(0))
    timing: dict = field(default_factory=dict)


class MLP(_Checkpoints, _Inputs):
    """A fully-connected network whose forward pass, backward pass and training loop run
    in Rust.

    Args:
        layer_sizes: units per layer, input first: ``[n_0, n_1, ..., n_L]`` (each >= 1;
            ``n_L >= 2`` for softmax).
        hidden: the hidden activation: ``"relu"``, ``"leaky_relu"`` (slope 0.01 below 0),
            ``"tanh"``, ``"sigmoid"`` or ``"identity"`` for every hidden layer; or a list of
            one such name per hidden layer (``hidden=["relu", "tanh"]`` for
            ``layer_sizes=[n_0, n_1, n_2, n_3]``: ``A_1 = relu(Z_1)``, ``A_2 = tanh(Z_2)``).
        output: the output activation: ``"sigmoid"`` (binary cross-entropy),
            ``"softmax"`` (categorical cross-entropy), ``"identity"`` (squared error, or
            Huber) or ``"exp"`` (``A_L = exp(Z_L)``, the log link of the Poisson loss); see
            the module docstring for the formulas.
        loss: the cost, one that ``output`` supports (:data:`LOSSES`); None (the default)
            is the output's first: ``"log_loss"`` for sigmoid and softmax,
            ``"squared_error"`` (``J = 1/(2 m k) sum (a - y)^2``) or ``"huber"`` for identity,
            ``"poisson"`` for exp. ``"huber"``: torch's ``nn.HuberLoss(delta=huber_delta)``,
            mean over every element: ``J = 1/(m k) sum h(a - y)``, ``h(r) = r^2 / 2`` for
            ``|r| < delta`` else ``delta (|r| - delta / 2)``. ``"poisson"``: half the Poisson
            deviance, as scikit-learn's ``MLPRegressor(loss="poisson")``:
            ``J = 1/m sum_i sum_k (y log(y / a) - y + a)`` (``0 log 0 = 0``), targets ``>= 0``.
        huber_delta: the Huber threshold ``delta`` (a finite number > 0; only with
            ``loss="huber"``).
        dtype: ``np.float32`` or ``np.float64``, for parameters, gradients and the data.
        init: the weights' initialisation (biases start at 0): ``"he"``
            (``randn * sqrt(2 / n_in)``), ``"xavier"`` / ``"glorot"`` (uniform in
            ``+-sqrt(6 / (n_in + n_out))``) or ``"lecture"`` (``randn * 0.01``).
        seed: seeds the initialisation (``numpy.random.default_rng(seed)``) and, by
            default, the shuffles of :meth:`fit`.
        alpha: L2 penalty ``alpha / (2 m) * sum W**2`` (>= 0).
        dropout: inverted dropout in training, as the course teaches it: after each hidden
            layer's activation, ``A_l *= mask / keep_prob`` (``keep_prob = 1 - rate``; the
            backward pass multiplies ``dA_l`` by the same), each unit of each example kept
            with probability ``keep_prob``. A rate in [0, 1) for every hidden layer, or a
            sequence of one rate per hidden layer; 0 is no dropout. Only :meth:`fit` (and
            :meth:`loss_and_grad` given a ``dropout_key``) drops units; :meth:`forward`,
            :meth:`predict` and :meth:`cost` never do. The masks come from a counter-based
            hash of ``(seed, epoch, position, layer, row of the batch, unit)``
            (:meth:`dropout_masks`): the same at every thread count and on resume.
        batch_norm: batch normalization of every hidden layer, before its activation, as
            the course places it and torch's ``nn.Linear(bias=False)`` + ``nn.BatchNorm1d``
            compute it: ``Z_l = A_{l-1} W_l`` (no bias: ``beta_l`` takes its role, and a
            bias's gradient would be exactly 0), ``Z~_l = gamma_l (Z_l - mu) / sqrt(var +
            eps) + beta_l``, ``A_l = g(Z~_l)`` (then dropout). ``gamma_l`` (ones) and
            ``beta_l`` (zeros) are parameters (``params["gamma1"]``, ``params["beta1"]``,
            ...) that every optimizer trains. Training (:meth:`fit`,
            ``loss_and_grad(training=True)``) normalizes with the batch's column mean ``mu``
            and biased variance ``var`` (a batch needs 2 rows at least) and updates the
            running statistics ``running_mean_l = momentum mu + (1 - momentum)
            running_mean_l``, ``running_var_l = momentum var m / (m - 1) + (1 - momentum)
            running_var_l`` (the unbiased variance; they start at 0 and 1); inference
            (:meth:`forward`, :meth:`predict`, :meth:`cost`, ``loss_and_grad()``) uses the
            running statistics (``model.buffers``). The batch's statistics are the whole
            batch's: a large training batch is computed in its blocks of rows side by side
            on the pool, layer by layer, the blocks' sums (in float64, each block's rows in
            order, then the blocks in order) combined between the layers — the same bits at
            every thread count; every block's intermediates stay in memory until the
            backward pass, so training memory grows with the batch (as torch's does).
        batch_norm_momentum: the running statistics' update rate, in [0, 1] (torch's
            ``momentum``, 0.1).
        batch_norm_eps: added to the variance, > 0 (torch's ``eps``, 1e-5).

    Attributes:
        params: ``{"W1": (n_0, n_1), "b1": (n_1,), ...}``, updated in place by training
            (with batch norm, ``"W1", "gamma1", "beta1", ...`` for the hidden layers, then
            ``"W_L", "b_L"``).
        buffers: with batch norm, ``{"running_mean1": (n_1,), "running_var1": (n_1,),
            ...}``, updated in place by training; else empty.
        grads: arrays like ``params`` that :meth:`loss_and_grad` writes into (reused).
        epoch: epochs completed by :meth:`fit` (the next one is shuffled as epoch
            ``epoch`` of ``MiniBatches(X, Y, seed=...)``).
        position: batches of epoch ``epoch`` already trained on (after an interrupted fit;
            else 0).

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(1000, 2)).astype(np.float32)
        >>> Y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)
        >>> model = fo.nn.MLP([2, 16, 1], hidden="tanh", output="sigmoid", seed=0)
        >>> opt = fo.Adam(model.params, lr=1e-2)
        >>> history = model.fit(X, Y, opt, batch_size=64, epochs=20)
        >>> bool(history.epoch_costs[-1] < history.epoch_costs[0])
        True
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        hidden: Union[str, Sequence[str]] = "relu",
        output: str = "sigmoid",
        *,
        dtype: Any = np.float32,
        init: str = "he",
        seed: int = 0,
        alpha: float = 0.0,
        dropout: Any = 0.0,
        loss: Optional[str] = None,
        huber_delta: float = 1.0,
        batch_norm: bool = False,
        batch_norm_momentum: float = 0.1,
        batch_norm_eps: float = 1e-5,
    ) -> None:
        try:
            sizes = [_int("layer_sizes[i]", s, 1) for s in layer_sizes]
        except TypeError as e:
            raise TypeError(f"layer_sizes must be a sequence of integers: {e}") from None
        if len(sizes) < 2:
            raise ValueError(f"layer_sizes needs at least an input and an output size, got {sizes}")
        activations = _hidden_activations(hidden, len(sizes) - 2)
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        loss = _loss(output, loss, huber_delta)
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
            raise TypeError(f"alpha must be a number, got {type(alpha).__name__}")
        rates = _dropout_rates(dropout, len(sizes) - 2)
        bn = _batch_norm(batch_norm, batch_norm_momentum, batch_norm_eps, len(sizes) - 2)
        self.seed = _int("seed", seed, 0)
        self._core = _core.Network(
            sizes, activations, _CORE_OUTPUT.get(loss, output), float(alpha), rates, float(huber_delta), bn
        )
        self._rates, self._bn = rates, bn
        self.layer_sizes = sizes
        self.hidden = hidden if isinstance(hidden, str) else list(hidden)
        self.output, self.dtype, self.init = output, dt, init
        self.loss, self.huber_delta = loss, float(huber_delta)
        rng = np.random.default_rng(self.seed)
        self._params: dict[str, np.ndarray] = {}
        for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            if init == "he":
                w = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
            elif init == "lecture":
                w = rng.standard_normal((n_in, n_out)) * 0.01
            else:
                bound = np.sqrt(6.0 / (n_in + n_out))
                w = rng.uniform(-bound, bound, (n_in, n_out))
            self.params[f"W{l}"] = np.ascontiguousarray(w, dtype=dt)
            if bn is not None and l < len(sizes) - 1:
                self.params[f"gamma{l}"] = np.ones(n_out, dtype=dt)
                self.params[f"beta{l}"] = np.zeros(n_out, dtype=dt)
            else:
                self.params[f"b{l}"] = np.zeros(n_out, dtype=dt)
        self.buffers: dict[str, np.ndarray] = _new_buffers(sizes, bn, dt)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        # The counters' own attributes (0 is valid): the API reference, which reads this class
        # through its ferroptim.nn alias, lists the properties in source order only then.
        self._epoch = 0
        self._position = 0

    # -- properties -------------------------------------------------------------------------

    @property
    def alpha(self) -> float:
        """The L2 penalty coefficient."""
        return self._core.alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.floating, np.integer)
        ):
            raise TypeError(f"model.alpha must be a number, got {type(value).__name__}")
        self._core.alpha = float(value)

    @property
    def activations(self) -> tuple:
        """The activation of each hidden layer (``hidden`` given as one name: that name
        for every layer)."""
        return tuple(_hidden_activations(self.hidden, len(self.layer_sizes) - 2))

    @property
    def _classifier(self) -> bool:
        """Whether the outputs are probabilities (sigmoid or softmax): accuracy, class
        weights and ``predict_proba`` apply; else a regression."""
        return self.output in ("sigmoid", "softmax")

    @property
    def dropout(self) -> tuple:
        """The dropout rate of each hidden layer (all 0.0 without dropout)."""
        return tuple(self._rates) if self._rates else (0.0,) * (len(self.layer_sizes) - 2)

    @property
    def batch_norm(self) -> bool:
        """Whether the hidden layers are batch-normalized."""
        return self._bn is not None

    @property
    def batch_norm_momentum(self) -> float:
        """The running statistics' update rate (0.1 without batch norm)."""
        return self._bn[0] if self._bn is not None else 0.1

    @property
    def batch_norm_eps(self) -> float:
        """The constant added to the variance (1e-5 without batch norm)."""
        return self._bn[1] if self._bn is not None else 1e-5

    def _dropout_key(self, epoch: int, position: int) -> Optional[tuple]:
        """The core's dropout key of batch ``position`` of ``epoch`` (None without dropout)."""
        if not self._rates:
            return None
        return (self.seed % 2**64, epoch, position)

    def dropout_masks(self, m: int, epoch: int, position: int) -> list:
        """The dropout masks :meth:`fit` draws for batch ``position`` of epoch ``epoch``
        (batches of ``m`` rows): one (m, n_l) bool array per hidden layer, True where a unit
        is kept (all True at rate 0). Training multiplies the kept activations by
        ``1 / (1 - rate)`` (rounded once to the model's dtype) and the others by 0."""
        m = _int("m", m, 0)
        key = (self.seed % 2**64, _count("epoch", epoch), _count("position", position))
        return list(self._core.dropout_masks(m, key))

    @property
    def params(self) -> dict:
        """``{"W1": array, "b1": array, ...}``: the parameters, updated in place by training."""
        return self._params

    @params.setter
    def params(self, value: dict) -> None:
        if not isinstance(value, dict):
            raise TypeError(
                f"model.params must be a dict {{'W1': array, 'b1': array, ...}}, got {type(value).__name__}"
            )
        self._params = value

    @property
    def epoch(self) -> int:
        """Epochs completed by :meth:`fit`, in [0, 2**64 - 1]."""
        return self._epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch = _count("model.epoch", value)

    @property
    def position(self) -> int:
        """Batches of epoch ``epoch`` already trained on, in [0, 2**64 - 1]."""
        return self._position

    @position.setter
    def position(self, value: int) -> None:
        self._position = _count("model.position", value)

    @property
    def n_outputs(self) -> int:
        return self.layer_sizes[-1]

    def _param_names(self) -> list[str]:
        """The parameters' names in the core's order: ``W1, b1, ...``, or ``W_l, gamma_l,
        beta_l`` for a batch-normalized layer."""
        L = len(self.layer_sizes) - 1
        bn = self._bn is not None
        return [
            f"{p}{l}"
            for l in range(1, L + 1)
            for p in (("W", "gamma", "beta") if bn and l < L else ("W", "b"))
        ]

    def _running_list(self) -> list[np.ndarray]:
        """Batch norm's running statistics in the core's order, checked (empty without)."""
        L = len(self.layer_sizes) - 1
        want = {
            f"running_{s}{l}": (self.layer_sizes[l],)
            for l in range(1, L if self._bn is not None else 1)
            for s in ("mean", "var")
        }
        bufs = self.buffers
        if not isinstance(bufs, dict) or set(bufs) != set(want):
            got = sorted(bufs, key=str) if isinstance(bufs, dict) else type(bufs).__name__
            raise ValueError(f"model.buffers must hold exactly {list(want)}, got {got}")
        for n, shape in want.items():
            a = bufs[n]
            if not isinstance(a, np.ndarray) or a.dtype != self.dtype or a.shape != shape:
                raise ValueError(f"model.buffers[{n!r}] must be a {self.dtype} array of shape {shape}")
            if not (a.flags.c_contiguous and a.flags.aligned):
                raise ValueError(f"model.buffers[{n!r}] must be a C-contiguous, aligned array")
        return [bufs[n] for n in want]

    def _param_list(self) -> list[np.ndarray]:
        names = self._param_names()
        params = self.params
        if set(params) != set(names):
            raise ValueError(f"model.params must hold exactly {names}, got {sorted(params, key=str)}")
        out = [params[n] for n in names]
        sizes = self.layer_sizes
        vectors = ("gamma", "beta") if self._bn is not None else ("b",)
        for l in range(1, len(sizes)):
            shapes: list[tuple[str, tuple[int, ...]]] = [(f"W{l}", (sizes[l - 1], sizes[l]))]
            shapes += [(f"{v}{l}", (sizes[l],)) for v in (vectors if l < len(sizes) - 1 else ("b",))]
            for n, shape in shapes:
                a = params[n]
                if not isinstance(a, np.ndarray):
                    raise TypeError(f"model.params[{n!r}] must be a numpy.ndarray, got {type(a).__name__}")
                if a.dtype != self.dtype:
                    raise TypeError(
                        f"model.params[{n!r}] has dtype {a.dtype}, expected {self.dtype} like the model"
                    )
                if a.shape != shape:
                    raise ValueError(f"model.params[{n!r}] has shape {a.shape}, expected {shape}")
        return out

    # -- passes ---------------------------------------------------------------------------

    def forward(self, X: Any) -> np.ndarray:
        """The output activations ``A_L`` (m, n_L) for the rows of X (probabilities for
        sigmoid/softmax outputs). X may be a :mod:`ferroptim.data` source: its rows in
        storage order, a few thousand at a time."""
        if _data.is_source(X):
            return _data.forward(self, X)
        X = np.require(self._check_X(X, finite=False), requirements=["C", "A"])
        return self._core.forward(self._param_list(), X, self._running_list())

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities: (m, n_L) for softmax; for sigmoid with one output, (m, 2)
        columns ``[1 - p, p]`` as scikit-learn returns them; else the sigmoids (m, n_L)."""
        if not self._classifier:
            raise ValueError("predict_proba needs output='sigmoid' or 'softmax'")
        p = self.forward(X)
        if self.output == "sigmoid" and p.shape[1] == 1:
            return np.hstack([1 - p, p])
        return p

    def predict(self, X: Any) -> np.ndarray:
        """Predictions: class indices (m,) for softmax; 0/1 (m,) for one sigmoid output
        (``p > 0.5``), (m, k) for several; the outputs for identity and exp ((m,) if one)."""
        a = self.forward(X)
        if self.output == "softmax":
            return np.argmax(a, axis=1)
        if self.output == "sigmoid":
            out = (a > 0.5).astype(np.int64)
        else:
            out = a
        return out[:, 0] if out.shape[1] == 1 else out

    def loss_and_grad(
        self,
        X: Any,
        Y: Any,
        *,
        dropout_key: Optional[tuple[int, int]] = None,
        sample_weight: Any = None,
        training: bool = False,
    ) -> tuple[float, dict]:
        """The cost J of the batch (X, Y) — data cost plus L2 penalty, see the module
        docstring — and its gradient ``{"W1": dJ/dW1, ...}``, written into ``self.grads``
        (the same arrays every call: copy what you keep).

        X: (m, n_0), converted to the model's dtype if needed (see :meth:`fit`). Y: see
        :meth:`fit`. Cost in nats per example.
        dropout_key: ``(epoch, position)``: apply the model's dropout with the masks
            :meth:`fit` draws for batch ``position`` of epoch ``epoch``
            (:meth:`dropout_masks`), so that a Python loop over the batches reproduces fit
            bit for bit; None (the default): no dropout.
        sample_weight: (m,) weights ``w_i >= 0``: the cost is scikit-learn's weighted mean
            ``sum_i w_i loss_i / sum_i w_i`` and the L2 penalty ``alpha / (2 sum_i w_i) *
            sum W**2`` (``m`` replaced by the weights' sum, in float64); weights all 1 give
            the same bits as none, and weights summing to 0 a zero cost and gradient.
        training: batch norm's mode (nothing else depends on it): True normalizes with the
            batch's statistics (m >= 2) and updates ``model.buffers``' running statistics,
            as :meth:`fit` does for each batch; False (the default) normalizes with the
            running statistics and changes nothing but ``self.grads``.
        """
        if not isinstance(training, (bool, np.bool_)):
            raise TypeError(f"training must be True or False, got {type(training).__name__}")
        key = None
        if dropout_key is not None:
            try:
                epoch, position = dropout_key
            except (TypeError, ValueError):
                raise TypeError(
                    f"dropout_key must be a pair (epoch, position), got {dropout_key!r}"
                ) from None
            key = self._dropout_key(
                _count("dropout_key's epoch", epoch), _count("dropout_key's position", position)
            )
        X = np.require(self._check_X(X), requirements=["C", "A"])
        Y = self._check_Y(Y, X.shape[0])
        w = None if sample_weight is None else self._check_weights(sample_weight, X.shape[0], total=False)
        params = self._param_list()
        grads = [self.grads[n] for n in self._param_names()]
        running = self._running_list()
        if training and self._bn is not None and X.shape[0] < 2:
            raise ValueError(
                'batch norm in training needs more than 1 example per batch (torch: "Expected more '
                f'than 1 value per channel when training"), got {X.shape[0]}'
            )
        cost = self._core.loss_and_grad(params, X, Y, grads, key, w, running, bool(training))
        return cost, self.grads

    def cost(self, X: Any, Y: Any) -> float:
        """The mean data cost of (X, Y) (no L2 penalty), in nats per example for the
        cross-entropies."""
        X = np.require(self._check_X(X), requirements=["C", "A"])
        return self._core.cost(self._param_list(), X, self._check_Y(Y, X.shape[0]), self._running_list())

    def score(self, X: Any, Y: Any) -> float:
        """Accuracy (fraction of examples whose predicted class is the label) for
        classifiers; for identity and exp outputs, the coefficient of determination R^2
        (as scikit-learn's regressors score, whatever their loss)."""
        pred = self.predict(X)
        Y = np.asarray(Y)
        if self.output == "softmax" and Y.ndim == 2:
            Y = np.argmax(Y, axis=1)
        if not self._classifier:
            y = Y.reshape(pred.shape).astype(np.float64)
            ss = ((y - y.mean(axis=0)) ** 2).sum()
            return float(1 - ((y - pred) ** 2).sum() / ss) if ss > 0 else 0.0
        return float(np.mean(pred == Y.reshape(pred.shape)))

    # -- training -------------------------------------------------------------------------

    def fit(
        self,
        X: Any,
        Y: Any = None,
        optimizer: Any = None,
        *,
        batch_size: Optional[int] = 64,
        epochs: int = 1,
        shuffle: bool = True,
        seed: Optional[int] = None,
        drop_last: bool = False,
        axis: int = 0,
        validation_data: Any = None,
        validation_split: float = 0.0,  # issue 31 item 4 (keeping models)
        callbacks: Sequence[Callable[[int, dict], Any]] = (),
        steps_per_execution: Optional[int] = None,
        batch_callbacks: Sequence[Callable[[dict], Any]] = (),
        max_steps: Optional[int] = None,
        progress: bool = False,
        timing: bool = False,
        check_input: bool = True,
        sample_weight: Any = None,
        class_weight: Any = None,
    ) -> History:
        """Trains for ``epochs`` epochs, each one Rust call with the GIL released (or one
        per ``steps_per_execution`` updates).

        Each epoch shuffles ``(X, Y)`` exactly as ``MiniBatches(X, Y, batch_size=batch_size,
        shuffle=shuffle, seed=seed, drop_last=drop_last, axis=axis)`` does in its epoch
        number ``self.epoch``, and for each batch computes the cost and gradients and calls
        the optimizer's own update (its param groups, lr schedule, ``max_grad_norm``,
        ``nan_policy``): the same numbers, bit for bit, as ::

            for Xb, Yb in batches:
                opt.step(model.loss_and_grad(Xb, Yb)[1])

        Calling ``fit(..., epochs=1)`` n times equals ``fit(..., epochs=n)``: the model keeps
        its epoch counter (``self.epoch``) and position in it (``self.position``), so each
        epoch gets a fresh permutation and a fit stopped mid-epoch continues there.

        Args:
            X: (m, n_0) (``axis=1``: (n_0, m)); any layout, including memory maps. Of the
                model's dtype it is used as is; any other real dtype (float64 for a float32
                model, integers, bools) is converted with one copy (``X.astype(dtype)``, once
                per call: convert beforehand when calling fit repeatedly); complex, text and
                object data are refused. A pandas DataFrame or pyarrow Table is converted
                once, column by column, to the model's dtype. Or a :mod:`ferroptim.data` source
                (``Parquet``, ``Sliced``) holding the labels too: ``Y`` omitted, streamed
                in bounded memory, each epoch in the source's order (``shuffle``, ``seed``
                and ``drop_last`` apply; rows are checked per chunk, before its batches
                train).
            Y: sigmoid: (m,) or (m, k) of 0/1 (any numeric dtype); softmax: (m,) integer
                labels in [0, k) or (m, k) one-hot / probability rows (summing to 1: the
                gradient ``(p - y)/m`` assumes it); identity: (m,) or
                (m, k). With ``axis=1``, (k, m) or (m,).
            optimizer: a ferroptim optimizer built on ``model.params`` (the arrays
                themselves): its ``param_groups`` (``lr`` a number or a schedule ``step ->
                lr``, evaluated for each Rust call's updates before it starts), state,
                ``max_grad_norm`` and ``nan_policy`` apply. A wrapper
                (``GradientAccumulation``, ``Lookahead``, ``DistributedOptimizer``) is
                accepted too and trains through the slower path: one Python iteration per
                batch, ``wrapper.step(model.loss_and_grad(Xb, Yb)[1])``. :class:`ferroptim.LBFGS`
                (with ``batch_size=None``) takes one ``step`` per epoch over the whole data,
                each cost and gradient one Rust call; ``history.costs`` holds each step's
                first cost. :class:`ferroptim.ScheduleFreeAdamW` / :class:`ferroptim.ScheduleFreeSGD`
                train through the Python loop too, as their package asks: ``train()`` before the
                first update (the parameters hold ``y``), ``eval()`` for each epoch's validation
                and callbacks (then ``train()`` again) and when fit returns, so the model
                predicts, scores and is saved with the averaged weights ``x``.
                :class:`ferroptim.Adafactor` and :class:`ferroptim.Muon` train through the
                Python loop as well. A list of optimizers that together hold every parameter
                of ``model.params`` once (e.g. ``[fo.Muon(matrices), fo.AdamW(biases)]``:
                Muon takes only 2-D parameters) steps each with its parameters' gradients,
                in the list's order, through the Python loop; ``history.lr`` is the first's.
            batch_size: examples per batch (>= 1), or None for the whole set (batch
                gradient descent).
            epochs: epochs to train (>= 0); the first one finishes an epoch a previous fit
                stopped in.
            shuffle, drop_last, axis: as in :class:`ferroptim.MiniBatches`.
            seed: the shuffle seed; None uses the model's ``seed``.
            validation_data: ``(X_val, Y_val)`` or a :mod:`ferroptim.data` source,
                evaluated after each epoch:
                ``history.val_costs`` (data cost) and, for classifiers,
                ``history.val_accuracy``.
            validation_split: a fraction in [0, 1) of the examples held out as
                ``validation_data``, as Keras does: the LAST ``m - floor(m * (1 - split))``
                examples in the given order (before any shuffle); not with
                ``validation_data`` nor a :mod:`ferroptim.data` source.
            callbacks: each called as ``cb(epoch, logs)`` after every epoch, ``logs`` a
                dict with ``"epoch", "cost", "val_cost", "val_accuracy", "lr", "seconds"``;
                a callback that returns True stops training (early stopping:
                :class:`~ferroptim.nn.EarlyStopping`, checkpoints:
                :class:`~ferroptim.nn.ModelCheckpoint`). A
                ``ReduceLROnPlateau`` goes in as ``lambda e, logs: plateau.step(logs["val_cost"])``.
            steps_per_execution: at most this many updates per Rust call (>= 1; None: the
                rest of the epoch), as Keras' ``steps_per_execution``: Python gets control
                back every that many updates for ``batch_callbacks``, the progress bar and
                a stop. The updates are the same whatever its value.
            batch_callbacks: each called as ``cb(logs)`` after every Rust call (every
                ``steps_per_execution`` updates, and at the end of each epoch), ``logs`` a
                dict with ``"epoch"`` and ``"position"`` (where the model is now),
                ``"updates"`` (made by this fit so far), ``"cost"`` (the mean batch cost of
                the call's updates), ``"lr"`` and ``"seconds"`` (training wall time of this
                fit so far, evaluations excluded); one that returns True stops training
                there (a time budget: ``lambda logs: logs["seconds"] >= budget``).
            max_steps: stop after this many updates (>= 0; None: no limit), possibly in
                the middle of an epoch (``self.position`` says where).
            progress: show a tqdm progress bar counting this fit's updates (advanced
                after each Rust call: set ``steps_per_execution`` to see it move within an
                epoch), with the epoch, updates/s and an exponentially weighted average of
                the batch cost. Without tqdm it warns (``UserWarning``: ``pip install
                ferroptim[demo]``) and trains without a bar.
            timing: record the seconds spent in gather / forward / backward / step per
                epoch in ``history.timing`` (a few clock reads per batch).
            check_input: check X and Y for NaN/infinity and labels for range before
                training (one pass over the data); pass False when calling fit repeatedly
                on data already checked.
            sample_weight: (m,) weights ``w_i >= 0``, gathered with each batch: each batch's
                cost and gradient is scikit-learn's weighted mean (see
                :meth:`loss_and_grad`); the loop fit equals then passes
                ``sample_weight=Wb``. Not for a :mod:`ferroptim.data` source.
            class_weight: classifiers: ``{label: weight}`` (class indices; classes not
                named weigh 1) or ``"balanced"`` (scikit-learn's ``n_samples / (n_classes *
                bincount(y))`` over the classes present); multiplies ``sample_weight``.

        Returns:
            A :class:`History`. ``costs`` holds every update of this call; the per-epoch
            entries (``epoch_costs``, ``seconds``, validation, ...) only epochs that ended
            in it.

        Raises:
            TypeError / ValueError: bad arguments, before anything is modified.
            FloatingPointError: a gradient was not finite under ``nan_policy="raise"``; the
                updates before it stay applied.
            KeyboardInterrupt: Ctrl-C during the training loop stops within about a
                millisecond, after a complete update; ``self.epoch`` / ``self.position`` say
                where, and the next ``fit`` continues there. During callbacks, validation and
                the progress bar it interrupts them as in any Python code. This is Python's
                default SIGINT handler; whatever other handler is installed (``SIG_IGN``, a
                handler of your own) is left in place and called as usual — if it raises,
                training stops after the current update and its exception propagates.
        """
        from .callbacks import _begin, _validation_split  # issue 31 item 4
        from .training import _Fit

        # -- issue 31 item 4: validation_split, and the built-in callbacks get the model --
        if validation_split:
            X, Y, validation_data = _validation_split(self, X, Y, validation_split, validation_data, axis)
        elif validation_split != 0:
            raise ValueError(f"validation_split must be a number in [0, 1), got {validation_split!r}")
        # -- end of item 4's block --

        fit = _Fit(
            self,
            X,
            Y,
            optimizer,
            batch_size=batch_size,
            epochs=epochs,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            axis=axis,
            validation_data=validation_data,
            callbacks=callbacks,
            steps_per_execution=steps_per_execution,
            batch_callbacks=batch_callbacks,
            max_steps=max_steps,
            progress=progress,
            timing=timing,
            check_input=check_input,
            sample_weight=sample_weight,
            class_weight=class_weight,
        )
        _begin(fit.callbacks, self)  # issue 31 item 4
        return fit.run()

    def __repr__(self) -> str:
        return (
            f"MLP({self.layer_sizes}, hidden={self.hidden!r}, output={self.output!r}, "
            + (f"loss={self.loss!r}, " if self.loss != LOSSES[self.output][0] else "")
            + (f"huber_delta={self.huber_delta}, " if self.loss == "huber" else "")
            + f"dtype={self.dtype.name}, alpha={self.alpha}, "
            + (f"dropout={list(self.dropout)}, " if any(self.dropout) else "")
            + ("batch_norm=True, " if self._bn is not None else "")
            + f"epoch={self.epoch})"
        )
