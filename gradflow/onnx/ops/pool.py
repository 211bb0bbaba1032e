"""Pooling: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradflow.onnx.context import NodeContext
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
    if want_indices and (int(ctx.attr("storage_order", 0)) != 0):
        raise ctx.unsupported("MaxPool Indices with storage_order=1")

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
        # torch counts within each (n, c) plane; ONNX counts over the whole tensor.
        plane = 1
        for s in x.shape[2:]:
            plane *= s
        offsets = torch.arange(x.shape[0] * x.shape[1], device=x.device) * plane
        idx = idx + offsets.reshape(x.shape[0], x.shape[1], *([1] * w.n))
        return y, idx

    return pool_with_indices


@register("AveragePool", since=13)
def average_pool(ctx: NodeContext) -> Kernel:
    w = _Window(ctx)
    if any(d != 1 for d in w.dilations):
        raise ctx.unsupported("AveragePool with dilations")
    fn = _AVG[w.n]
    include_pad = bool(ctx.attr("count_include_pad", 0))

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
