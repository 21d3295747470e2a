"""Fully-connected networks trained end to end in Rust: ``ferroptim.nn.MLP``.

The lecture's networks — dense layers, ReLU/leaky ReLU/tanh/sigmoid hidden units, a sigmoid
(binary cross-entropy), softmax (categorical cross-entropy) or identity (squared error)
output — with the forward pass, backward pass, the optimizer's step and the epoch loop in
Rust. ``model.params`` are ordinary NumPy arrays (``W1, b1, W2, b2, ...``), so every
ferroptim optimizer, ``ParameterEMA``, ``clip_grad_norm`` and ``state_dict`` work on them.

Layout: examples are rows. ``X (m, n_0)``, ``W_l (n_{l-1}, n_l)``, ``b_l (n_l,)``;
``Z_l = A_{l-1} W_l + b_l``, ``A_l = g(Z_l)``, ``A_0 = X``.

Costs (``m`` examples in the batch, ``k`` outputs):

- ``output="sigmoid"``: ``J = 1/m sum_i sum_k -(y log p + (1 - y) log(1 - p))``, computed
  from the logits as ``softplus(z) - y z``; ``dJ/dZ_L = (p - y) / m``.
- ``output="softmax"``: ``J = -1/m sum_i log p_{i, y_i}`` (labels) or
  ``-1/m sum_ik y_ik log p_ik`` (one-hot); ``dJ/dZ_L = (p - y) / m``.
- ``output="identity"``: ``J = 1/(2 m k) sum_ik (a_ik - y_ik)^2`` (scikit-learn's
  ``squared_loss``); ``dJ/dZ_L = (a - y) / (m k)``.
- ``output="identity", loss="huber"``: torch's ``HuberLoss(delta=huber_delta)``, ``r = a - y``:
  ``J = 1/(m k) sum_ik h(r_ik)``, ``h(r) = r^2 / 2`` for ``|r| < delta`` else
  ``delta (|r| - delta / 2)``; ``dJ/dZ_L = clip(r, -delta, delta) / (m k)``.
- ``output="exp"`` (``loss="poisson"``): ``a = exp(z)``, half the Poisson deviance as
  scikit-learn's ``MLPRegressor(loss="poisson")``: ``J = 1/m sum_i sum_k (y log(y / a) - y + a)``
  (``0 log 0 = 0``; targets ``>= 0``); ``dJ/dZ_L = (a - y) / m``.
- ``alpha > 0`` adds ``alpha / (2 m) * sum_l sum W_l**2`` (biases are not penalised), as the
  course and scikit-learn define it.
"""

from __future__ import annotations

from .architecture import HIDDEN as HIDDEN
from .architecture import INITS as INITS
from .architecture import LOSSES as LOSSES
from .architecture import OUTPUTS as OUTPUTS
from .model import History as History

# isort: split
from .model import MLP as MLP

# isort: split
from .callbacks import EarlyStopping as EarlyStopping
from .callbacks import ModelCheckpoint as ModelCheckpoint


def load(path: object) -> MLP:
    """The model :meth:`MLP.save` wrote to ``path``: the same architecture, parameters
    (bit for bit), ``epoch``, ``position`` and ``seed``, so it predicts the same and its
    :meth:`~MLP.fit` continues as if never saved. The file is read without pickle.

    Raises:
        ValueError: a truncated or damaged file, another format, or one written by a newer
            ferroptim (its format version is named).
        FileNotFoundError: no file at ``path``.
    """
    from .persist import load as _load

    return _load(path)


def load_optimizer_state(path: object, optimizer: object) -> None:
    """Restores into ``optimizer`` the state :meth:`MLP.save` wrote with
    ``optimizer=opt``: step counts and moment buffers, per parameter. Build ``optimizer``
    as the saved one was (same class, hyper-parameters and schedule) on the loaded model's
    ``params``; the hyper-parameters are the code's, not the file's.

    Raises:
        ValueError: the file holds no optimizer state, or one that does not fit
            ``optimizer`` (checked before anything changes).
    """
    from .persist import load_optimizer_state as _load_state

    _load_state(path, optimizer)


__all__ = ["MLP", "History", "EarlyStopping", "ModelCheckpoint", "load", "load_optimizer_state"]

# Pickles and the API reference name a class by its module: the public classes keep the path
# they had before nn.py became a package (``ferroptim.nn.MLP``), so pickles made before and
# after the split load either way, and the split stays an inner detail.
for _name in ("MLP", "History", "EarlyStopping", "ModelCheckpoint"):
    globals()[_name].__module__ = __name__
del _name
