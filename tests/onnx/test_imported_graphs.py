"""Graphs from other exporters, as a new user would bring them: older opsets, IR version 3
(initializers among the graph inputs), residuals added with Sum, no module scopes, a Softmax at
the end. They run like any other graph, their junctions are named after the graph's own adds,
and the probe's loss on their probabilities is the negative log-likelihood of its labels."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

import gradflow
from gradflow.errors import UnsupportedOpError
from gradflow.onnx import OnnxModel
from gradflow.onnx.static import SkipKind, static_junctions
from gradflow.probe import PROBABILITIES_NOTE
from tests.onnx.helpers import run_ort
from tests.onnx.legacy_graphs import CLASSES, TorchResNet, resnet_style
from tests.reference import reference

OPSETS = [7, 8, 9]
JUNCTIONS = ["stage1_unit1_plus", "stage1_unit2_plus"]
METRICS = ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad")


def _image() -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))


def _labels(seed: int = 0) -> torch.Tensor:
    # The probe's seeded labels (gradflow.probe.probe_loss draws them this way).
    return torch.randint(0, CLASSES, (2,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("opset", OPSETS)
def test_runs_like_onnxruntime(opset: int) -> None:
    model, _ = resnet_style(opset)
    x = _image()
    (expected,) = run_ort(model, {"data": x.numpy()})
    got = OnnxModel(model)(x)
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_initializers_among_the_inputs_are_weights_not_inputs() -> None:
    executor = OnnxModel(resnet_style(8)[0])
    assert [spec.name for spec in executor.input_specs] == ["data"]
    parameters = dict(executor.named_parameters())
    assert "stage1_unit1_conv1_weight" in parameters and "fc_bias" in parameters
    assert "bn0_moving_mean" not in parameters  # statistics are buffers
    assert executor.opset == 13  # converted


@pytest.mark.parametrize("opset", OPSETS)
def test_inspect_matches_an_autograd_reference(opset: int) -> None:
    model, weights = resnet_style(opset)
    x = _image()
    report = gradflow.inspect(OnnxModel(model), x, mode="eval", seed=0)
    labels = _labels()

    def nll(probabilities: torch.Tensor) -> torch.Tensor:
        return F.nll_loss(torch.log(probabilities), labels)

    torch_model = TorchResNet(weights)
    rows = reference(torch_model, x, nll)
    assert [j.name for j in report.junctions] == JUNCTIONS
    assert [j.skip for j in report.junctions] == ["identity", "identity"]
    for junction, row in zip(report.junctions, rows):
        for metric in METRICS:
            assert getattr(junction, metric) == pytest.approx(row[metric], rel=1e-4), metric
    probabilities = torch_model(x)
    assert report.summary.loss == pytest.approx(nll(probabilities).item(), rel=1e-5)
    assert report.probe.loss == "ce"
    assert PROBABILITIES_NOTE in report.summary.notes
    # A cross-entropy would apply a second softmax to the probabilities.
    assert report.summary.loss != pytest.approx(
        F.cross_entropy(probabilities, labels).item(), rel=1e-3)


def test_explicit_loss_on_probabilities_is_unchanged() -> None:
    report = gradflow.inspect(OnnxModel(resnet_style(9)[0]), _image(), mode="eval", loss="mse")
    assert PROBABILITIES_NOTE not in report.summary.notes
    probabilities = OnnxModel(resnet_style(9)[0])(_image())
    assert report.summary.loss == pytest.approx(probabilities.pow(2).mean().item(), rel=1e-5)


def test_logits_keep_the_cross_entropy() -> None:
    model, _ = resnet_style(9)
    del model.graph.node[-1]  # the Softmax
    model.graph.output[0].name = "fc_fwd"
    executor = OnnxModel(model)
    report = gradflow.inspect(executor, _image(), mode="eval")
    assert PROBABILITIES_NOTE not in report.summary.notes
    logits = executor(_image())
    assert report.summary.loss == pytest.approx(F.cross_entropy(logits, _labels()).item(), rel=1e-5)


def test_unnamed_nodes_take_their_output_names() -> None:
    model, _ = resnet_style(8, named=False)
    report = gradflow.inspect(OnnxModel(model), _image(), mode="eval")
    assert [j.name for j in report.junctions] == JUNCTIONS


def test_static_junctions_find_the_sum_adds() -> None:
    found = static_junctions(resnet_style(7)[0])
    assert [j.module for j in found] == JUNCTIONS
    assert [j.skip for j in found] == [SkipKind.IDENTITY, SkipKind.IDENTITY]
    assert found[0].fork == "relu0_fwd"


def _alexnet_style() -> onnx.ModelProto:
    # GoogLeNet/AlexNet-era layers at opset 7: LRN, padded MaxPool, Dropout, Gemm, Softmax.
    rng = np.random.default_rng(7)
    conv = numpy_helper.from_array(rng.standard_normal((6, 3, 3, 3)).astype(np.float32), "conv_w")
    fc = numpy_helper.from_array(rng.standard_normal((CLASSES, 24)).astype(np.float32), "fc_w")
    bias = numpy_helper.from_array(rng.standard_normal(CLASSES).astype(np.float32), "fc_b")
    nodes = [
        helper.make_node("Conv", ["data", "conv_w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("LRN", ["r"], ["n"], size=5, alpha=1e-4, beta=0.75, bias=1.0),
        helper.make_node("MaxPool", ["n"], ["p"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Dropout", ["f"], ["d"], ratio=0.5),
        helper.make_node("Gemm", ["d", "fc_w", "fc_b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["prob"]),
    ]
    graph = helper.make_graph(
        nodes, "alexnet",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [2, 3, 4, 4]),
         helper.make_tensor_value_info("conv_w", TensorProto.FLOAT, [6, 3, 3, 3]),
         helper.make_tensor_value_info("fc_w", TensorProto.FLOAT, [CLASSES, 24]),
         helper.make_tensor_value_info("fc_b", TensorProto.FLOAT, [CLASSES])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [2, CLASSES])], [conv, fc, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 7)])
    model.ir_version = 3
    return model


def test_old_operators_run_like_onnxruntime() -> None:
    model = _alexnet_style()
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    (expected,) = run_ort(model, {"data": x.numpy()})
    executor = OnnxModel(model)
    np.testing.assert_allclose(executor(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert executor.exported_mode == "eval"  # an opset-7 Dropout drops nothing at inference


def test_unsupported_operators_are_named_before_running() -> None:
    model = _alexnet_style()
    extra = [
        helper.make_node("FusedGemm", ["d", "fc_w", "fc_b"], ["g1"], name="fused",
                         domain="com.microsoft"),
        helper.make_node("Scaler", ["g1"], ["scaled"], name="scaler", domain="ai.onnx.ml",
                         scale=[2.0]),
    ]
    model.graph.node.extend(extra)
    model.graph.output.append(helper.make_tensor_value_info("scaled", TensorProto.FLOAT, [2, CLASSES]))
    model.opset_import.extend([helper.make_opsetid("com.microsoft", 1),
                               helper.make_opsetid("ai.onnx.ml", 1)])
    with pytest.raises(UnsupportedOpError) as error:
        OnnxModel(model)
    message = str(error.value)
    assert "\n" not in message
    assert "com.microsoft.FusedGemm-1 (nodes: fused)" in message
    assert "ai.onnx.ml.Scaler-1 (nodes: scaler)" in message


def test_track_takes_the_same_loss_on_probabilities() -> None:
    # Step 0 of training measures what inspect does: the likelihood loss, not a cross-entropy.
    from gradflow.track import track

    executor = OnnxModel(resnet_style(9)[0])
    report = gradflow.inspect(executor, _image(), mode="eval", seed=3)
    result = track(executor, _image(), steps=2, seed=3)
    probabilities = OnnxModel(resnet_style(9)[0])(_image())
    assert report.summary.loss == pytest.approx(
        F.nll_loss(torch.log(probabilities), _labels(3)).item(), rel=1e-5)
    assert result.losses[0][1] == pytest.approx(report.summary.loss, rel=1e-6)
    for junction in report.junctions:
        (record,) = [r for r in result.records if r.junction == junction.name and r.step == 0]
        assert record.grad_in == pytest.approx(junction.grad_in, rel=1e-6)
