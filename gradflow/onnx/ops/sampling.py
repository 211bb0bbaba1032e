"""Sampling images at computed positions: GridSample, AffineGrid, DeformConv, RoiAlign."""

from __future__ import annotations

import math

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


@register("DeformConv", since=19)
def deform_conv(ctx: NodeContext) -> Kernel:
    # A 2-D convolution whose kernel taps sample the input at learned offsets (bilinearly, zero
    # outside), each tap's value scaled by the optional mask; offsets and mask come per offset
    # group of input channels.
    strides_attr, pads_attr = ctx.attr("strides"), ctx.attr("pads")
    dilations_attr = ctx.attr("dilations")
    groups = int(ctx.attr("group", 1))
    offset_groups = int(ctx.attr("offset_group", 1))
    if ctx.input_rank(0) not in (None, 4):
        raise ctx.unsupported(f"{ctx.input_rank(0)}-D input (DeformConv runs on 2-D images)")

    def run(x: torch.Tensor, w: torch.Tensor, offset: torch.Tensor, b: torch.Tensor | None = None,
            mask: torch.Tensor | None = None) -> torch.Tensor:
        n, channels, height, width = x.shape
        kh, kw = w.shape[2:]
        sh, sw = strides_attr or (1, 1)
        dh, dw = dilations_attr or (1, 1)
        top, left = (pads_attr or (0, 0, 0, 0))[:2]
        oh, ow = offset.shape[2:]
        offset = offset.reshape(n, offset_groups, kh, kw, 2, oh, ow)
        rows = (torch.arange(oh, device=x.device) * sh - top).reshape(1, 1, 1, 1, -1, 1)
        cols = (torch.arange(ow, device=x.device) * sw - left).reshape(1, 1, 1, 1, 1, -1)
        taps_h = (torch.arange(kh, device=x.device) * dh).reshape(1, 1, -1, 1, 1, 1)
        taps_w = (torch.arange(kw, device=x.device) * dw).reshape(1, 1, 1, -1, 1, 1)
        y_at = rows + taps_h + offset[:, :, :, :, 0]  # [n, offset groups, kh, kw, oh, ow]
        x_at = cols + taps_w + offset[:, :, :, :, 1]
        grid = torch.stack([x_at / (width - 1) * 2 - 1, y_at / (height - 1) * 2 - 1], -1)
        per_group = channels // offset_groups
        sampled = []
        for g in range(offset_groups):
            points = grid[:, g].reshape(n, kh * kw * oh, ow, 2).to(x.dtype)
            values = F.grid_sample(x[:, g * per_group:(g + 1) * per_group], points,
                                   mode="bilinear", padding_mode="zeros", align_corners=True)
            values = values.reshape(n, per_group, kh, kw, oh, ow)
            if mask is not None:
                values = values * mask.reshape(n, offset_groups, kh, kw, oh, ow)[:, g : g + 1]
            sampled.append(values)
        columns = torch.cat(sampled, 1).reshape(n, groups, channels // groups, kh, kw, oh, ow)
        weight = w.reshape(groups, w.shape[0] // groups, *w.shape[1:])
        y = torch.einsum("ngcabij,gocab->ngoij", columns, weight).reshape(n, -1, oh, ow)
        return y if b is None else y + b.reshape(1, -1, 1, 1)

    return run


@register("RoiAlign", since=13, until=15)
def roi_align_10(ctx: NodeContext) -> Kernel:
    # Before opset 16 regions were not shifted by half a pixel ("output_half_pixel").
    return _roi_align(ctx, "output_half_pixel")


@register("RoiAlign", since=16)
def roi_align_16(ctx: NodeContext) -> Kernel:
    return _roi_align(ctx, ctx.attr("coordinate_transformation_mode", "half_pixel"))


def _roi_align(ctx: NodeContext, transform: str) -> Kernel:
    # Each region [x1, y1, x2, y2] of image batch_indices[r] (scaled by spatial_scale) is split
    # into output_height x output_width bins; each bin averages (or takes the largest of) the
    # bilinear samples on a regular grid inside it, as the ONNX reference does.
    height_out, width_out = int(ctx.attr("output_height", 1)), int(ctx.attr("output_width", 1))
    ratio = int(ctx.attr("sampling_ratio", 0))
    spatial_scale = float(ctx.attr("spatial_scale", 1.0))
    average = ctx.attr("mode", "avg") == "avg"
    half_pixel = transform == "half_pixel"

    def run(x: torch.Tensor, rois: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        shift = 0.5 if half_pixel else 0.0
        pooled = []
        for box, b in zip(rois.tolist(), batch.tolist()):
            x1, y1, x2, y2 = (v * spatial_scale - shift for v in box)
            roi_h, roi_w = y2 - y1, x2 - x1
            if not half_pixel:  # malformed regions are at least one pixel
                roi_h, roi_w = max(roi_h, 1.0), max(roi_w, 1.0)
            grid_h = ratio if ratio > 0 else math.ceil(roi_h / height_out)
            grid_w = ratio if ratio > 0 else math.ceil(roi_w / width_out)
            ys = _bin_samples(y1, roi_h / height_out, height_out, grid_h, x.shape[2], x)
            xs = _bin_samples(x1, roi_w / width_out, width_out, grid_w, x.shape[3], x)
            image = x[int(b)]
            corners = []
            for y_index, y_weight in ys:
                rows = image[:, y_index]
                for x_index, x_weight in xs:
                    weight = y_weight.reshape(-1, 1) * x_weight.reshape(1, -1)
                    corners.append(rows[:, :, x_index] * weight)
            samples = torch.stack(corners)  # [4, C, out_h * grid_h, out_w * grid_w]
            samples = samples.reshape(4, x.shape[1], height_out, grid_h, width_out, grid_w)
            if average:
                pooled.append(samples.sum(0).sum((2, 4)) / max(grid_h * grid_w, 1))
            else:
                pooled.append(samples.amax(0).amax((2, 4)))
        if not pooled:
            return x.new_zeros((0, x.shape[1], height_out, width_out))
        return torch.stack(pooled)

    return run


def _bin_samples(
    start: float, size: float, bins: int, grid: int, extent: int, like: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Along one axis, the sample positions of every bin (bin-major), as the (index, weight)
    of their lower and upper neighbours; samples beyond the border by more than a pixel weigh
    nothing."""
    bin_index = torch.arange(bins, dtype=torch.float64).reshape(-1, 1)
    sample = torch.arange(grid, dtype=torch.float64).reshape(1, -1)
    at = (start + bin_index * size + (sample + 0.5) * size / grid).reshape(-1)
    valid = (at >= -1.0) & (at <= extent)
    at = at.clamp(min=0)
    low = at.floor().long()
    edge = low >= extent - 1
    low = torch.where(edge, extent - 1, low)
    high = torch.where(edge, extent - 1, low + 1)
    at = torch.where(edge, low.double(), at)
    frac = at - low
    zero = torch.zeros_like(frac)
    upper = torch.where(valid, frac, zero).to(like.dtype)
    lower = torch.where(valid, 1 - frac, zero).to(like.dtype)
    device = like.device
    return [(low.to(device), lower.to(device)), (high.to(device), upper.to(device))]
