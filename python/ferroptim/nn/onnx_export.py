"""The network as an ONNX graph: :meth:`ferroptim.nn.MLP.to_onnx` (the ``onnx`` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .model import MLP

_OPSET = 13


def to_onnx(model: MLP, opset: int = _OPSET) -> Any:
    """See :meth:`ferroptim.nn.MLP.to_onnx`."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ImportError("MLP.to_onnx needs the onnx package: pip install ferroptim[onnx]") from None
    from ._args import _int

    opset = _int("opset", opset, 9)
    params = model._param_list()
    elem = TensorProto.FLOAT if model.dtype == np.float32 else TensorProto.DOUBLE
    L = len(model.layer_sizes) - 1
    nodes, inits = [], []
    a = "X"
    for l in range(1, L + 1):
        W, b = params[2 * l - 2], params[2 * l - 1]
        inits += [numpy_helper.from_array(W, f"W{l}"), numpy_helper.from_array(b, f"b{l}")]
        z = f"Z{l}"
        nodes.append(helper.make_node("Gemm", [a, f"W{l}", f"b{l}"], [z], name=f"dense{l}"))
        act = model.activations[l - 1] if l < L else model.output
        out = f"A{l}" if l < L else "Y"
        if act == "identity":
            nodes.append(helper.make_node("Identity", [z], [out], name=f"act{l}"))
        elif act == "leaky_relu" and model.dtype == np.float32:
            nodes.append(helper.make_node("LeakyRelu", [z], [out], alpha=0.01, name=f"act{l}"))
        elif act == "leaky_relu":  # onnxruntime has no float64 LeakyRelu: max(z, 0.01 z)
            if not any(i.name == "slope" for i in inits):
                inits.append(numpy_helper.from_array(np.array(0.01, model.dtype), "slope"))
            nodes.append(helper.make_node("Mul", [z, "slope"], [f"S{l}"], name=f"slope{l}"))
            nodes.append(helper.make_node("Max", [z, f"S{l}"], [out], name=f"act{l}"))
        elif act == "softmax":
            nodes.append(helper.make_node("Softmax", [z], [out], axis=1, name=f"act{l}"))
        else:
            op = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "exp": "Exp"}[act]
            nodes.append(helper.make_node(op, [z], [out], name=f"act{l}"))
        a = out
    graph = helper.make_graph(
        nodes,
        "ferroptim_mlp",
        [helper.make_tensor_value_info("X", elem, [None, model.layer_sizes[0]])],
        [helper.make_tensor_value_info("Y", elem, [None, model.layer_sizes[-1]])],
        initializer=inits,
    )
    proto = helper.make_model(
        graph, producer_name="ferroptim", opset_imports=[helper.make_opsetid("", opset)]
    )
    proto.ir_version = min(proto.ir_version, 8)  # readable by older onnxruntimes too
    onnx.checker.check_model(proto)
    return proto
