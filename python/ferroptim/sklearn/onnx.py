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
imported. ``MLPRegressor(loss="poisson")`` (``out_activation_ == "exp"``, which skl2onnx's
converter does not know) converts to the same graph followed by an ``Exp`` node.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

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
        _convert_regressor,
    )
    _registered = True


def _convert_regressor(scope: Any, operator: Any, container: Any) -> None:
    """skl2onnx's MLPRegressor converter, and for an exponential output (``loss="poisson"``)
    its graph of the logits (the output as identity) followed by ``Exp``."""
    from skl2onnx.common._apply_operation import apply_reshape
    from skl2onnx.common.data_types import guess_proto_type
    from skl2onnx.operator_converters.multilayer_perceptron import _predict, convert_sklearn_mlp_regressor
    from skl2onnx.proto import onnx_proto

    est = operator.raw_operator
    if est.out_activation_ != "exp":
        convert_sklearn_mlp_regressor(scope, operator, container)
        return
    proto_dtype = guess_proto_type(operator.inputs[0].type)
    if proto_dtype != onnx_proto.TensorProto.DOUBLE:
        proto_dtype = onnx_proto.TensorProto.FLOAT
    logits = SimpleNamespace(
        coefs_=est.coefs_,
        intercepts_=est.intercepts_,
        n_layers_=est.n_layers_,
        activation=est.activation,
        out_activation_="identity",
    )
    z = _predict(scope, operator.inputs[0].full_name, container, logits, proto_dtype)
    y = scope.get_unique_variable_name("exp_result")
    container.add_node("Exp", z, y, name=scope.get_unique_operator_name("Exp"))
    apply_reshape(scope, y, operator.output_full_names, container, desired_shape=(-1, 1))
