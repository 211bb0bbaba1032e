"""Tensors made from attributes and shapes: Constant, ConstantOfShape, Range, EyeLike."""

from __future__ import annotations

import torch

from gradflow.onnx.context import NodeContext
from gradflow.onnx.dtypes import torch_dtype, type_name
from gradflow.onnx.ops.helpers import ints, item
from gradflow.onnx.registry import Kernel, register


@register("Constant", since=13)
def constant(ctx: NodeContext) -> Kernel:
    attrs = ctx.attrs
    if "value" in attrs:
        value = attrs["value"]
    elif "value_float" in attrs:
        value = torch.tensor(attrs["value_float"], dtype=torch.float32)
    elif "value_floats" in attrs:
        value = torch.tensor(attrs["value_floats"], dtype=torch.float32)
    elif "value_int" in attrs:
        value = torch.tensor(attrs["value_int"], dtype=torch.int64)
    elif "value_ints" in attrs:
        value = torch.tensor(attrs["value_ints"], dtype=torch.int64)
    else:
        kinds = ", ".join(sorted(attrs)) or "nothing"
        raise ctx.unsupported(f"Constant holding {kinds}")
    return lambda: value


@register("ConstantOfShape", since=13)
def constant_of_shape(ctx: NodeContext) -> Kernel:
    fill = ctx.attr("value")
    if fill is None:
        fill = torch.zeros(1, dtype=torch.float32)
    value = fill.reshape(-1)[0].item()
    dtype = fill.dtype

    def run(shape: torch.Tensor) -> torch.Tensor:
        return torch.full(ints(shape), value, dtype=dtype, device=shape.device)

    return run


@register("Range", since=13)
def range_(ctx: NodeContext) -> Kernel:
    dtype = ctx.input_dtype(0)

    def run(start: torch.Tensor, limit: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return torch.arange(
            item(start), item(limit), item(delta), dtype=dtype or start.dtype, device=start.device
        )

    return run


@register("EyeLike", since=13)
def eye_like(ctx: NodeContext) -> Kernel:
    # Ones on the k-th diagonal of a matrix shaped like the input, of type `dtype` (default
    # the input's).
    k = int(ctx.attr("k", 0))
    to = ctx.attr("dtype")
    dtype = None if to is None else torch_dtype(int(to))
    if to is not None and dtype is None:
        raise ctx.unsupported(f"EyeLike of type {type_name(int(to))}")

    def run(x: torch.Tensor) -> torch.Tensor:
        rows, cols = x.shape
        i = torch.arange(rows, device=x.device).reshape(-1, 1)
        j = torch.arange(cols, device=x.device).reshape(1, -1)
        return (j - i == k).to(dtype or x.dtype)

    return run
