"""Random generators, which no reference can match value for value: the shape and element type
they declare, moments that match their distribution, and a seed that repeats the draw."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

from gradflow.onnx import OnnxModel

N = 20_000  # draws per check; five standard errors of a unit variance are 0.035


def _model(op: str, inputs: list[np.ndarray], attrs: dict[str, Any], out_type: int,
           out_shape: list[int]) -> tuple[OnnxModel, dict[str, torch.Tensor]]:
    infos = [helper.make_tensor_value_info(f"in{i}", helper.np_dtype_to_tensor_dtype(v.dtype),
                                           list(v.shape)) for i, v in enumerate(inputs)]
    node = helper.make_node(op, [f"in{i}" for i in range(len(inputs))], ["out"], **attrs)
    graph = helper.make_graph([node], "random", infos,
                              [helper.make_tensor_value_info("out", out_type, out_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    feeds = {f"in{i}": torch.from_numpy(v) for i, v in enumerate(inputs)}
    return OnnxModel(model), feeds


# (op, inputs, attributes, output type, output shape, expected mean, expected std)
CASES = [
    ("RandomNormal", [], {"shape": [N], "mean": 2.0, "scale": 3.0}, TensorProto.FLOAT, [N], 2.0, 3.0),
    ("RandomNormal", [], {"shape": [N], "dtype": TensorProto.DOUBLE}, TensorProto.DOUBLE, [N], 0.0, 1.0),
    ("RandomUniform", [], {"shape": [N], "low": -1.0, "high": 3.0}, TensorProto.FLOAT, [N], 1.0, 4 / 12**0.5),
    ("RandomNormalLike", [np.zeros((N,), np.float32)], {"scale": 0.5}, TensorProto.FLOAT, [N], 0.0, 0.5),
    ("RandomUniformLike", [np.zeros((N,), np.float64)], {}, TensorProto.DOUBLE, [N], 0.5, 1 / 12**0.5),
    ("RandomUniformLike", [np.zeros((N,), np.float32)], {"dtype": TensorProto.DOUBLE},
     TensorProto.DOUBLE, [N], 0.5, 1 / 12**0.5),
    ("Bernoulli", [np.full((N,), 0.3)], {}, TensorProto.DOUBLE, [N], 0.3, 0.21**0.5),
]
COVERED = {(op, 22) for op, *_ in CASES} | {("Multinomial", 22)}


@pytest.mark.parametrize(("op", "inputs", "attrs", "out_type", "shape", "mean", "std"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_draws_follow_the_distribution(op, inputs, attrs, out_type, shape, mean, std) -> None:  # type: ignore[no-untyped-def]
    model, feeds = _model(op, inputs, attrs, out_type, shape)
    torch.manual_seed(0)
    first = model(**feeds)
    second = model(**feeds)
    assert list(first.shape) == shape
    expected = {TensorProto.FLOAT: torch.float32, TensorProto.DOUBLE: torch.float64}[out_type]
    assert first.dtype == expected
    assert abs(first.double().mean().item() - mean) <= 5 * std / N**0.5
    assert first.double().std().item() == pytest.approx(std, rel=0.05)
    assert not torch.equal(first, second), "without a seed, runs draw afresh"


def test_seed_repeats_the_draw() -> None:
    model, feeds = _model("RandomNormal", [], {"shape": [100], "seed": 7.0}, TensorProto.FLOAT, [100])
    torch.manual_seed(1)
    first = model()
    torch.manual_seed(2)
    assert torch.equal(first, model())


def test_random_nodes_are_not_folded_into_constants() -> None:
    model, _ = _model("RandomUniform", [], {"shape": [8]}, TensorProto.FLOAT, [8])
    assert not torch.equal(model(), model())
    assert not list(model.buffers())


def test_multinomial_samples_classes_by_probability() -> None:
    probabilities = np.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]])
    logits = np.log(np.maximum(probabilities, 1e-30)).astype(np.float32)
    model, feeds = _model("Multinomial", [logits], {"sample_size": N}, TensorProto.INT32, [2, N])
    torch.manual_seed(0)
    drawn = model(**feeds)
    assert drawn.shape == (2, N) and drawn.dtype == torch.int32
    for row, p in zip(drawn, probabilities):
        share = torch.bincount(row.long(), minlength=3).double() / N
        assert torch.allclose(share, torch.from_numpy(p), atol=5 * 0.5 / N**0.5)
