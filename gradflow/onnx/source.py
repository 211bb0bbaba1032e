"""Reading an ONNX file: the bytes, the protobuf, and external data next to it.

Every failure becomes a `SourceError` whose one-line message says what is wrong and what to do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import AttributeProto, ModelProto, TensorProto
from onnx.external_data_helper import load_external_data_for_model

from gradflow.errors import SourceError, first_line
from gradflow.onnx.prepare import prepare_model


def read_model(path: str | Path, *, load_data: bool = True) -> ModelProto:
    """Read, validate and prepare the ONNX model at `path`.

    Args:
        path: an `.onnx` file; external data files must sit in its folder (or below it).
        load_data: load external tensor data (False when only the structure is needed; the
            data files are still checked to exist).

    Returns:
        The prepared model (see `prepare_model`), with external data loaded if asked.

    Raises:
        SourceError: the file is missing, empty, not an ONNX protobuf, fails the ONNX checker,
            or its external data is missing or lies outside the model's folder.
    """
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file; check the path to the .onnx model")
    if not path.is_file():
        raise SourceError(f"{path}: not a regular file; pass the path of an .onnx model file")
    size = path.stat().st_size
    if size == 0:
        raise SourceError(f"{path}: the file is empty; re-export or re-download the model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError) as e:
        raise SourceError(
            f"{path}: not a readable ONNX model (truncated, or not an ONNX protobuf file: "
            f"{first_line(e)}); re-export or re-download it"
        ) from e
    if not model.HasField("graph") and not model.opset_import:
        raise SourceError(
            f"{path}: not an ONNX model (no graph and no opset); re-export or re-download it"
        )
    external = list(_external_tensors(model))
    base = path.parent
    for tensor in external:
        _check_external_location(path, base, tensor)
    model = prepare_model(model, path=path, check_path=bool(external) or size > _PROTO_LIMIT)
    if external and load_data:
        try:
            load_external_data_for_model(model, str(base))
        except Exception as e:
            raise SourceError(
                f"{path}: cannot read external data ({first_line(e)}); keep the data files "
                "next to the model as it was saved"
            ) from e
    return model


# Above this size, validate through the path so the checker never serializes a huge proto.
_PROTO_LIMIT = 1 << 30


def _external_tensors(model: ModelProto) -> Iterator[TensorProto]:
    for tensor in model.graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL:
            yield tensor
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR and attr.t.data_location == TensorProto.EXTERNAL:
                yield attr.t
            elif attr.type == AttributeProto.TENSORS:
                yield from (t for t in attr.tensors if t.data_location == TensorProto.EXTERNAL)


def _check_external_location(path: Path, base: Path, tensor: TensorProto) -> None:
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    if not location:
        raise SourceError(
            f"{path}: tensor '{tensor.name}' is stored externally but names no data file; "
            "re-save the model with onnx.save(..., save_as_external_data=True)"
        )
    root = os.path.realpath(base)
    target = os.path.realpath(os.path.join(root, location))
    if os.path.isabs(location) or os.path.commonpath([root, target]) != root:
        raise SourceError(
            f"{path}: external data '{location}' of tensor '{tensor.name}' lies outside the "
            "model's folder; refusing to read it: move the data next to the model and re-save it"
        )
    if not os.path.isfile(target):
        raise SourceError(
            f"{path}: external data file '{location}' of tensor '{tensor.name}' is missing; "
            f"copy it into {base} next to the model"
        )
    end = int(info.get("offset", "0") or 0) + int(info.get("length", "0") or 0)
    if end > os.path.getsize(target):
        raise SourceError(
            f"{path}: external data file '{location}' is shorter than tensor '{tensor.name}' "
            "needs (truncated copy?); copy it again"
        )
