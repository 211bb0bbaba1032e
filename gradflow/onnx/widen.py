"""Unsigned integer types torch stores but cannot compute with (uint16, uint32, uint64).

Torch holds these types and moves them around (reshape, index, concatenate, cast), but most of
its arithmetic, comparisons and reductions lack kernels for them. A node that reads or writes one
runs on a signed type wide enough to hold it (uint16 in int32; uint32 and uint64 in int64), and its
outputs are cast back to the types the graph declares. uint64 values above 2**63 - 1 wrap around in
int64: sums, differences and products keep their bits, comparisons and divisions of such values do
not.
"""

from __future__ import annotations

from typing import Any

import torch

from gradflow.onnx.context import NodeContext
from gradflow.onnx.registry import PASSTHROUGH, Kernel

WIDER: dict[torch.dtype, torch.dtype] = {
    torch.uint16: torch.int32,
    torch.uint32: torch.int64,
    torch.uint64: torch.int64,
}


def widen_unsigned(kernel: Kernel, ctx: NodeContext) -> Kernel:
    """`kernel` itself when the node touches none of the types in `WIDER`, else a kernel that
    computes on their wider types and casts its outputs back to the declared ones.

    Args:
        kernel: the node's kernel, as its factory made it.
        ctx: the node, with its inputs' and outputs' element types.

    Returns:
        The kernel to run.
    """
    if kernel is PASSTHROUGH:
        return kernel
    declared = [v.dtype if v.present else None for v in ctx.outputs]
    touched = {v.dtype for v in ctx.inputs if v.present} | set(declared)
    if not touched & WIDER.keys():
        return kernel
    narrow_to = [d if d in WIDER else None for d in declared]

    def run(*args: Any) -> Any:
        result = kernel(*(_widen(a) for a in args))
        if isinstance(result, tuple):
            return tuple(_narrow(r, t) for r, t in zip(result, narrow_to))
        return _narrow(result, narrow_to[0])

    return run


def _widen(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dtype in WIDER:
        return value.to(WIDER[value.dtype])
    return value


def _narrow(value: Any, dtype: torch.dtype | None) -> Any:
    if dtype is None or not isinstance(value, torch.Tensor) or value.dtype == dtype:
        return value
    return value.to(dtype)
