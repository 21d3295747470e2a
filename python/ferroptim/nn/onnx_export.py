"""The network as an ONNX graph: :meth:`ferroptim.nn.MLP.to_onnx` (the ``onnx`` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .model import MLP

_OPSET = 13


def _dense_layers(model: MLP) -> list:
    """``(W_l, b_l)`` of each layer as one dense map, batch norm folded in: for a
    batch-normalized layer, with ``s = gamma / sqrt(running_var + eps)``, ``W' = W s``
    (column ``j`` times ``s_j``) and ``b' = beta - running_mean s`` — inference's
    ``gamma (A W - running_mean) / sqrt(running_var + eps) + beta`` — computed in float64
    and rounded once to the model's dtype."""
    p, bufs = model.params, model.buffers
    L = len(model.layer_sizes) - 1
    out = []
    for l in range(1, L + 1):
        if model.batch_norm and l < L:
            s = p[f"gamma{l}"].astype(np.float64) / np.sqrt(
                bufs[f"running_var{l}"].astype(np.float64) + model.batch_norm_eps
            )
            W = p[f"W{l}"].astype(np.float64) * s
            b = p[f"beta{l}"].astype(np.float64) - bufs[f"running_mean{l}"].astype(np.float64) * s
            out.append((W.astype(model.dtype), b.astype(model.dtype)))
        else:
            out.append((p[f"W{l}"], p[f"b{l}"]))
    return out


def to_onnx(model: MLP, opset: int = _OPSET) -> Any:
    """See :meth:`ferroptim.nn.MLP.to_onnx`."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ImportError("MLP.to_onnx needs the onnx package: pip install ferroptim[onnx]") from None
    from ._args import _int

    opset = _int("opset", opset, 9)
    model._param_list()  # the parameters fit the architecture
    model._running_list()
    dense = _dense_layers(model)
    elem = TensorProto.FLOAT if model.dtype == np.float32 else TensorProto.DOUBLE
    L = len(model.layer_sizes) - 1
    nodes, inits = [], []
    a = "X"
    for l in range(1, L + 1):
        W, b = dense[l - 1]
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
