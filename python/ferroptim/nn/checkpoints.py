""":class:`MLP`'s checkpoints and what is built on them: ``state_dict`` /
``load_state_dict``, pickling and ``copy.deepcopy``, and the entry points that keep, evaluate,
check and export a model (their work is in :mod:`.persist`, :mod:`.gradcheck` and
:mod:`.onnx_export`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from ._args import _count
from .architecture import _CORE_OUTPUT, _batch_norm, _dropout_rates, _hidden_activations, _loss, _new_buffers


class _Checkpoints:
    """The checkpoint methods of :class:`MLP` (a mixin: the attributes are the model's,
    hence ``self: Any``)."""

    # -- checkpoints ----------------------------------------------------------------------

    def state_dict(self: Any) -> dict:
        """``{"params": {name: copy}, "buffers": {name: copy}, "epoch", "position", "seed",
        "dropout", "batch_norm"}``: with the optimizer's ``state_dict``, all a resumed
        :meth:`fit` needs to continue bit for bit (``seed`` is the default shuffle seed and
        the dropout masks' seed; ``buffers`` batch norm's running statistics; ``dropout`` the
        rate of each hidden layer and ``batch_norm`` ``[momentum, eps]`` or None, checked
        against the model's on load)."""
        return {
            "params": {k: v.copy() for k, v in self.params.items()},
            "buffers": {k: v.copy() for k, v in self.buffers.items()},
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "dropout": list(self.dropout),
            "batch_norm": None if self._bn is None else list(self._bn),
        }

    def load_state_dict(self: Any, state: dict) -> None:
        """Restores a :meth:`state_dict`, copying into the existing parameter arrays (so
        optimizers built on them stay valid)."""
        missing = {"params", "epoch", "position"} - set(state)
        if missing:
            raise ValueError(f"state_dict is missing {sorted(missing)}")
        bn = state.get("batch_norm")
        if ("batch_norm" in state or self._bn is not None) and (
            None if bn is None else tuple(float(v) for v in bn)
        ) != self._bn:
            raise ValueError(
                f"state_dict has batch_norm {bn}, but this model has "
                f"{None if self._bn is None else list(self._bn)}; build the model with the same batch_norm"
            )
        arrays = _like("params", state["params"], self.params)
        epoch = _count("state_dict's epoch", state["epoch"])
        position = _count("state_dict's position", state["position"])
        seed = _count("state_dict's seed", state.get("seed", self.seed))
        if "dropout" in state and tuple(float(r) for r in state["dropout"]) != self.dropout:
            raise ValueError(
                f"state_dict has dropout {list(state['dropout'])}, but this model has "
                f"{list(self.dropout)}; build the model with the same dropout"
            )
        buffers = _like("buffers", state.get("buffers", {}), self.buffers)
        for k, a in arrays.items():
            self.params[k][...] = a
        for k, a in buffers.items():
            self.buffers[k][...] = a
        self.epoch, self.position, self.seed = epoch, position, seed

    # -- keeping, evaluating, checking and exporting (issue 31 items 4, 6, 7) ---------------

    def save(self: Any, path: Any, optimizer: Any = None) -> None:
        """Saves the model to ``path`` in a safe format (no pickle), atomically.

        The file is an ``.npz`` archive: the parameters and other arrays of
        :meth:`state_dict`, and a JSON header with the format version, the architecture
        (``layer_sizes``, activations, dtype, ``alpha``, ``init``), ``epoch``,
        ``position`` and ``seed``. It is written to a temporary file in the same folder,
        flushed, then renamed over ``path`` (``os.replace``): readers see the old file or
        the new, never part of one. :func:`ferroptim.nn.load` reads it back; the loaded
        model predicts the same bits and its :meth:`fit` continues bit for bit.

        Args:
            path: the file to write (any name; ``.npz`` by convention).
            optimizer: a ferroptim optimizer built on ``model.params`` whose state (step
                counts, moment buffers) to save too; restore it with
                :func:`ferroptim.nn.load_optimizer_state` into an optimizer built with the
                same hyper-parameters on the loaded model's ``params``.
        """
        from .persist import save

        save(self, path, optimizer)

    def evaluate(self: Any, X: Any, Y: Any) -> dict:
        """The model's data cost on ``(X, Y)`` and, for classifiers, its accuracy, as a dict
        ``{"cost": J, "accuracy": acc}`` (Keras' ``evaluate`` returns the list
        ``[loss, accuracy]``; a dict names them). ``J`` is :meth:`cost` (the mean data cost,
        no L2 penalty: nats per example for the cross-entropies, ``1/(2 m k) sum (a - y)^2``
        for identity outputs); ``accuracy`` (sigmoid and softmax outputs only) is the
        fraction of examples whose prediction equals the label (:meth:`score`). X may be a
        :mod:`ferroptim.data` source holding the labels (``Y=None``)."""
        from ..data import _fit as _data

        if _data.is_source(X):
            if Y is not None:
                raise TypeError("evaluate: a ferroptim.data source holds its labels; pass it alone (Y=None)")
            cost, acc = _data.evaluator(self, X)()
        else:
            cost = self.cost(X, Y)
            acc = self.score(X, Y) if self._classifier else None
        out = {"cost": float(cost)}
        if acc is not None:
            out["accuracy"] = float(acc)
        return out

    def gradient_check(self: Any, X: Any, Y: Any, eps: float = 1e-7) -> dict:
        """Compares :meth:`loss_and_grad`'s gradients with centred differences, per parameter,
        as the course teaches: ``{name: ||g - g_approx||_2 / (||g||_2 + ||g_approx||_2)}``
        with ``g_approx_i = (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps)``, ``J`` the
        cost with the L2 penalty. Computed in float64 on a float64 copy of the model
        (``self`` is not modified); about ``1e-7`` or less means the gradient is right,
        ``1e-3`` or more that it is wrong. Two forward passes per parameter element: use a
        small network and batch.

        Args:
            X, Y: a batch, as for :meth:`loss_and_grad` (converted to float64).
            eps: the step in parameter units, in (0, 1).
        """
        from .gradcheck import gradient_check

        return gradient_check(self, X, Y, eps)

    def to_onnx(self: Any, opset: int = 13) -> Any:
        """The network as an ONNX model (``onnx.ModelProto``; needs ``pip install
        ferroptim[onnx]``): input ``"X"`` (m, n_0) of the model's dtype, per layer a
        ``Gemm`` (``Z_l = A_{l-1} W_l + b_l``) and that layer's activation (``Relu``,
        ``LeakyRelu(alpha=0.01)`` (float64: ``Max(Z, 0.01 Z)``), ``Tanh``, ``Sigmoid`` or ``Identity``), and output
        ``"Y"`` (m, n_L): :meth:`forward`'s values (dropout removed; batch norm folded into
        each hidden layer's ``Gemm``: ``W' = W s``, ``b' = beta - running_mean s`` with ``s =
        gamma / sqrt(running_var + eps)``, equal to inference's normalization to rounding) (the output activation applied: sigmoid,
        softmax over axis 1, ``Exp`` for output="exp", or identity). Run it with onnxruntime:
        ``InferenceSession(model.to_onnx().SerializeToString()).run(None, {"X": X})[0]``.

        Args:
            opset: the ONNX operator set version (>= 9).
        """
        from .onnx_export import to_onnx

        return to_onnx(self, opset)

    # -- pickle and copy.deepcopy, through the state_dict ---------------------------------

    def __getstate__(self: Any) -> dict:
        arch = {
            "layer_sizes": self.layer_sizes,
            "hidden": self.hidden,
            "output": self.output,
            "loss": self.loss,
            "huber_delta": self.huber_delta,
            "dtype": self.dtype,
            "alpha": self.alpha,
            "dropout": list(self.dropout),
            "batch_norm": None if self._bn is None else list(self._bn),
        }
        # The parameter arrays themselves (not copies, as state_dict() gives): pickled or
        # deep-copied together with an optimizer built on them, the copies stay linked.
        sd = {
            "params": self.params,
            "buffers": self.buffers,
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
        }
        skip = {"_core", "_rates", "_bn", "grads", "_params", "buffers", "_epoch", "_position", "seed", *arch}
        extra = {k: v for k, v in self.__dict__.items() if k not in skip}
        return {"architecture": arch, "state_dict": sd, "extra": extra}

    def __setstate__(self: Any, st: dict) -> None:
        arch, sd = st["architecture"], st["state_dict"]
        self.__dict__.update(st["extra"])
        self.layer_sizes = list(arch["layer_sizes"])
        hidden, self.output, self.dtype = arch["hidden"], arch["output"], np.dtype(arch["dtype"])
        self.hidden = hidden if isinstance(hidden, str) else list(hidden)
        activations = _hidden_activations(self.hidden, len(self.layer_sizes) - 2)
        self.huber_delta = float(arch.get("huber_delta", 1.0))
        self.loss = _loss(self.output, arch.get("loss"), self.huber_delta)
        rates = _dropout_rates(arch.get("dropout", 0.0), len(self.layer_sizes) - 2)
        bn_arch = arch.get("batch_norm")
        bn = None if bn_arch is None else _batch_norm(True, bn_arch[0], bn_arch[1], len(self.layer_sizes) - 2)
        core_output = _CORE_OUTPUT.get(self.loss, self.output)
        alpha = float(arch["alpha"])
        self._core = _core.Network(
            self.layer_sizes, activations, core_output, alpha, rates, self.huber_delta, bn
        )
        self._rates, self._bn = rates, bn
        self.params = sd["params"]
        self._param_list()  # the arrays fit the architecture
        self.buffers = sd.get("buffers") or _new_buffers(self.layer_sizes, bn, self.dtype)
        self._running_list()
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.epoch, self.position, self.seed = sd["epoch"], sd["position"], sd["seed"]


def _like(what: str, new: Any, have: dict) -> dict:
    """``state_dict[what]`` as arrays, checked to hold the keys and shapes of ``have``."""
    if set(new) != set(have):
        raise ValueError(f"state_dict {what} have keys {sorted(new)}, expected {sorted(have)}")
    arrays = {}
    for k, v in new.items():
        a = np.asarray(v)
        if a.shape != have[k].shape:
            raise ValueError(f"state_dict {what}[{k!r}] has shape {a.shape}, expected {have[k].shape}")
        arrays[k] = a
    return arrays
