"""The operator registry: keys, ranges, duplicates, misses."""

from __future__ import annotations

import onnx
import pytest

from gradflow.onnx.registry import REGISTRY, REVIEWED_OPSET, OpKey, OpRegistry, UnknownOp


def _factory(ctx):  # type: ignore[no-untyped-def]
    return lambda x: x


def test_ranges_pick_the_right_kernel() -> None:
    registry = OpRegistry()
    registry.register("Op", since=13, until=17)(_factory)
    registry.register("Op", since=18)(_factory)
    assert registry.lookup("", "Op", 13).key == OpKey("", "Op", 13, 17)
    assert registry.lookup("ai.onnx", "Op", 17).key == OpKey("", "Op", 13, 17)
    assert registry.lookup("", "Op", 25).key == OpKey("", "Op", 18, None)


def test_duplicate_registration_is_an_error() -> None:
    registry = OpRegistry()
    registry.register("Op", since=13)(_factory)
    with pytest.raises(ValueError, match=r"duplicate operator registration: Op\[opset 15\.\.\]"):
        registry.register("Op", since=15)(_factory)
    with pytest.raises(ValueError, match="duplicate"):
        registry.register("Op", since=13, domain="ai.onnx")(_factory)
    registry.register("Op", since=13, domain="com.example")(_factory)


def test_miss_names_the_key() -> None:
    registry = OpRegistry()
    registry.register("Op", since=18)(_factory)
    with pytest.raises(UnknownOp, match=r"Op\[opset 13\.\.13\]'.* for Op are Op\[opset 18\.\.\]"):
        registry.lookup("", "Op", 13)
    with pytest.raises(UnknownOp, match=r"com\.example\.Other\[opset 1\.\.1\]'.* are none"):
        registry.lookup("com.example", "Other", 1)


def test_newer_schemas_than_reviewed_are_not_claimed() -> None:
    # Relu's newest schema is older than the reviewed opset, so any later opset still maps.
    assert REGISTRY.find("", "Relu", REVIEWED_OPSET) is not None
    assert REGISTRY.find("", "Relu", REVIEWED_OPSET + 5) is not None


def test_registered_ops_cover_what_exporters_emit() -> None:
    # Every opset from 13 (or the operator's introduction) to the newest reviewed one.
    emitted = ["Add", "And", "Attention", "AveragePool", "BatchNormalization", "Cast", "Clip",
               "Concat", "Constant", "ConstantOfShape", "Conv", "Div", "Dropout", "Einsum",
               "Equal", "Erf", "Expand", "Flatten", "Gather", "GatherElements", "GatherND",
               "Gelu", "Gemm", "GlobalAveragePool", "GreaterOrEqual", "HardSigmoid",
               "HardSwish", "Identity", "IsNaN", "LayerNormalization", "Less", "LessOrEqual",
               "MatMul", "MaxPool", "Mod", "Mul", "Not", "Pad", "Pow", "Range", "ReduceMean",
               "Relu", "Reshape", "Shape", "Sigmoid", "Slice", "Softmax", "Split", "Sqrt",
               "Squeeze", "Sub", "Tanh", "Transpose", "Trilu", "Unsqueeze", "Where"]
    first: dict[str, int] = {}
    for schema in onnx.defs.get_all_schemas_with_history():
        if schema.domain == "":
            first[schema.name] = min(first.get(schema.name, 1 << 30), schema.since_version)
    newest = min(REVIEWED_OPSET, onnx.defs.onnx_opset_version())
    missing = [
        f"{op}-{opset}"
        for op in emitted
        for opset in range(max(13, first[op]), newest + 1)
        if REGISTRY.find("", op, opset) is None
    ]
    assert not missing
