"""Bad ONNX files and graphs: every failure is a gradflow error with a one-line message."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gradflow.errors import ModelError, SourceError, UnsupportedOpError
from gradflow.onnx import OnnxModel, load_onnx_model


def _matmul_model(opset: int = 18) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "weight")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "weight"], ["h"], name="mm"),
         helper.make_node("Relu", ["h"], ["y"], name="relu")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_loads_and_runs(tmp_path: Path) -> None:
    model = load_onnx_model(_save(_matmul_model(), tmp_path / "m.onnx"))
    y = model(torch.randn(3, 4))
    assert y.shape == (3, 4)
    assert [p for p, _ in model.named_parameters()] == ["weight"]
    assert model.onnx_names["weight"] == "weight"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as error:
        load_onnx_model(tmp_path / "nope.onnx")
    assert "no such file" in _one_line(error)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as error:
        load_onnx_model(tmp_path)
    assert "not a regular file" in _one_line(error)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    with pytest.raises(SourceError) as error:
        load_onnx_model(fifo)
    assert "not a regular file" in _one_line(error)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(SourceError) as error:
        load_onnx_model(path)
    assert "empty" in _one_line(error)


def test_truncated_file(tmp_path: Path) -> None:
    data = _matmul_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError) as error:
        load_onnx_model(path)
    assert "re-export" in _one_line(error)


@pytest.mark.parametrize("content", [b"hello, this is not a model\n", bytes(range(256)) * 4])
def test_not_protobuf(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "text.onnx"
    path.write_bytes(content)
    with pytest.raises(SourceError) as error:
        load_onnx_model(path)
    _one_line(error)


def test_checker_failure(tmp_path: Path) -> None:
    model = _matmul_model()
    model.graph.node[1].attribute.append(helper.make_attribute("alpha", "not a float"))
    with pytest.raises(SourceError) as error:
        load_onnx_model(_save(model, tmp_path / "bad.onnx"))
    assert "checker" in _one_line(error)


def test_missing_input(tmp_path: Path) -> None:
    model = _matmul_model()
    model.graph.node[1].input[0] = "ghost"
    with pytest.raises(SourceError) as error:
        load_onnx_model(_save(model, tmp_path / "m.onnx"))
    assert "'ghost'" in _one_line(error)


def test_cyclic_graph(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "c"], ["a"], name="first"),
         helper.make_node("Relu", ["a"], ["b"], name="second"),
         helper.make_node("Neg", ["b"], ["c"], name="third")],
        "cycle",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(SourceError) as error:
        load_onnx_model(_save(model, tmp_path / "cycle.onnx"))
    message = _one_line(error)
    assert "cycle" in message and "'first'" in message and "'third'" in message


def test_unsorted_graph_is_sorted(tmp_path: Path) -> None:
    model = _matmul_model()
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    loaded = load_onnx_model(_save(model, tmp_path / "unsorted.onnx"))
    x = torch.randn(2, 4)
    torch.testing.assert_close(loaded(x), torch.relu(x @ torch.ones(4, 4)))


def _external(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save(_matmul_model(), str(folder / "m.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="m.data", size_threshold=0)
    return folder / "m.onnx"


def test_external_data(tmp_path: Path) -> None:
    model = load_onnx_model(_external(tmp_path))
    torch.testing.assert_close(model(torch.ones(1, 4)), torch.full((1, 4), 4.0))


def test_missing_external_data(tmp_path: Path) -> None:
    path = _external(tmp_path)
    (path.parent / "m.data").unlink()
    with pytest.raises(SourceError) as error:
        load_onnx_model(path)
    assert "missing" in _one_line(error)


def test_truncated_external_data(tmp_path: Path) -> None:
    path = _external(tmp_path)
    data = path.parent / "m.data"
    data.write_bytes(data.read_bytes()[:10])
    with pytest.raises(SourceError) as error:
        load_onnx_model(path)
    assert "shorter" in _one_line(error)


@pytest.mark.parametrize("location", ["../outside.data", "/etc/passwd", "sub/../../outside.data"])
def test_external_data_outside_the_folder(tmp_path: Path, location: str) -> None:
    path = _external(tmp_path)
    (tmp_path / "outside.data").write_bytes(b"\0" * 64)
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(model, str(path))
    with pytest.raises(SourceError) as error:
        load_onnx_model(path)
    assert "outside the model's folder" in _one_line(error)


def test_unsupported_ops_listed_at_once(tmp_path: Path) -> None:
    # Quantized operators are out of the executor's scope (see README).
    scale = numpy_helper.from_array(np.array(0.1, dtype=np.float32), "scale")
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "scale"], ["q1"], name="quant1"),
         helper.make_node("DequantizeLinear", ["q1", "scale"], ["a"], name="dequant1"),
         helper.make_node("Relu", ["a"], ["b"], name="fine"),
         helper.make_node("QuantizeLinear", ["b", "scale"], ["q2"], name="quant2"),
         helper.make_node("DequantizeLinear", ["q2", "scale"], ["c"], name="dequant2"),
         helper.make_node("FusedThing", ["c"], ["y"], name="custom", domain="com.example")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])],
        [scale],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid("com.example", 1)])
    with pytest.raises(UnsupportedOpError) as error:
        load_onnx_model(_save(model, tmp_path / "m.onnx"))
    message = _one_line(error)
    for expected in ("QuantizeLinear-18 (nodes: quant1, quant2)",
                     "DequantizeLinear-18 (nodes: dequant1, dequant2)",
                     "com.example.FusedThing-1 (nodes: custom)"):
        assert expected in message
    assert "fine" not in message


def test_unsupported_feature_listed(tmp_path: Path) -> None:
    # float8 is out of the executor's scope (torch computes nothing in it).
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], name="to_fp8", to=TensorProto.FLOAT8E4M3FN)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT8E4M3FN, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    with pytest.raises(UnsupportedOpError) as error:
        load_onnx_model(_save(model, tmp_path / "m.onnx"))
    assert "to_fp8 (Cast): cast to FLOAT8E4M3FN" in _one_line(error)


def test_old_opset_is_converted() -> None:
    model = OnnxModel(_matmul_model(opset=11))
    assert model.opset == 13
    assert model(torch.ones(1, 4)).shape == (1, 4)


def test_failing_node_is_named() -> None:
    model = OnnxModel(_matmul_model())
    with pytest.raises(ModelError) as error:
        model(torch.randn(2, 5))
    assert "'mm' (MatMul)" in _one_line(error)


def test_corrupt_tensor_data(tmp_path: Path) -> None:
    model = _matmul_model()
    model.graph.initializer[0].raw_data = model.graph.initializer[0].raw_data[:20]
    with pytest.raises(SourceError) as error:
        load_onnx_model(_save(model, tmp_path / "corrupt.onnx"))
    assert "weight" in _one_line(error)
