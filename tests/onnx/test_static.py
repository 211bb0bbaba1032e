"""static_junctions on hand-built graphs and on exported non-residual models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gradflow.onnx import static as static_module
from gradflow.onnx.static import SkipKind, StaticJunction, static_junctions
from tests.onnx.conftest import export
from tests.onnx.models import BiasAndPositions, GeluTanhMLP, ResNet


def _weight(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype=np.float32), name)


def _residual_chain(blocks: int, dim: int = 4) -> onnx.ModelProto:
    """x -> [h = x + relu(x @ W_i)] * blocks; every third block has a projection skip."""
    nodes, weights = [], []
    current = "x"
    for i in range(blocks):
        weights.append(_weight(f"w{i}", dim, dim))
        nodes += [
            helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"], name=f"mm{i}"),
            helper.make_node("Relu", [f"m{i}"], [f"r{i}"], name=f"relu{i}"),
        ]
        skip = current
        if i % 3 == 2:
            weights.append(_weight(f"p{i}", dim, dim))
            nodes.append(helper.make_node("MatMul", [current, f"p{i}"], [f"s{i}"], name=f"proj{i}"))
            skip = f"s{i}"
        nodes.append(helper.make_node("Add", [skip, f"r{i}"], [f"h{i}"], name=f"add{i}"))
        current = f"h{i}"
    graph = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", dim])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["batch", dim])],
        weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_chain_from_a_graph_input() -> None:
    found = static_junctions(_residual_chain(3))
    assert found[0] == StaticJunction(
        name="add0", module="add0", fork="x", skip=SkipKind.IDENTITY,
        block_nodes=("mm0", "relu0"), skip_nodes=(), params=16,
    )
    assert found[2].skip == SkipKind.PROJECTION
    assert found[2].skip_nodes == ("proj2",)
    assert found[2].fork == "h1"


def test_nested_residual() -> None:
    # outer = x + f(x) where f(x) = g(y) + y, y = relu(x @ w1), g = matmul w2
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["a"], name="mm1"),
         helper.make_node("Relu", ["a"], ["y"], name="relu"),
         helper.make_node("MatMul", ["y", "w2"], ["g"], name="mm2"),
         helper.make_node("Add", ["g", "y"], ["inner"], name="inner_add"),
         helper.make_node("Add", ["x", "inner"], ["out"], name="outer_add")],
        "nested",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 4])],
        [_weight("w1", 4, 4), _weight("w2", 4, 4)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    inner, outer = static_junctions(model)
    assert (inner.name, inner.fork, inner.block_nodes, inner.params) == (
        "inner_add", "y", ("mm2",), 16)
    assert (outer.name, outer.fork, outer.params) == ("outer_add", "x", 32)
    assert outer.block_nodes == ("mm1", "relu", "mm2", "inner_add")


def test_integer_fork_and_shape_only_paths_are_not_junctions() -> None:
    # emb1[ids] + emb2[ids] (integer fork), then + positions sliced by Shape(ids).
    graph = helper.make_graph(
        [helper.make_node("Gather", ["e1", "ids"], ["a"], name="g1"),
         helper.make_node("Gather", ["e2", "ids"], ["b"], name="g2"),
         helper.make_node("Add", ["a", "b"], ["ab"], name="sum_embeddings"),
         helper.make_node("Shape", ["ids"], ["shape"], name="shape", start=1, end=2),
         helper.make_node("Slice", ["pos", "zero", "shape", "zero"], ["p"], name="slice"),
         helper.make_node("Add", ["ab", "p"], ["out"], name="add_positions")],
        "embeddings",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 5])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 5, 4])],
        [_weight("e1", 10, 4), _weight("e2", 10, 4), _weight("pos", 8, 4),
         numpy_helper.from_array(np.array([0], dtype=np.int64), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert static_junctions(model) == []


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
@pytest.mark.parametrize(
    ("make", "args"),
    [(GeluTanhMLP, lambda: (torch.randn(2, 16),)),
     (BiasAndPositions, lambda: (torch.randint(0, 30, (2, 12)),))],
    ids=["gelu-tanh-mlp", "bias-and-positions"],
)
def test_non_residual_models(tmp_path: Path, dynamo: bool, make: Callable[[], torch.nn.Module],
                             args: Callable[[], tuple[torch.Tensor, ...]]) -> None:
    torch.manual_seed(0)
    path = tmp_path / "m.onnx"
    export(make().eval(), args(), path, dynamo=dynamo)
    model = onnx.load(str(path))
    assert any(n.op_type == "Add" for n in model.graph.node)
    assert static_junctions(path) == []


def test_resnet_without_running(tmp_path: Path) -> None:
    path = tmp_path / "resnet.onnx"
    export(ResNet(blocks=(2, 2, 2)).eval(), (torch.randn(1, 3, 16, 16),), path, dynamo=False)
    found = static_junctions(path)
    assert [j.module for j in found] == [
        "stages.0.0", "stages.0.1", "stages.1.0", "stages.1.1", "stages.2.0", "stages.2.1"]
    assert [str(j.skip) for j in found] == [
        "identity", "identity", "projection", "identity", "projection", "identity"]


def test_work_grows_linearly(monkeypatch: pytest.MonkeyPatch) -> None:
    # Count heap pops: each junction's walk covers only its own block.
    pops = 0
    real_pop = static_module.heapq.heappop

    def counting_pop(heap: list) -> object:  # type: ignore[type-arg]
        nonlocal pops
        pops += 1
        return real_pop(heap)

    monkeypatch.setattr(static_module.heapq, "heappop", counting_pop)
    counts = {}
    for blocks in (50, 400):
        pops = 0
        assert len(static_junctions(_residual_chain(blocks))) == blocks
        counts[blocks] = pops
    assert counts[400] <= 8 * counts[50] * 1.1
