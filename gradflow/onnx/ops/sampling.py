"""Sampling images at computed positions: GridSample, AffineGrid."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import ints
from gradflow.onnx.registry import Kernel, register

# GridSample-16 names its modes after 2-D images; from opset 20 they are dimension-free.
_MODES = {"bilinear": "bilinear", "linear": "bilinear", "nearest": "nearest",
          "bicubic": "bicubic", "cubic": "bicubic"}
_PADDING = ("zeros", "border", "reflection")


@register("GridSample", since=16)
def grid_sample(ctx: NodeContext) -> Kernel:
    # ONNX defines GridSample as PyTorch's grid_sample: grid holds (x, y[, z]) in [-1, 1].
    mode = _MODES.get(ctx.attr("mode", "linear"))
    padding = ctx.attr("padding_mode", "zeros")
    if mode is None or padding not in _PADDING:
        raise ctx.unsupported(f"GridSample mode '{ctx.attr('mode')}', padding '{padding}'")
    align = bool(ctx.attr("align_corners", 0))
    rank = ctx.input_rank(0)
    if rank is not None and (rank not in (4, 5) or (rank == 5 and mode == "bicubic")):
        raise ctx.unsupported(f"GridSample of rank {rank} in mode '{mode}'")

    def run(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(x, grid.to(x.dtype), mode=mode, padding_mode=padding, align_corners=align)

    return run


@register("AffineGrid", since=20)
def affine_grid(ctx: NodeContext) -> Kernel:
    # PyTorch's affine_grid: theta [N, 2, 3] (or [N, 3, 4]) maps the output grid to input positions.
    align = bool(ctx.attr("align_corners", 0))

    def run(theta: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        return F.affine_grid(theta, ints(size), align_corners=align)

    return run
