"""Joining and splitting: Concat, Split, Tile, Pad."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import ints, item, normalize_axis
from gradflow.onnx.registry import Kernel, register


@register("Concat", since=13)
def concat(ctx: NodeContext) -> Kernel:
    axis = ctx.attr("axis")
    return lambda *xs: torch.cat(xs, axis)


@register("Split", since=13)
def split(ctx: NodeContext) -> Kernel:
    axis = ctx.attr("axis", 0)
    n = ctx.n_outputs
    num_outputs = ctx.attr("num_outputs")
    const_sizes = ctx.const_ints(1) if ctx.has_input(1) else None

    def sizes_for(x: torch.Tensor, split: torch.Tensor | None) -> list[int]:
        if split is not None:
            return list(const_sizes) if const_sizes is not None else ints(split)
        dim = x.shape[axis]
        if num_outputs is not None:
            # Opset 18: equal chunks of ceil(dim / n), the last one smaller.
            chunk = -(-dim // num_outputs)
            return [chunk] * (num_outputs - 1) + [dim - chunk * (num_outputs - 1)]
        return [dim // n] * n

    def run(x: torch.Tensor, split: torch.Tensor | None = None) -> torch.Tensor | tuple:
        parts = torch.split(x, sizes_for(x, split), axis)
        return parts[0] if n == 1 else tuple(parts)

    return run


@register("Tile", since=13)
def tile(ctx: NodeContext) -> Kernel:
    repeats = ctx.const_ints(1)
    if repeats is not None:
        fixed = list(repeats)
        return lambda x, _repeats: x.repeat(fixed)
    return lambda x, repeats: x.repeat(ints(repeats))


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


def _torch_pads(rank: int, pads: Sequence[int], axes: Sequence[int] | None) -> list[int]:
    # ONNX: [begin per axis..., end per axis...]; F.pad: (begin, end) pairs from the last dim,
    # covering only as many leading dims as needed.
    axes = list(range(rank)) if axes is None else [normalize_axis(a, rank) for a in axes]
    n = len(axes)
    begins, ends = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        begins[a], ends[a] = pads[i], pads[i + n]
    first = next((d for d in range(rank) if begins[d] or ends[d]), rank)
    flat: list[int] = []
    for d in reversed(range(first, rank)):
        flat += [begins[d], ends[d]]
    return flat


@register("Pad", since=13)
def pad(ctx: NodeContext) -> Kernel:
    mode = ctx.attr("mode", "constant")
    if mode not in _PAD_MODES:
        raise ctx.unsupported(f"Pad mode='{mode}'")
    torch_mode = _PAD_MODES[mode]

    def run(
        x: torch.Tensor,
        pads: torch.Tensor,
        value: torch.Tensor | None = None,
        axes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        flat = _torch_pads(x.dim(), ints(pads), None if axes is None else ints(axes))
        if not flat:
            return x
        if torch_mode == "constant":
            fill = item(value) if value is not None and value.numel() else 0
            return F.pad(x, flat, mode="constant", value=fill)
        return F.pad(x, flat, mode=torch_mode)

    return run
