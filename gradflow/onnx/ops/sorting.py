"""Ordering: TopK, Unique."""

from __future__ import annotations

import torch

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import item, normalize_axis, output_tuple
from gradflow.onnx.registry import Kernel, register


@register("TopK", since=13)
def top_k(ctx: NodeContext) -> Kernel:
    # Equal values keep their order, so ties go to the lower index (as ONNX specifies); a
    # stable sort guarantees it where torch.topk does not.
    axis = int(ctx.attr("axis", -1))
    largest = bool(ctx.attr("largest", 1))

    def run(x: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = normalize_axis(axis, x.dim())
        order = torch.sort(x, dim=a, descending=largest, stable=True).indices
        indices = order.narrow(a, 0, int(item(k)))
        return torch.gather(x, a, indices), indices

    return run


@register("Unique", since=13)
def unique(ctx: NodeContext) -> Kernel:
    # Outputs: the unique values (or slices along `axis`), the index of each one's first
    # occurrence, the position of each input element among them, and their counts; sorted, or
    # in order of first occurrence.
    axis = ctx.attr("axis")
    keep_sorted = bool(ctx.attr("sorted", 1))

    def run(x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor | None, ...]:
        # No output carries a gradient (torch has no derivative for unique along a dim).
        data = x.detach().reshape(-1) if axis is None else x.detach()
        a = 0 if axis is None else normalize_axis(axis, x.dim())
        values, inverse, counts = torch.unique(
            data, sorted=True, return_inverse=True, return_counts=True, dim=a
        )
        n = data.shape[a]
        first = torch.full((values.shape[a],), n, dtype=torch.long, device=x.device)
        first = first.scatter_reduce(0, inverse, torch.arange(n, device=x.device), "amin")
        if not keep_sorted:
            order = torch.argsort(first)
            rank = torch.empty_like(order)
            rank[order] = torch.arange(order.numel(), device=x.device)
            values, first = values.index_select(a, order), first[order]
            counts, inverse = counts[order], rank[inverse]
        return output_tuple(ctx, values, first, inverse.reshape(-1), counts)

    return run
