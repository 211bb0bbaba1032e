"""Graphs built with onnx.helper the way older exporters and model zoos wrote them: opsets 7-9,
IR version 3 (initializers listed among the graph inputs), residuals added with a two-input
`Sum`, no module scopes, a Softmax at the end. Each comes with the same network in plain torch,
which exposes its junctions (`tests.fixtures.models.LoggingModel`) for reference numbers."""

from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from tests.fixtures.models import LoggingModel

CLASSES = 5
CHANNELS = 4


def resnet_style(opset: int, *, named: bool = True) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A two-unit ResNet in the MXNet model-zoo style, and its weights by name. Without `named`,
    nodes carry no names, as some converters write them."""
    rng = np.random.default_rng(opset)
    weights: dict[str, np.ndarray] = {}
    nodes: list[onnx.NodeProto] = []

    def weight(name: str, *shape: int, value: float | None = None) -> str:
        array = np.full(shape, value) if value is not None else rng.standard_normal(shape) * 0.4
        weights[name] = array.astype(np.float32)
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: object) -> None:
        nodes.append(helper.make_node(op, inputs, [output], name=output if named else "", **attrs))

    def batch_norm(x: str, prefix: str) -> str:
        stats = [weight(f"{prefix}_gamma", CHANNELS), weight(f"{prefix}_beta", CHANNELS),
                 weight(f"{prefix}_moving_mean", CHANNELS),
                 weight(f"{prefix}_moving_var", CHANNELS, value=1.5)]
        extra = {"spatial": 1} if opset < 9 else {}
        node("BatchNormalization", [x, *stats], f"{prefix}_fwd", epsilon=1e-5, **extra)
        return f"{prefix}_fwd"

    node("Conv", ["data", weight("conv0_weight", CHANNELS, 3, 3, 3)], "conv0_fwd", pads=[1] * 4)
    node("Relu", [batch_norm("conv0_fwd", "bn0")], "relu0_fwd")
    x = "relu0_fwd"
    for unit in (1, 2):
        p = f"stage1_unit{unit}"
        node("Conv", [x, weight(f"{p}_conv1_weight", CHANNELS, CHANNELS, 3, 3)], f"{p}_conv1_fwd",
             pads=[1] * 4)
        node("Relu", [batch_norm(f"{p}_conv1_fwd", f"{p}_bn1")], f"{p}_relu1_fwd")
        node("Conv", [f"{p}_relu1_fwd", weight(f"{p}_conv2_weight", CHANNELS, CHANNELS, 3, 3)],
             f"{p}_conv2_fwd", pads=[1] * 4)
        node("Sum", [f"{p}_conv2_fwd", x], f"{p}_plus")
        node("Relu", [f"{p}_plus"], f"{p}_relu_fwd")
        x = f"{p}_relu_fwd"
    node("GlobalAveragePool", [x], "pool_fwd")
    node("Flatten", ["pool_fwd"], "flatten_fwd")
    node("Gemm", ["flatten_fwd", weight("fc_weight", CLASSES, CHANNELS), weight("fc_bias", CLASSES)],
         "fc_fwd", transB=1)
    node("Softmax", ["fc_fwd"], "softmax_fwd")
    initializers = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, [2, 3, 8, 8])]
    # IR version 3: every initializer is also a graph input, its value that input's default.
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in initializers]
    graph = helper.make_graph(nodes, "resnet", inputs,
                              [helper.make_tensor_value_info("softmax_fwd", TensorProto.FLOAT,
                                                             [2, CLASSES])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 3
    return model, weights


class TorchResNet(LoggingModel):
    """The network `resnet_style` builds, in torch, from the same weights."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.p = torch.nn.ParameterDict({
            k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in weights.items()
            if "moving" not in k
        })
        self.stats = {k: torch.from_numpy(v.copy()) for k, v in weights.items() if "moving" in k}

    def _bn(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        return F.batch_norm(x, self.stats[f"{prefix}_moving_mean"], self.stats[f"{prefix}_moving_var"],
                            self.p[f"{prefix}_gamma"], self.p[f"{prefix}_beta"], False, 0.0, 1e-5)

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        self.log.clear()
        x = F.relu(self._bn(F.conv2d(data, self.p["conv0_weight"], padding=1), "bn0"))
        for unit in (1, 2):
            p = f"stage1_unit{unit}"
            w1, w2 = self.p[f"{p}_conv1_weight"], self.p[f"{p}_conv2_weight"]
            h = F.relu(self._bn(F.conv2d(x, w1, padding=1), f"{p}_bn1"))
            block = F.conv2d(h, w2, padding=1)
            params = [w1, self.p[f"{p}_bn1_gamma"], self.p[f"{p}_bn1_beta"], w2]
            x = F.relu(self.junction(x, x, block, params))
        logits = F.linear(x.mean((2, 3)), self.p["fc_weight"], self.p["fc_bias"])
        return torch.softmax(logits, dim=-1)
