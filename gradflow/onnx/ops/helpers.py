"""Small pieces shared by kernel factories."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from gradflow.onnx.context import NodeContext
from gradflow.onnx.registry import Kernel


def scalar_operands(ctx: NodeContext) -> tuple[Any, Any]:
    """For a binary op, each input as a Python number when it is a constant that can stand in
    for the tensor without changing the result's shape or dtype; else None.

    A one-element constant qualifies when it is 0-d, or when the other input is known to have
    at least its rank (so broadcasting against it changes nothing).
    """
    values: list[Any] = [None, None]
    for i in (0, 1):
        const = ctx.const(i)
        if const is None or const.numel() != 1 or ctx.is_const(1 - i):
            continue
        if const.dtype not in (torch.float32, torch.float64, torch.int64, torch.int32):
            continue
        other_rank = ctx.input_rank(1 - i)
        if const.dim() == 0 or (other_rank is not None and other_rank >= const.dim()):
            values[i] = const.reshape(()).item()
    return values[0], values[1]


def binary(ctx: NodeContext, op: Callable[[Any, Any], torch.Tensor]) -> Kernel:
    """A kernel applying `op` to two inputs, with a constant scalar operand baked in."""
    a, b = scalar_operands(ctx)
    if b is not None:
        return lambda x, _y: op(x, b)
    if a is not None:
        return lambda _x, y: op(a, y)
    return op


def normalize_axis(axis: int, rank: int) -> int:
    """`axis` in [0, rank), ONNX-style negative axes counting from the end."""
    return axis + rank if axis < 0 else axis


def ints(value: torch.Tensor | Sequence[int] | None) -> list[int]:
    """A runtime shape-like tensor (or sequence) as a list of Python ints."""
    if value is None:
        return []
    if isinstance(value, torch.Tensor):
        return [int(v) for v in value.reshape(-1).tolist()]
    return [int(v) for v in value]


def item(value: Any) -> Any:
    """A one-element tensor as a Python number (other values pass through)."""
    return value.reshape(()).item() if isinstance(value, torch.Tensor) else value


def output_tuple(ctx: NodeContext, *values: Any) -> Any:
    """The kernel result for a node with `ctx.n_outputs` declared outputs: the first value
    alone when it declares one, else a tuple padded with None."""
    if ctx.n_outputs == 1:
        return values[0]
    padded = list(values[: ctx.n_outputs]) + [None] * (ctx.n_outputs - len(values))
    return tuple(padded)
