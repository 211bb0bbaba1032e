"""Turning a parsed ModelProto into one the executor can compile: sorted, checked, inlined, typed."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx.inliner
import onnx.shape_inference
import onnx.version_converter
from onnx import ModelProto, NodeProto

from gradflow.errors import SourceError, first_line
from gradflow.onnx.graph import STANDARD_DOMAINS, topological_order

MIN_OPSET = 13

# Scan before opset 9 scans a batch of sequences; the version converter cannot express that in
# Scan-9 (it drops the batch dimension from the graph's interface), so such nodes move to this
# domain before conversion and run with their own semantics (see gradflow.onnx.ops.control).
BATCHED_SCAN_DOMAIN = "gradflow.opset8"


def prepare_model(
    model: ModelProto, *, path: Path | None = None, check_path: bool = False
) -> ModelProto:
    """Validate `model` and make it ready to compile.

    Steps: sort the nodes topologically (the file's order is kept when already valid), run
    `onnx.checker.check_model` (through `path` when `check_path`, for big models and external
    data), convert models older than opset 13 with the ONNX version converter (batched Scan-8
    nodes are kept as they are, see BATCHED_SCAN_DOMAIN), inline
    model-local functions, and run ONNX shape inference so tensors carry element types.

    Args:
        model: a parsed model; not modified (a copy is made when anything must change).
        path: the file it came from, for messages and the path form of the checker.
        check_path: check the file at `path` instead of the in-memory proto.

    Returns:
        The prepared model.

    Raises:
        SourceError: the graph is cyclic or incomplete, fails the checker, or uses an opset the
            installed onnx cannot handle.
    """
    where = f"{path}: " if path is not None else ""
    if not model.HasField("graph"):
        raise SourceError(f"{where}the model has no graph; re-export it")
    graph = model.graph
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    try:
        order = topological_order(graph.node, available)
    except SourceError as e:
        raise SourceError(f"{where}{e}") from e
    if order != list(range(len(graph.node))):
        model = _copy(model)
        nodes = [_clone(model.graph.node[i]) for i in order]
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    try:
        if check_path and path is not None:
            onnx.checker.check_model(str(path))
        else:
            onnx.checker.check_model(model)
    except Exception as e:
        raise SourceError(
            f"{where}the ONNX checker rejects the model: {first_line(e)}; fix or re-export it"
        ) from e
    model = _upgrade_opset(model, where)
    if model.functions:
        try:
            model = onnx.inliner.inline_local_functions(model)
        except Exception as e:
            raise SourceError(
                f"{where}cannot inline the model's local functions ({first_line(e)}); "
                "re-export it without functions"
            ) from e
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as e:
        raise SourceError(f"{where}ONNX shape inference fails: {first_line(e)}") from e
    return model


def _upgrade_opset(model: ModelProto, where: str) -> ModelProto:
    version = next((o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), None)
    newest = onnx.defs.onnx_opset_version()
    if version is None or MIN_OPSET <= version <= newest:
        return model
    if version > newest:
        raise SourceError(
            f"{where}the model uses ONNX opset {version} but the installed onnx knows only up "
            f"to {newest}; upgrade the onnx package"
        )
    if version < 9:
        model = _set_batched_scans_aside(model)
    try:
        return onnx.version_converter.convert_version(model, MIN_OPSET)
    except Exception as e:
        raise SourceError(
            f"{where}the model uses ONNX opset {version} and cannot be converted to opset "
            f"{MIN_OPSET} ({first_line(e)}); re-export it with opset_version>={MIN_OPSET}"
        ) from e


def _set_batched_scans_aside(model: ModelProto) -> ModelProto:
    """A copy of `model` with its Scan nodes (in every graph) in BATCHED_SCAN_DOMAIN."""
    model = _copy(model)
    found = False
    pending = [model.graph]
    while pending:
        graph = pending.pop()
        for node in graph.node:
            if node.op_type == "Scan" and node.domain in STANDARD_DOMAINS:
                node.domain = BATCHED_SCAN_DOMAIN
                found = True
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    pending.append(attr.g)
                pending.extend(attr.graphs)
    if found:
        model.opset_import.append(onnx.helper.make_opsetid(BATCHED_SCAN_DOMAIN, 1))
    return model


def _copy(model: ModelProto) -> ModelProto:
    copy = ModelProto()
    copy.CopyFrom(model)
    return copy


def _clone(node: NodeProto) -> NodeProto:
    copy = NodeProto()
    copy.CopyFrom(node)
    return copy
