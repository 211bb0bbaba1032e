"""Convolutions: Conv and ConvTranspose (1-D, 2-D and 3-D), CausalConvWithState, Col2Im."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import ints, output_tuple
from gradflow.onnx.ops.spatial import pad_spatial, same_pads, symmetric
from gradflow.onnx.registry import Kernel, register

_CONV: dict[int, Callable[..., torch.Tensor]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T: dict[int, Callable[..., torch.Tensor]] = {
    1: F.conv_transpose1d,
    2: F.conv_transpose2d,
    3: F.conv_transpose3d,
}


def _spatial_rank(ctx: NodeContext) -> int:
    rank = ctx.input_rank(1) or ctx.input_rank(0)
    kernel_shape = ctx.attr("kernel_shape")
    if kernel_shape:
        return len(kernel_shape)
    if rank is None:
        raise ctx.unsupported("convolution of unknown rank")
    return rank - 2


@register("Conv", since=13)
def conv(ctx: NodeContext) -> Kernel:
    n = _spatial_rank(ctx)
    if n not in _CONV:
        raise ctx.unsupported(f"{n}-D convolution")
    fn = _CONV[n]
    strides = tuple(ctx.attr("strides") or (1,) * n)
    dilations = tuple(ctx.attr("dilations") or (1,) * n)
    groups = int(ctx.attr("group", 1))
    pads = tuple(ctx.attr("pads") or (0,) * (2 * n))
    auto_pad = ctx.attr("auto_pad", "NOTSET")

    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        upper = auto_pad == "SAME_UPPER"

        def run_same(
            x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None
        ) -> torch.Tensor:
            p = same_pads(x.shape[2:], w.shape[2:], strides, dilations, upper)
            return fn(pad_spatial(x, p), w, b, strides, 0, dilations, groups)

        return run_same
    if auto_pad == "VALID":
        pads = (0,) * (2 * n)
    if symmetric(pads):
        padding = pads[:n]
        return lambda x, w, b=None: fn(x, w, b, strides, padding, dilations, groups)
    return lambda x, w, b=None: fn(pad_spatial(x, pads), w, b, strides, 0, dilations, groups)


@register("ConvTranspose", since=13)
def conv_transpose(ctx: NodeContext) -> Kernel:
    n = _spatial_rank(ctx)
    if n not in _CONV_T:
        raise ctx.unsupported(f"{n}-D transposed convolution")
    fn = _CONV_T[n]
    strides = tuple(ctx.attr("strides") or (1,) * n)
    dilations = tuple(ctx.attr("dilations") or (1,) * n)
    groups = int(ctx.attr("group", 1))
    output_padding = tuple(ctx.attr("output_padding") or (0,) * n)
    output_shape = ctx.attr("output_shape")
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    fixed_pads = tuple(ctx.attr("pads") or (0,) * (2 * n))

    def pads_for(x: torch.Tensor, w: torch.Tensor) -> list[int]:
        # ONNX: total padding follows from the requested output shape (or from SAME_*).
        if output_shape is None and auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
            return list(fixed_pads)
        sizes = x.shape[2:]
        kernel = w.shape[2:]
        target = output_shape[-n:] if output_shape else [s * st for s, st in zip(sizes, strides)]
        begins, ends = [], []
        for i in range(n):
            full = strides[i] * (sizes[i] - 1) + output_padding[i] + (kernel[i] - 1) * dilations[i] + 1
            total = full - target[i]
            if auto_pad == "SAME_UPPER":
                begins.append(total // 2)
                ends.append(total - total // 2)
            else:
                begins.append(total - total // 2)
                ends.append(total // 2)
        return begins + ends

    def run(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        pads = pads_for(x, w)
        if symmetric(pads) and min(pads) >= 0:
            return fn(x, w, b, strides, pads[:n], output_padding, groups, dilations)
        # Positive pads crop the full result, negative ones (an output_shape larger than it)
        # extend it with zeros.
        y = fn(x, w, b, strides, 0, output_padding, groups, dilations)
        return pad_spatial(y, [-p for p in pads])

    return run


@register("CausalConvWithState", since=27)
def causal_conv_with_state(ctx: NodeContext) -> Kernel:
    # A depthwise 1-D convolution over the input appended to past_state (k - 1 earlier steps,
    # zeros when absent), optionally followed by SiLU; present_state is the last k - 1 steps.
    activation = ctx.attr("activation", "none")
    if activation not in ("none", "silu", "swish"):
        raise ctx.unsupported(f"CausalConvWithState activation '{activation}'")

    def run(
        x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None,
        past: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor | None, ...]:
        k = w.shape[2]
        if past is None:
            past = torch.zeros(x.shape[0], x.shape[1], k - 1, dtype=x.dtype, device=x.device)
        padded = torch.cat([past, x], 2)
        y = F.conv1d(padded, w, b, groups=x.shape[1])
        if activation != "none":
            y = F.silu(y.float()).to(y.dtype)
        present = padded[:, :, padded.shape[2] - (k - 1):]
        return output_tuple(ctx, y, present)

    return run


@register("Col2Im", since=18)
def col2im(ctx: NodeContext) -> Kernel:
    # The inverse of extracting sliding blocks: input [N, C * prod(block), L] holds, for each of
    # the L block positions, the block's C x block values; they are summed back into an image of
    # image_shape (of any rank) at their positions, those in the padding dropped.
    strides_attr = ctx.attr("strides")
    pads_attr = ctx.attr("pads")
    dilations_attr = ctx.attr("dilations")

    def run(x: torch.Tensor, image: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
        sizes, kernel = ints(image), ints(block)
        n = len(sizes)
        strides = list(strides_attr or [1] * n)
        dilations = list(dilations_attr or [1] * n)
        pads = list(pads_attr or [0] * (2 * n))
        target = _block_targets(sizes, kernel, strides, dilations, pads, x.device)
        channels = x.shape[1] // math.prod(kernel)
        values = x.reshape(x.shape[0], channels, -1)
        out = torch.zeros(x.shape[0], channels, math.prod(sizes) + 1, dtype=x.dtype, device=x.device)
        out = out.scatter_add(2, target.expand(values.shape), values)
        return out[:, :, :-1].reshape(x.shape[0], channels, *sizes)

    return run


def _block_targets(
    sizes: list[int], kernel: list[int], strides: list[int], dilations: list[int],
    pads: list[int], device: torch.device,
) -> torch.Tensor:
    """For each (kernel offset, block position) pair, in Col2Im's input order, the flat index of
    the image element it lands on; positions in the padding map to one extra slot at the end."""
    n = len(sizes)
    blocks = [
        (s + pads[i] + pads[i + n] - dilations[i] * (kernel[i] - 1) - 1) // strides[i] + 1
        for i, s in enumerate(sizes)
    ]
    flat = torch.zeros((1, 1), dtype=torch.long, device=device)
    inside = torch.ones((1, 1), dtype=torch.bool, device=device)
    for i in range(n):
        offset = torch.arange(kernel[i], device=device).reshape(-1, 1) * dilations[i]
        start = torch.arange(blocks[i], device=device).reshape(1, -1) * strides[i] - pads[i]
        position = offset + start  # [kernel_i, blocks_i]
        ok = (position >= 0) & (position < sizes[i])
        # Kernel offsets vary slowest-first, as do block positions: combine as outer products.
        flat = (flat[:, None, :, None] * sizes[i] + position[None, :, None, :]).reshape(
            flat.shape[0] * kernel[i], flat.shape[1] * blocks[i])
        inside = (inside[:, None, :, None] & ok[None, :, None, :]).reshape(flat.shape)
    return torch.where(inside, flat, math.prod(sizes)).reshape(1, 1, -1)
