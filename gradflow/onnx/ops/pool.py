"""Pooling: MaxPool, AveragePool, LpPool, the Global* pools, MaxUnpool, MaxRoiPool."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import ints
from gradflow.onnx.ops.spatial import pad_spatial, same_pads, symmetric
from gradflow.onnx.registry import Kernel, register

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


class _Window:
    """A pooling node's window attributes, with `pads` resolved for a given input."""

    def __init__(self, ctx: NodeContext) -> None:
        self.kernel = tuple(ctx.attr("kernel_shape") or ())
        n = len(self.kernel)
        if n not in _MAX:
            raise ctx.unsupported(f"{n}-D pooling")
        self.n = n
        self.strides = tuple(ctx.attr("strides") or (1,) * n)
        self.dilations = tuple(ctx.attr("dilations") or (1,) * n)
        self.ceil_mode = bool(ctx.attr("ceil_mode", 0))
        self.auto_pad = ctx.attr("auto_pad", "NOTSET")
        pads = tuple(ctx.attr("pads") or (0,) * (2 * n))
        self.pads = (0,) * (2 * n) if self.auto_pad == "VALID" else pads

    @property
    def dynamic(self) -> bool:
        return self.auto_pad in ("SAME_UPPER", "SAME_LOWER")

    def pads_for(self, x: torch.Tensor) -> tuple[int, ...]:
        if not self.dynamic:
            return self.pads
        upper = self.auto_pad == "SAME_UPPER"
        return tuple(same_pads(x.shape[2:], self.kernel, self.strides, self.dilations, upper))

    def torch_padding(self, pads: tuple[int, ...]) -> tuple[int, ...] | None:
        """The symmetric padding torch's pooling accepts (at most half the effective window),
        or None when the input must be padded by hand."""
        n = self.n
        if not symmetric(pads):
            return None
        for p, k, d in zip(pads[:n], self.kernel, self.dilations):
            if p > ((k - 1) * d + 1) // 2:
                return None
        return pads[:n]


