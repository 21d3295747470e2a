"""ONNX export of the estimators through skl2onnx (the ``onnx`` extra:
``pip install ferroptim[onnx]``).

skl2onnx finds a converter by the estimator's class; :func:`register_onnx_converters`
registers :class:`~ferroptim.sklearn.MLPClassifier` and
:class:`~ferroptim.sklearn.MLPRegressor` with skl2onnx's own shape calculators and
converters for scikit-learn's MLPs, which read the attributes both share (``coefs_``,
``intercepts_``, ``activation``, ``out_activation_`` and, for classifiers, ``classes_``)::

    import skl2onnx
    from ferroptim.sklearn import MLPClassifier, register_onnx_converters

    register_onnx_converters()
    onx = skl2onnx.to_onnx(MLPClassifier().fit(X, y), X[:1])

Importing :mod:`ferroptim.sklearn` registers them by itself when skl2onnx is already
imported.
"""

from __future__ import annotations

_registered = False


def register_onnx_converters() -> None:
    """Registers :class:`~ferroptim.sklearn.MLPClassifier` (alias
    ``"FerroptimMLPClassifier"``) and :class:`~ferroptim.sklearn.MLPRegressor`
    (``"FerroptimMLPRegressor"``) with skl2onnx (idempotent), so ``skl2onnx.to_onnx(est,
    X[:1])`` converts them as it converts scikit-learn's MLPs: Gemm + activation per layer,
    then the output activation (classifiers: labels and probabilities, with skl2onnx's
    options such as ``zipmap``; regressors: ``variable`` (m, n_outputs)). Float32 and
    float64 estimators convert (the graph's dtype follows ``X[:1]``).

    Raises:
        ImportError: skl2onnx is not installed (``pip install ferroptim[onnx]``).
    """
    global _registered
    if _registered:
        return
    try:
        from skl2onnx import update_registered_converter
        from skl2onnx.operator_converters.multilayer_perceptron import (
            convert_sklearn_mlp_classifier,
            convert_sklearn_mlp_regressor,
        )
        from skl2onnx.shape_calculators.linear_classifier import (
            calculate_linear_classifier_output_shapes,
        )
        from skl2onnx.shape_calculators.linear_regressor import (
            calculate_linear_regressor_output_shapes,
        )
    except ImportError:
        raise ImportError(
            "ONNX export of the estimators needs skl2onnx: pip install ferroptim[onnx]"
        ) from None
    from .classifier import MLPClassifier
    from .regressor import MLPRegressor

    update_registered_converter(
        MLPClassifier,
        "FerroptimMLPClassifier",
        calculate_linear_classifier_output_shapes,
        convert_sklearn_mlp_classifier,
        options={"zipmap": [True, False, "columns"], "nocl": [True, False]},
    )
    update_registered_converter(
        MLPRegressor,
        "FerroptimMLPRegressor",
        calculate_linear_regressor_output_shapes,
        convert_sklearn_mlp_regressor,
    )
    _registered = True
