"""Junction names for the adds of graphs that record no module scopes."""

from __future__ import annotations

from onnx import TensorProto, helper

from gradflow.onnx.add_names import MAX_LENGTH, add_names
from gradflow.onnx.graph import build_graph


def _graph(adds: list[tuple[str, str, str]], sums: int = 2) -> dict[str, str]:
    """A chain of adds given as (op, node name, output name); returns add_names of it."""
    nodes, current = [], "x"
    for op, name, output in adds:
        inputs = [current] * (sums if op == "Sum" else 2)
        nodes.append(helper.make_node(op, inputs, [output], name=name))
        current = output
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info(current, TensorProto.FLOAT, [2])])
    return add_names(build_graph(helper.make_model(graph)))


def test_tf2onnx_paths_lose_their_shared_prefix_and_op_part() -> None:
    names = _graph([
        ("Add", "StatefulPartitionedCall/resnet50/conv2_block1_add/add", "a:0"),
        ("Add", "StatefulPartitionedCall/resnet50/conv2_block2_add/add", "b:0"),
    ])
    assert list(names.values()) == ["conv2_block1_add", "conv2_block2_add"]


def test_unnamed_nodes_take_their_output_tensor_without_its_index() -> None:
    names = _graph([("Add", "", "model/add_1:0"), ("Add", "", "model/add_2:0")])
    assert list(names.values()) == ["add_1", "add_2"]


def test_two_input_sum_is_an_add_and_longer_sums_are_not() -> None:
    assert list(_graph([("Sum", "plus0", "y")]).values()) == ["plus0"]
    assert _graph([("Sum", "plus0", "y")], sums=3) == {}


def test_module_scopes_win() -> None:
    names = _graph([("Add", "/layer1/layer1.0/Add", "y"), ("Add", "resnetv1_plus0", "z")])
    assert names == {"/layer1/layer1.0/Add": "layer1.0", "resnetv1_plus0": "resnetv1_plus0"}


def test_long_names_keep_their_end() -> None:
    long = "block_" + "x" * 80 + "_add"
    (name,) = _graph([("Add", long, "y")]).values()
    assert len(name) == MAX_LENGTH and name.startswith("...") and name.endswith("_add")


def test_a_single_add_keeps_its_path() -> None:
    # Nothing to tell it apart from: only the operator's own part goes.
    assert list(_graph([("Add", "net/stage2/unit3/plus/add", "y")]).values()) == [
        "net/stage2/unit3/plus"]
