"""Padding arithmetic shared by convolution and pooling kernels (ONNX `pads` / `auto_pad`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def same_pads(
    sizes: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    upper: bool,
) -> list[int]:
    """ONNX SAME_UPPER / SAME_LOWER pads ([begins..., ends...]) so that out = ceil(in / stride).

    Args:
        sizes: spatial input sizes.
        kernel: kernel sizes.
        strides: strides.
        dilations: dilations.
        upper: SAME_UPPER (extra padding at the end) rather than SAME_LOWER.

    Returns:
        The pads, begins then ends.
    """
    begins, ends = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begins.append(small if upper else large)
        ends.append(large if upper else small)
    return begins + ends


def torch_pad(pads: Sequence[int]) -> list[int]:
    """ONNX spatial pads [b1, b2, ..., e1, e2, ...] as F.pad's (last dim first) list."""
    n = len(pads) // 2
    flat: list[int] = []
    for i in reversed(range(n)):
        flat += [pads[i], pads[i + n]]
    return flat


def symmetric(pads: Sequence[int]) -> bool:
    n = len(pads) // 2
    return list(pads[:n]) == list(pads[n:])


def pad_spatial(x: torch.Tensor, pads: Sequence[int], value: float = 0.0) -> torch.Tensor:
    """Pad the spatial dims of `x` (all dims after the first two) by ONNX pads; negative pads
    crop."""
    if not any(pads):
        return x
    return F.pad(x, torch_pad(pads), value=value)
