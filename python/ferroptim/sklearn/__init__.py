"""scikit-learn estimators trained by ferroptim: ``MLPClassifier`` and ``MLPRegressor``.

Drop-in replacements for ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor``
(same constructor parameters, names, defaults, fitted attributes, warnings and verbose
lines), trained by :meth:`ferroptim.nn.MLP.fit`: each epoch's forward pass, backward pass
and optimizer steps run in one Rust call. Needs scikit-learn (``pip install
'ferroptim[sklearn]'``); the rest of ferroptim never imports it. ::

    from ferroptim.sklearn import MLPClassifier      # was: from sklearn.neural_network import ...
    clf = MLPClassifier(hidden_layer_sizes=(100,), random_state=0).fit(X, y)

Beyond scikit-learn's values:

- ``solver``: ``"sgd"`` and ``"adam"`` as in scikit-learn; any ferroptim optimizer by name
  (``"rmsprop"``, ``"momentum"``, ``"adamw"``, ``"nadam"``, ``"radam"``, ``"adamax"``,
  ``"adagrad"``, ``"adadelta"``, ``"lion"``), built with ``lr=learning_rate_init`` (and
  ``betas=(beta_1, beta_2)``, ``eps=epsilon`` where it has them, ``beta=momentum`` for
  ``"momentum"``); or a ferroptim optimizer class or factory, called as
  ``solver(params, lr=learning_rate_init)`` (e.g. ``functools.partial(fo.RMSprop,
  alpha=0.9)``). ``"lbfgs"`` is scikit-learn's: SciPy's L-BFGS-B over the packed
  parameters (``max_iter`` iterations, ``max_fun`` evaluations, ``gtol=tol``), the cost
  and gradient over the whole data from the fused network.
- ``learning_rate``: ``"constant"``, ``"invscaling"`` (``lr = learning_rate_init /
  (t + 1) ** power_t`` after each epoch, ``t`` the samples seen) and ``"adaptive"``
  (``lr /= 5`` each time ``n_iter_no_change`` epochs fail to improve by ``tol``; stop
  below 1e-6) act as in scikit-learn: on ``"sgd"`` (and on ferroptim's other optimizers),
  not on ``"adam"``, which scikit-learn keeps at a constant rate. Any ferroptim schedule
  (a callable ``update -> lr``, see :mod:`ferroptim.schedules`) becomes the optimizer's
  ``lr`` for every solver; ``learning_rate_init`` is then unused.
- ``batch_size``: ``"auto"`` (``min(200, n_samples)``), an integer, or a function
  ``epoch -> batch size`` (``epoch`` counting from 0 over the estimator's life), clipped to
  ``[1, n_samples]`` — small batches to explore early, large ones to exploit late.

Differences: dense input only (sparse matrices raise scikit-learn's
``TypeError``). ``MLPRegressor(loss="poisson")`` trains scikit-learn's exponential output with
half the Poisson deviance. ONNX export through skl2onnx
after :func:`register_onnx_converters` (the ``onnx`` extra). The SGD solver is torch's
(``b = momentum * b + g; p -= lr * b``, Nesterov ``p -= lr * (g + momentum * b)``), which
equals scikit-learn's velocity form while the rate is constant; Adam is torch's, with
``epsilon`` outside the bias correction.
"""

from __future__ import annotations

try:
    from .classifier import MLPClassifier
    from .regressor import MLPRegressor
except ImportError as e:
    if e.name is None or e.name.split(".")[0] != "sklearn":
        raise
    raise ImportError(
        f"ferroptim.sklearn needs scikit-learn >= 1.6: pip install 'ferroptim[sklearn]' ({e})", name=e.name
    ) from e

# isort: split
import sys as _sys

from .onnx import register_onnx_converters

__all__ = ["MLPClassifier", "MLPRegressor", "register_onnx_converters"]

if "skl2onnx" in _sys.modules:  # already imported (and so cheap): register the converters now
    register_onnx_converters()

# Pickles, doctest and the API reference name a class by its module: the estimators keep the
# path they had before sklearn.py became a package (``ferroptim.sklearn.MLPClassifier``), so
# pickles made before and after the split load either way, and the split stays an inner detail.
for _name in ("MLPClassifier", "MLPRegressor"):
    globals()[_name].__module__ = __name__
del _name
