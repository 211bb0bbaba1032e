"""Shapes and views: Shape, Size, Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Expand."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import ints, normalize_axis
from gradflow.onnx.registry import PASSTHROUGH, Kernel, register


@register("Shape", since=13)
def shape(ctx: NodeContext) -> Kernel:
    start = ctx.attr("start", 0)
    end = ctx.attr("end")

    def run(x: torch.Tensor) -> torch.Tensor:
        dims = list(x.shape)[start:end]
        return torch.tensor(dims, dtype=torch.int64, device=x.device)

    return run


@register("Size", since=13)
def size(ctx: NodeContext) -> Kernel:
    return lambda x: torch.tensor(x.numel(), dtype=torch.int64, device=x.device)


def _target_shape(x: torch.Tensor, target: Sequence[int], allowzero: bool) -> list[int]:
    # 0 copies the input's dim at that position (unless allowzero); -1 is inferred by torch.
    if allowzero or 0 not in target:
        return list(target)
    return [x.shape[i] if d == 0 else d for i, d in enumerate(target)]


@register("Reshape", since=13)
def reshape(ctx: NodeContext) -> Kernel:
    allowzero = bool(ctx.attr("allowzero", 0))
    target = ctx.const_ints(1)
    if target is not None and (allowzero or 0 not in target):
        fixed = list(target)
        return lambda x, _shape: x.reshape(fixed)
    if target is not None:
        known = list(target)
        return lambda x, _shape: x.reshape(_target_shape(x, known, allowzero))
    return lambda x, shape: x.reshape(_target_shape(x, ints(shape), allowzero))


@register("Flatten", since=13)
def flatten(ctx: NodeContext) -> Kernel:
    axis = ctx.attr("axis", 1)

    def run(x: torch.Tensor) -> torch.Tensor:
        a = normalize_axis(axis, x.dim())
        return x.reshape(math.prod(x.shape[:a]), math.prod(x.shape[a:]))

    return run


@register("Squeeze", since=13)
def squeeze(ctx: NodeContext) -> Kernel:
    if not ctx.has_input(1):
        return lambda x, *_: x.squeeze()
    axes = ctx.const_ints(1)
    if axes is not None:
        dims = tuple(axes)
        return lambda x, _axes: x.squeeze(dims)
    return lambda x, axes: x.squeeze(tuple(ints(axes)))


def _unsqueeze(x: torch.Tensor, axes: Sequence[int]) -> torch.Tensor:
    # Axes refer to the output's dims; inserting in ascending order keeps them valid.
    rank = x.dim() + len(axes)
    for a in sorted(normalize_axis(a, rank) for a in axes):
        x = x.unsqueeze(a)
    return x


@register("Unsqueeze", since=13)
def unsqueeze(ctx: NodeContext) -> Kernel:
    axes = ctx.const_ints(1)
    if axes is not None:
        if len(axes) == 1 and axes[0] >= 0:
            a = axes[0]
            return lambda x, _axes: x.unsqueeze(a)
        fixed = list(axes)
        return lambda x, _axes: _unsqueeze(x, fixed)
    return lambda x, axes: _unsqueeze(x, ints(axes))


@register("Transpose", since=13)
def transpose(ctx: NodeContext) -> Kernel:
    perm = ctx.attr("perm")
    if perm is not None:
        order = tuple(perm)
        if order == tuple(range(len(order))):
            return PASSTHROUGH
        return lambda x: x.permute(order)
    return lambda x: x.permute(tuple(reversed(range(x.dim()))))


@register("Expand", since=13)
def expand(ctx: NodeContext) -> Kernel:
    # Bidirectional broadcast: the result has the broadcast of the input's and the given shape.
    target = ctx.const_ints(1)
    if target is not None:
        fixed = tuple(target)
        return lambda x, _shape: x.expand(torch.broadcast_shapes(x.shape, fixed))
    return lambda x, shape: x.expand(torch.broadcast_shapes(x.shape, tuple(ints(shape))))