@register("MaxPool", since=13)
def max_pool(ctx: NodeContext) -> Kernel:
    w = _Window(ctx)
    fn = _MAX[w.n]
    want_indices = ctx.output_used(1)
    column_major = int(ctx.attr("storage_order", 0)) == 1

    def pool(x: torch.Tensor) -> torch.Tensor:
        pads = w.pads_for(x)
        padding = w.torch_padding(pads)
        if padding is None:
            x = pad_spatial(x, pads, value=float("-inf"))
            padding = (0,) * w.n
        return fn(x, w.kernel, w.strides, padding, w.dilations, w.ceil_mode)

    if not want_indices:
        if ctx.n_outputs == 1:
            return pool
        return lambda x: (pool(x), None)

    def pool_with_indices(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        padding = w.torch_padding(w.pads_for(x))
        if padding is None:
            raise ValueError("MaxPool Indices with asymmetric or oversized padding")
        y, idx = fn(x, w.kernel, w.strides, padding, w.dilations, w.ceil_mode, return_indices=True)
        sizes = list(x.shape[2:])
        if column_major:
            # Within the plane, the first spatial dim varies fastest.
            coords = []
            for size in reversed(sizes):
                coords.append(idx % size)
                idx = idx // size
            idx = torch.zeros_like(coords[0])
            for coord, size in zip(coords, reversed(sizes)):
                idx = idx * size + coord
        # torch counts within each (n, c) plane; ONNX counts over the whole tensor.
        plane = math.prod(sizes)
        offsets = torch.arange(x.shape[0] * x.shape[1], device=x.device) * plane
        idx = idx + offsets.reshape(x.shape[0], x.shape[1], *([1] * w.n))
        return y, idx

    return pool_with_indices


@register("AveragePool", since=13)
def average_pool(ctx: NodeContext) -> Kernel:
    w = _Window(ctx)
    include_pad = bool(ctx.attr("count_include_pad", 0))
    if any(d != 1 for d in w.dilations):
        # torch's average pooling has no dilation.
        return lambda x: _window_average(x, w, include_pad)
    fn = _AVG[w.n]

    def run(x: torch.Tensor) -> torch.Tensor:
        pads = w.pads_for(x)
        padding = w.torch_padding(pads)
        if padding is not None:
            return fn(x, w.kernel, w.strides, padding, w.ceil_mode, include_pad)
        zero = (0,) * w.n
        total = fn(pad_spatial(x, pads), w.kernel, w.strides, zero, w.ceil_mode, True)
        if include_pad:
            return total
        # Divide by the number of real (unpadded) elements under each window.
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
        count = fn(pad_spatial(ones, pads), w.kernel, w.strides, zero, w.ceil_mode, True)
        return total / count

    return run


@register("GlobalAveragePool", since=13)
def global_average_pool(ctx: NodeContext) -> Kernel:
    rank = ctx.input_rank(0)
    if rank is not None:
        dims = tuple(range(2, rank))
        return lambda x: x.mean(dims, keepdim=True)
    return lambda x: x.mean(tuple(range(2, x.dim())), keepdim=True)


@register("GlobalMaxPool", since=13)
def global_max_pool(ctx: NodeContext) -> Kernel:
    return lambda x: x.amax(tuple(range(2, x.dim())), keepdim=True)


_SUM_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _window_average(x: torch.Tensor, w: _Window, include_pad: bool) -> torch.Tensor:
    """The average over each pooling window, the way the ONNX reference pools: dilated windows,
    ceil mode's extra positions left out, explicit padding counted only with `include_pad`.

    The sums are convolutions with a kernel of ones, over the input and over a mask of the
    positions that count.
    """
    n = w.n
    sizes = list(x.shape[2:])
    if w.auto_pad in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        if w.auto_pad == "VALID":
            out = [(s - k) // st + 1 for s, k, st in zip(sizes, w.kernel, w.strides)]
            pads = [0] * (2 * n)
        else:
            out = [(s - 1) // st + 1 for s, st in zip(sizes, w.strides)]
            needed = [(o - 1) * st + k - s for o, st, k, s in zip(out, w.strides, w.kernel, sizes)]
            small = [t // 2 for t in needed]
            large = [t - t // 2 for t in needed]
            pads = small + large if w.auto_pad == "SAME_UPPER" else large + small
        placed = list(pads)
    else:
        pads = list(w.pads)
        out, placed = _explicit_windows(sizes, w, pads)
    # Positions past the explicitly padded extent (ceil mode) never count.
    bound = [s + pads[i] + pads[i + n] for i, s in enumerate(sizes)]
    span = [(o - 1) * st + (k - 1) * d + 1 for o, st, k, d in zip(out, w.strides, w.kernel, w.dilations)]
    extra = [max(0, sp - (s + placed[i] + placed[i + n])) for i, (sp, s) in enumerate(zip(span, sizes))]
    padding = [placed[i] for i in range(n)] + [placed[i + n] + extra[i] for i in range(n)]
    counted = torch.ones((1, 1, *sizes), dtype=x.dtype, device=x.device)
    counted = pad_spatial(counted, padding, value=1.0 if include_pad else 0.0)
    for i in range(n):
        keep = (torch.arange(counted.shape[2 + i], device=x.device) < bound[i]).to(x.dtype)
        counted = counted * keep.reshape([-1 if d == i else 1 for d in range(n)])
    values = pad_spatial(x, padding).flatten(0, 1).unsqueeze(1) * counted[0]
    conv = _SUM_CONV[n]
    ones = torch.ones((1, 1, *w.kernel), dtype=x.dtype, device=x.device)
    total = conv(values, ones, None, w.strides, 0, w.dilations)
    count = conv(counted, ones, None, w.strides, 0, w.dilations)
    index = (slice(None), slice(None), *[slice(0, o) for o in out])
    result = total[index] / count[index]
    return result.reshape(*x.shape[:2], *out)


def _explicit_windows(
    sizes: list[int], w: _Window, pads: list[int]
) -> tuple[list[int], list[int]]:
    """Output sizes for explicit pads, and the pads the windows are placed with: ceil mode's
    extra positions are split over both ends, as the ONNX reference does."""
    n = w.n
    out, placed = [], list(pads)
    for i, s in enumerate(sizes):
        window = w.dilations[i] * (w.kernel[i] - 1) + 1
        exact = (s + pads[i] + pads[i + n] - window) / w.strides[i] + 1
        if w.ceil_mode:
            o = math.ceil(exact)
            if (o - 1) * w.strides[i] >= s + pads[i]:
                o -= 1  # the last window starts inside the input or its leading padding
        else:
            o = math.floor(exact)
        out.append(o)
        extra = (o - 1) * w.strides[i] + window - s - pads[i] - pads[i + n]
        if extra > 0:
            placed[i] += extra // 2
            placed[i + n] += extra - extra // 2
    return out, placed


@register("LpPool", since=13)
def lp_pool(ctx: NodeContext) -> Kernel:
    # (sum over the window of |x|^p)^(1/p); padding and ceil mode as in AveragePool, with the
    # sum scaled to the full window where positions drop out.
    w = _Window(ctx)
    p = float(ctx.attr("p", 2))
    size = math.prod(w.kernel)

    def run(x: torch.Tensor) -> torch.Tensor:
        mean = _window_average(x.abs() ** p, w, include_pad=True)
        return (mean * size) ** (1 / p)

    return run


@register("MaxUnpool", since=13)
def max_unpool(ctx: NodeContext) -> Kernel:
    # Each value goes back to the position its index names (over the whole tensor, as MaxPool
    # gives them) in a zero tensor of the pooled input's shape, padded up to output_shape.
    kernel = tuple(ctx.attr("kernel_shape") or ())
    n = len(kernel)
    strides = tuple(ctx.attr("strides") or (1,) * n)
    pads = tuple(ctx.attr("pads") or (0,) * (2 * n))

    def run(x: torch.Tensor, indices: torch.Tensor, shape: torch.Tensor | None = None) -> torch.Tensor:
        sizes = [(s - 1) * st - pads[i] - pads[i + n] + k
                 for i, (s, st, k) in enumerate(zip(x.shape[2:], strides, kernel))]
        flat = torch.zeros(x.shape[0] * x.shape[1] * math.prod(sizes), dtype=x.dtype, device=x.device)
        y = flat.scatter(0, indices.reshape(-1).long(), x.reshape(-1)).reshape(*x.shape[:2], *sizes)
        if shape is None:
            return y
        target = ints(shape)[2:]
        return pad_spatial(y, [0] * n + [t - s for t, s in zip(target, sizes)])

    return run


@register("GlobalLpPool", since=13)
def global_lp_pool(ctx: NodeContext) -> Kernel:
    p = float(ctx.attr("p", 2))

    def run(x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, x.dim()))
        return (x.abs() ** p).sum(dims, keepdim=True) ** (1 / p)

    return run


@register("MaxRoiPool", since=13)
def max_roi_pool(ctx: NodeContext) -> Kernel:
    # Caffe's ROI pooling: each region [batch, x1, y1, x2, y2] (scaled, rounded to pixels, ends
    # included) is split into pooled_shape bins of at least one pixel; each bin takes the
    # largest value under it (0 for a bin outside the image).
    pooled_h, pooled_w = (int(v) for v in ctx.attr("pooled_shape"))
    scale = float(ctx.attr("spatial_scale", 1.0))

    def run(x: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        pooled = []
        for batch, *box in rois.tolist():
            x1, y1, x2, y2 = (int(round(v * scale)) for v in box)
            bin_h = max(y2 - y1 + 1, 1) / pooled_h
            bin_w = max(x2 - x1 + 1, 1) / pooled_w
            rows = []
            for ph in range(pooled_h):
                top = min(max(math.floor(ph * bin_h) + y1, 0), height)
                bottom = min(max(math.ceil((ph + 1) * bin_h) + y1, 0), height)
                cells = []
                for pw in range(pooled_w):
                    left = min(max(math.floor(pw * bin_w) + x1, 0), width)
                    right = min(max(math.ceil((pw + 1) * bin_w) + x1, 0), width)
                    region = x[int(batch), :, top:bottom, left:right]
                    if region.numel() == 0:
                        cells.append(x.new_zeros(x.shape[1]))
                    else:
                        cells.append(region.amax((1, 2)))
                rows.append(torch.stack(cells, -1))
            pooled.append(torch.stack(rows, -2))
        return torch.stack(pooled) if pooled else x.new_zeros((0, x.shape[1], pooled_h, pooled_w))

    return run
