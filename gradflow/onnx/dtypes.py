"""ONNX element types and their torch dtypes."""

from __future__ import annotations

import torch
from onnx import TensorProto

_TO_TORCH: dict[int, torch.dtype] = {
    TensorProto.FLOAT: torch.float32,
    TensorProto.DOUBLE: torch.float64,
    TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16,
    TensorProto.INT8: torch.int8,
    TensorProto.INT16: torch.int16,
    TensorProto.INT32: torch.int32,
    TensorProto.INT64: torch.int64,
    TensorProto.UINT8: torch.uint8,
    TensorProto.UINT16: torch.uint16,
    TensorProto.UINT32: torch.uint32,
    TensorProto.UINT64: torch.uint64,
    TensorProto.BOOL: torch.bool,
    TensorProto.COMPLEX64: torch.complex64,
    TensorProto.COMPLEX128: torch.complex128,
}

FLOATING_TYPES: frozenset[int] = frozenset(
    {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
)


def torch_dtype(elem_type: int) -> torch.dtype | None:
    """The torch dtype for an ONNX element type, or None when torch has no equivalent.

    Args:
        elem_type: a `TensorProto.DataType` value.

    Returns:
        The torch dtype, or None (strings, float8, 4-bit types, undefined).
    """
    return _TO_TORCH.get(elem_type)


def type_name(elem_type: int) -> str:
    """The ONNX name of an element type, e.g. "FLOAT" (for messages)."""
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"type {elem_type}"
