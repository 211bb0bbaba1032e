"""If, Loop and Scan whose bodies read tensors of the graphs around them, against onnxruntime,
and gradients through them against plain torch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gradflow.errors import UnsupportedOpError
from gradflow.onnx import OnnxModel
from tests.onnx.helpers import run_ort

F32 = TensorProto.FLOAT


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
           outputs: list[onnx.ValueInfoProto], initializers: list[onnx.TensorProto]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "main", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _recurrent_loop() -> tuple[onnx.ModelProto, np.ndarray]:
    """h_{t+1} = tanh(h_t @ W + x_t) for the rows x_t of x, W an initializer the body reads from
    the main graph; returns the final h and every h."""
    weight = (np.random.default_rng(0).standard_normal((3, 3)) * 0.5).astype(np.float32)
    body = helper.make_graph(
        [helper.make_node("Gather", ["x", "i"], ["x_t"], axis=0),
         helper.make_node("MatMul", ["h", "W"], ["hw"]),
         helper.make_node("Add", ["hw", "x_t"], ["pre"]),
         helper.make_node("Tanh", ["pre"], ["h_next"]),
         helper.make_node("Identity", ["cond"], ["cond_out"]),
         helper.make_node("Identity", ["h_next"], ["h_scan"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h", F32, [2, 3])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_next", F32, [2, 3]),
         helper.make_tensor_value_info("h_scan", F32, [2, 3])],
    )
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["steps"], axis=0),
        helper.make_node("Loop", ["steps", "", "h0"], ["h_last", "h_all"], name="loop", body=body),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", F32, [4, 2, 3]),
         helper.make_tensor_value_info("h0", F32, [2, 3])],
        [helper.make_tensor_value_info("h_last", F32, [2, 3]),
         helper.make_tensor_value_info("h_all", F32, [4, 2, 3])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.array(0), "zero")],
    )
    return model, weight


def test_loop_reading_an_outer_weight_matches_onnxruntime_and_autograd() -> None:
    model, weight = _recurrent_loop()
    x, h0 = torch.randn(4, 2, 3), torch.randn(2, 3)
    expected = run_ort(model, {"x": x.numpy(), "h0": h0.numpy()})
    executor = OnnxModel(model)
    h_last, h_all = executor(x, h0)
    np.testing.assert_allclose(h_last.detach().numpy(), expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_all.detach().numpy(), expected[1], rtol=1e-5, atol=1e-6)
    # The weight the body reads is a parameter of the model, and gets its gradient.
    (w,) = [p for name, p in executor.named_parameters() if name == "W"]
    (grad,) = torch.autograd.grad(h_all.sum(), w)
    reference_w = torch.from_numpy(weight.copy()).requires_grad_(True)
    h, total = h0, torch.zeros(())
    for t in range(4):
        h = torch.tanh(h @ reference_w + x[t])
        total = total + h.sum()
    (expected_grad,) = torch.autograd.grad(total, reference_w)
    torch.testing.assert_close(grad, expected_grad)


def _if_model(then_op: str = "Mul", domain: str = "") -> onnx.ModelProto:
    # then: x * scale (an outer initializer); else: x + offset computed in the main graph.
    then_branch = helper.make_graph(
        [helper.make_node(then_op, ["x", "scale"], ["y_then"], name="scale_it", domain=domain)],
        "then", [], [helper.make_tensor_value_info("y_then", F32, [3])])
    else_branch = helper.make_graph(
        [helper.make_node("Add", ["x", "offset"], ["y_else"])],
        "else", [], [helper.make_tensor_value_info("y_else", F32, [3])])
    nodes = [
        helper.make_node("Neg", ["x"], ["offset"]),
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["positive"]),
        helper.make_node("If", ["positive"], ["y"], then_branch=then_branch,
                         else_branch=else_branch),
    ]
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    graph = helper.make_graph(
        nodes, "main", [helper.make_tensor_value_info("x", F32, [3])],
        [helper.make_tensor_value_info("y", F32, [3])],
        [numpy_helper.from_array(np.array([2.0, 3.0, 4.0], np.float32), "scale"),
         numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    return helper.make_model(graph, opset_imports=opsets)


@pytest.mark.parametrize("values", [[1.0, 2.0, 3.0], [-1.0, -2.0, 0.5]], ids=["then", "else"])
def test_if_takes_the_branch_the_condition_names(values: list[float]) -> None:
    model = _if_model()
    x = np.array(values, np.float32)
    (expected,) = run_ort(model, {"x": x})
    np.testing.assert_allclose(OnnxModel(model)(torch.from_numpy(x)).detach().numpy(), expected)


def test_unsupported_operator_inside_a_branch_is_named_up_front() -> None:
    with pytest.raises(UnsupportedOpError) as error:
        OnnxModel(_if_model("Scale2", domain="com.example"))
    assert "com.example.Scale2-1 (nodes: scale_it)" in str(error.value)


def test_scan_in_both_directions_matches_onnxruntime() -> None:
    # Running sums of the rows of x, forwards and backwards, along axis 1.
    body = helper.make_graph(
        [helper.make_node("Add", ["s", "a"], ["s_next"]),
         helper.make_node("Add", ["s_next", "b"], ["out"])],
        "body",
        [helper.make_tensor_value_info("s", F32, [2]), helper.make_tensor_value_info("a", F32, [2]),
         helper.make_tensor_value_info("b", F32, [2])],
        [helper.make_tensor_value_info("s_next", F32, [2]),
         helper.make_tensor_value_info("out", F32, [2])])
    node = helper.make_node("Scan", ["s0", "x", "x"], ["s_last", "outs"], body=body,
                            num_scan_inputs=2, scan_input_axes=[1, 1],
                            scan_input_directions=[0, 1], scan_output_axes=[1],
                            scan_output_directions=[1])
    model = _model([node], [helper.make_tensor_value_info("s0", F32, [2]),
                            helper.make_tensor_value_info("x", F32, [2, 5])],
                   [helper.make_tensor_value_info("s_last", F32, [2]),
                    helper.make_tensor_value_info("outs", F32, [2, 5])], [])
    feeds = {"s0": np.ones(2, np.float32),
             "x": np.arange(10, dtype=np.float32).reshape(2, 5)}
    expected = run_ort(model, feeds)
    got = OnnxModel(model)(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    for ours, ref in zip(got, expected):
        np.testing.assert_allclose(ours.numpy(), ref)


def test_body_constants_follow_the_device_of_the_values() -> None:
    # A body's constants live on the CPU when compiled; called with tensors elsewhere (here on
    # the meta device, which computes shapes only) they follow them.
    body = helper.make_graph(
        [helper.make_node("Add", ["s", "a"], ["sum"]),
         helper.make_node("Mul", ["sum", "two"], ["s_next"]),
         helper.make_node("Identity", ["s_next"], ["out"])],
        "body",
        [helper.make_tensor_value_info("s", F32, [3]), helper.make_tensor_value_info("a", F32, [3])],
        [helper.make_tensor_value_info("s_next", F32, [3]),
         helper.make_tensor_value_info("out", F32, [3])],
        [numpy_helper.from_array(np.full(3, 2.0, np.float32), "two")])
    node = helper.make_node("Scan", ["s0", "x"], ["s_last", "outs"], body=body, num_scan_inputs=1)
    model = _model([node], [helper.make_tensor_value_info("s0", F32, [3]),
                            helper.make_tensor_value_info("x", F32, [4, 3])],
                   [helper.make_tensor_value_info("s_last", F32, [3]),
                    helper.make_tensor_value_info("outs", F32, [4, 3])], [])
    executor = OnnxModel(model)
    s_last, outs = executor(torch.zeros(3, device="meta"), torch.zeros(4, 3, device="meta"))
    assert s_last.device.type == "meta" and outs.shape == (4, 3)
    s_last, _ = executor(torch.zeros(3), torch.ones(4, 3))
    assert torch.equal(s_last, torch.full((3,), 30.0))
