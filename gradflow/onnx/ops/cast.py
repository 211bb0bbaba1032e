"""Identity and type conversion: Identity, Cast, CastLike."""

from __future__ import annotations

import torch

from gradflow.onnx.context import NodeContext
from gradflow.onnx.dtypes import torch_dtype, type_name
from gradflow.onnx.registry import PASSTHROUGH, Kernel, register


@register("Identity", since=13)
def identity(ctx: NodeContext) -> Kernel:
    return PASSTHROUGH


@register("Cast", since=13)
def cast(ctx: NodeContext) -> Kernel:
    to = int(ctx.attr("to", 0))
    dtype = torch_dtype(to)
    if dtype is None:
        raise ctx.unsupported(f"cast to {type_name(to)}")
    if ctx.input_dtype(0) == dtype:
        return PASSTHROUGH
    return lambda x: x.to(dtype)


@register("CastLike", since=15)
def cast_like(ctx: NodeContext) -> Kernel:
    def run(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.to(like.dtype)

    return run
