"""OnnxModel as an nn.Module: parameters versus buffers, names, outputs, add sites."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from gradflow.engine.sites import recording
from gradflow.onnx import OnnxModel


def _array(name: str, value: object, dtype: type = np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=dtype), name)


def _model() -> onnx.ModelProto:
    # y = (x @ W + b) * 0.5 + x ; shape tensor and BN statistics are not trainable.
    nodes = [
        helper.make_node("MatMul", ["x", "layer.0.weight"], ["h"], name="/layer.0/MatMul"),
        helper.make_node("Add", ["h", "layer.0.bias"], ["hb"], name="/layer.0/Add"),
        helper.make_node("Mul", ["hb", "half"], ["scaled"], name="mul"),
        helper.make_node("Add", ["scaled", "x"], ["res"], name="residual"),
        helper.make_node("Reshape", ["res", "shape"], ["r4"], name="reshape"),
        helper.make_node("BatchNormalization", ["r4", "bn.weight", "bn.bias", "bn.mean", "bn.var"],
                         ["bn"], name="bn"),
        helper.make_node("Constant", [], ["two"], name="const", value=_array("v", 2.0)),
        helper.make_node("Mul", ["bn", "two"], ["doubled"], name="double"),
        helper.make_node("Mul", ["doubled", "layer_0_weight"], ["y"], name="unit"),
        helper.make_node("Identity", ["x"], ["x_copy"], name="copy"),
    ]
    initializers = [
        _array("layer.0.weight", np.eye(4) * 2), _array("layer.0.bias", [1, 2, 3, 4]),
        _array("layer_0_weight", [1.0]), _array("half", 0.5),
        _array("shape", [0, 4, 1, 1], np.int64),
        _array("bn.weight", np.ones(4)), _array("bn.bias", np.zeros(4)),
        _array("bn.mean", np.zeros(4)), _array("bn.var", np.ones(4)),
        _array("forward", [3.0]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 1, 1]),
         helper.make_tensor_value_info("x_copy", TensorProto.FLOAT, ["n", 4]),
         helper.make_tensor_value_info("forward", TensorProto.FLOAT, [1])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_parameters_and_buffers() -> None:
    model = OnnxModel(_model())
    params = {model.onnx_names[n]: p.shape for n, p in model.named_parameters()}
    assert params == {"layer.0.weight": (4, 4), "layer.0.bias": (4,), "bn.weight": (4,),
                      "bn.bias": (4,), "layer_0_weight": (1,)}
    buffers = {model.onnx_names[n] for n, _ in model.named_buffers()}
    assert {"half", "shape", "bn.mean", "bn.var", "forward"} <= buffers
    # "." is not allowed in module attribute names; clashes get a suffix.
    assert {n for n, _ in model.named_parameters()} == {
        "layer_0_weight", "layer_0_bias", "bn_weight", "bn_bias", "layer_0_weight_1"}
    assert "forward" not in dict(model.named_buffers())


def test_outputs_and_gradients() -> None:
    model = OnnxModel(_model())
    x = torch.randn(3, 4)
    y, x_copy, constant = model(x)
    expected = (((x @ (torch.eye(4) * 2) + torch.tensor([1.0, 2, 3, 4])) * 0.5 + x) * 2)
    torch.testing.assert_close(y, expected.reshape(3, 4, 1, 1), rtol=1e-4, atol=1e-4)
    assert x_copy is x
    torch.testing.assert_close(constant, torch.tensor([3.0]))
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_converts_dtype() -> None:
    model = OnnxModel(_model()).double()
    y, _, _ = model(torch.randn(2, 4, dtype=torch.float64))
    assert y.dtype == torch.float64


def test_every_add_is_recorded_with_its_scope() -> None:
    model = OnnxModel(_model())
    with recording() as sites:
        model(torch.randn(2, 4))
    recorded = sorted((s.module, s.location) for s in sites.values())
    assert recorded == [("layer.0", "/layer.0/Add"), ("residual", "residual")]


def test_state_dict_round_trip() -> None:
    model = OnnxModel(_model())
    state = model.state_dict()
    other = OnnxModel(_model())
    with torch.no_grad():
        for p in other.parameters():
            p.zero_()
    other.load_state_dict(state)
    x = torch.randn(2, 4)
    torch.testing.assert_close(other(x)[0], model(x)[0])
