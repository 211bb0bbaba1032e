"""Moving elements without arithmetic: DepthToSpace, SpaceToDepth, ReverseSequence,
CenterCropPad."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import ints, normalize_axis
from gradflow.onnx.registry import Kernel, register


@register("DepthToSpace", since=13)
def depth_to_space(ctx: NodeContext) -> Kernel:
    # DCR: depth is (block row, block column, channel); CRD: (channel, block row, block column).
    block = int(ctx.attr("blocksize"))
    crd = ctx.attr("mode", "DCR") == "CRD"

    def run(x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        depth = c // (block * block)
        if crd:
            y = x.reshape(n, depth, block, block, h, w).permute(0, 1, 4, 2, 5, 3)
        else:
            y = x.reshape(n, block, block, depth, h, w).permute(0, 3, 4, 1, 5, 2)
        return y.reshape(n, depth, h * block, w * block)

    return run


@register("SpaceToDepth", since=13)
def space_to_depth(ctx: NodeContext) -> Kernel:
    # The inverse of DepthToSpace in the same mode.
    block = int(ctx.attr("blocksize"))
    crd = ctx.attr("mode", "DCR") == "CRD"

    def run(x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = x.reshape(n, c, h // block, block, w // block, block)
        y = y.permute(0, 1, 3, 5, 2, 4) if crd else y.permute(0, 3, 5, 1, 2, 4)
        return y.reshape(n, c * block * block, h // block, w // block)

    return run


@register("ReverseSequence", since=13)
def reverse_sequence(ctx: NodeContext) -> Kernel:
    # Each batch entry reverses its first sequence_lens[b] steps along the time axis.
    batch_axis = int(ctx.attr("batch_axis", 1))
    time_axis = int(ctx.attr("time_axis", 0))

    def run(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        steps = x.shape[time_axis]
        t = torch.arange(steps, device=x.device).reshape(1, -1)
        n = lengths.long().reshape(-1, 1)
        source = torch.where(t < n, n - 1 - t, t)  # [batch, time]
        shape = [1] * x.dim()
        shape[batch_axis], shape[time_axis] = source.shape
        if batch_axis > time_axis:
            source = source.t()
            shape[time_axis], shape[batch_axis] = source.shape
        index = source.reshape(shape).expand(x.shape)
        return torch.gather(x, time_axis, index)

    return run


@register("CenterCropPad", since=18)
def center_crop_pad(ctx: NodeContext) -> Kernel:
    # Each listed axis is cropped or zero-padded to its target size around the centre; an odd
    # difference puts the extra element at the end.
    axes_attr = ctx.attr("axes")

    def run(x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        rank = x.dim()
        axes = range(rank) if axes_attr is None else [normalize_axis(a, rank) for a in axes_attr]
        for a, size in zip(axes, ints(shape)):
            dim = x.shape[a]
            if size < dim:
                x = x.narrow(a, (dim - size) // 2, size)
            elif size > dim:
                before = (size - dim) // 2
                pads = [0, 0] * (rank - a)
                pads[-2], pads[-1] = before, size - dim - before
                x = F.pad(x, pads)
        return x

    return run
