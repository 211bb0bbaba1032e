"""Node attributes as Python values, with the defaults the operator schema declares."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import torch
from onnx import AttributeProto, NodeProto, TensorProto, numpy_helper

from gradflow.errors import SourceError, first_line
from gradflow.onnx.dtypes import torch_dtype, type_name
from gradflow.onnx.registry import NotSupported


def node_attributes(node: NodeProto, schema: onnx.defs.OpSchema | None) -> dict[str, Any]:
    """The attributes of `node`: schema defaults first, then what the node sets.

    Args:
        node: the node.
        schema: its operator schema at the model's opset (None for unknown domains).

    Returns:
        name -> value: int, float, str, torch.Tensor, GraphProto (compiled separately, see
        `NodeContext.subgraph`), or a tuple of those.

    Raises:
        NotSupported: an attribute holds a sparse tensor or a type torch lacks.
    """
    values: dict[str, Any] = {}
    if schema is not None:
        for name, attr in schema.attributes.items():
            if attr.default_value.type != AttributeProto.UNDEFINED:
                values[name] = attribute_value(attr.default_value)
    for attr in node.attribute:
        values[attr.name] = attribute_value(attr)
    return values


def attribute_value(attr: AttributeProto) -> Any:
    """One attribute as a Python value (see `node_attributes`)."""
    kind = attr.type
    if kind == AttributeProto.FLOAT:
        return float(attr.f)
    if kind == AttributeProto.INT:
        return int(attr.i)
    if kind == AttributeProto.STRING:
        return attr.s.decode("utf-8", errors="replace")
    if kind == AttributeProto.TENSOR:
        return tensor_from_proto(attr.t)
    if kind == AttributeProto.FLOATS:
        return tuple(float(v) for v in attr.floats)
    if kind == AttributeProto.INTS:
        return tuple(int(v) for v in attr.ints)
    if kind == AttributeProto.STRINGS:
        return tuple(s.decode("utf-8", errors="replace") for s in attr.strings)
    if kind == AttributeProto.TENSORS:
        return tuple(tensor_from_proto(t) for t in attr.tensors)
    if kind == AttributeProto.GRAPH:
        return attr.g
    if kind == AttributeProto.GRAPHS:
        return tuple(attr.graphs)
    raise NotSupported(
        f"attribute '{attr.name}' of type {AttributeProto.AttributeType.Name(kind)}"
    )


def tensor_from_proto(tensor: TensorProto) -> torch.Tensor:
    """A TensorProto's data as a torch tensor that owns its memory.

    Raises:
        NotSupported: strings, or an element type torch has no dtype for.
        SourceError: the tensor's data does not match its declared shape and type.
    """
    if tensor.data_type == TensorProto.STRING:
        raise NotSupported(f"string tensor '{tensor.name}'")
    if torch_dtype(tensor.data_type) is None:
        raise NotSupported(f"tensor '{tensor.name}' of type {type_name(tensor.data_type)}")
    try:
        array = numpy_helper.to_array(tensor)
    except Exception as e:
        raise SourceError(
            f"the data of tensor '{tensor.name}' does not match its shape and type "
            f"({first_line(e)}); the ONNX file is corrupt: re-export it"
        ) from e
    if tensor.data_type == TensorProto.BFLOAT16:
        # numpy has no bfloat16: onnx hands back an ml_dtypes array, its bit pattern, or floats.
        if array.dtype.itemsize != 2:
            return torch.from_numpy(np.array(array, dtype=np.float32)).to(torch.bfloat16)
        bits = np.array(array, copy=True).view(np.uint16).reshape(array.shape)
        return torch.from_numpy(bits).view(torch.bfloat16)
    if array.dtype.kind not in "fiucb":
        raise NotSupported(f"tensor '{tensor.name}' of numpy type {array.dtype}")
    return torch.from_numpy(np.array(array, copy=True))
