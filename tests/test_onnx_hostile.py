"""ONNX files are data: hostile or malformed graphs end in a report or a one-line error, never a
crash, a hang, or a read outside the model's folder. Includes a bounded, seeded mutation fuzzer
over the bundled ONNX files (flipped bytes, dropped nodes, changed attributes)."""

from __future__ import annotations

import random
from pathlib import Path

import onnx
import pytest
from onnx import helper

from tests.conftest import ROOT

FILES = sorted((ROOT / "tests" / "fixtures" / "onnx").glob("*.onnx"))
CASES_PER_KIND = 12


def _outcome(gradflow_cli, path: Path):  # type: ignore[no-untyped-def]
    """Run inspect; the outcome must be a report (exit 0) or a clean one-line error (exit 2)."""
    result = gradflow_cli("inspect", path, "--format", "json", "--memory-limit", "2GiB")
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        assert result.stdout.lstrip().startswith("{")
        return "report"
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gradflow: error:"), result.stderr
    assert "internal error" not in lines[0], lines[0]
    return "error"


def _flip_bytes(data: bytes, rng: random.Random) -> bytes:
    mutable = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        mutable[rng.randrange(len(mutable))] ^= 1 << rng.randrange(8)
    return bytes(mutable)


def _drop_node(model: onnx.ModelProto, rng: random.Random) -> onnx.ModelProto:
    del model.graph.node[rng.randrange(len(model.graph.node))]
    return model


def _change_attribute(model: onnx.ModelProto, rng: random.Random) -> onnx.ModelProto:
    nodes = [n for n in model.graph.node if n.attribute]
    attribute = rng.choice(rng.choice(nodes).attribute)
    if attribute.type == onnx.AttributeProto.INT:
        attribute.i = rng.choice([-1, 0, 7, 2**31 - 1, -(2**40)])
    elif attribute.type == onnx.AttributeProto.INTS:
        attribute.ints[:] = rng.choice([[], [0], [-5, 9], [2**31 - 1] * 4])
    elif attribute.type == onnx.AttributeProto.FLOAT:
        attribute.f = rng.choice([float("nan"), float("inf"), -1.0, 0.0])
    elif attribute.type == onnx.AttributeProto.TENSOR:
        attribute.t.raw_data = b"\x00\x01"
    else:
        attribute.name = attribute.name + "_bogus"
    return model


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
@pytest.mark.parametrize("kind", ["flip_bytes", "drop_node", "change_attribute"])
def test_mutations_end_in_a_report_or_a_clean_error(gradflow_cli, tmp_path, path, kind) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(f"{path.name}-{kind}")
    outcomes = []
    for case in range(CASES_PER_KIND):
        target = tmp_path / f"{case}.onnx"
        if kind == "flip_bytes":
            target.write_bytes(_flip_bytes(path.read_bytes(), rng))
        else:
            model = onnx.load(path)
            mutated = _drop_node(model, rng) if kind == "drop_node" else _change_attribute(model, rng)
            target.write_bytes(mutated.SerializeToString())
        outcomes.append(_outcome(gradflow_cli, target))
    assert "error" in outcomes  # the mutations do break things, and each break is reported cleanly


def test_huge_declared_dimensions_are_refused_before_allocation(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = onnx.load(FILES[0])
    for dim in model.graph.input[0].type.tensor_type.shape.dim:
        dim.ClearField("dim_param")
        dim.dim_value = 10**6
    target = tmp_path / "huge.onnx"
    onnx.save(model, target)
    result = gradflow_cli("inspect", target, "--memory-limit", "2GiB")
    assert result.exit_code == 2
    assert "probe batch alone would take" in result.stderr


def test_a_cyclic_graph_is_a_clean_error(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="first"),
             helper.make_node("Relu", ["a"], ["b"], name="second"),
             helper.make_node("Identity", ["b"], ["y"], name="out")]
    model = helper.make_model(helper.make_graph(nodes, "cycle", [x], [y]))
    target = tmp_path / "cycle.onnx"
    target.write_bytes(model.SerializeToString())
    assert _outcome(gradflow_cli, target) == "error"


def test_missing_graph_input_is_a_clean_error(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = onnx.load(FILES[0])
    del model.graph.input[0]
    target = tmp_path / "no_input.onnx"
    target.write_bytes(model.SerializeToString())
    assert _outcome(gradflow_cli, target) == "error"


def test_external_data_outside_the_model_folder_is_never_read(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x00" * 4096)
    folder = tmp_path / "models"
    folder.mkdir()
    model = onnx.load(FILES[0])
    initializer = next(t for t in model.graph.initializer if len(t.dims) >= 2)
    initializer.ClearField("raw_data")
    initializer.ClearField("float_data")
    initializer.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "4096")):
        entry = initializer.external_data.add()
        entry.key, entry.value = key, value
    target = folder / "escape.onnx"
    target.write_bytes(model.SerializeToString())
    result = gradflow_cli("inspect", target)
    assert result.exit_code == 2
    assert "outside" in result.stderr or "escape" in result.stderr, result.stderr
