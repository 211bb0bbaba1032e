"""Comparisons, boolean logic, Where, and the IsNaN/IsInf tests."""

from __future__ import annotations

from collections.abc import Callable

import torch

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import binary
from gradflow.onnx.registry import Kernel, register

_COMPARISONS: dict[str, Callable[..., torch.Tensor]] = {
    "Equal": torch.eq,
    "Less": torch.lt,
    "LessOrEqual": torch.le,
    "Greater": torch.gt,
    "GreaterOrEqual": torch.ge,
    "And": torch.logical_and,
    "Or": torch.logical_or,
    "Xor": torch.logical_xor,
}


def _binary_factory(op: Callable[..., torch.Tensor]) -> Callable[[NodeContext], Kernel]:
    def factory(ctx: NodeContext) -> Kernel:
        return binary(ctx, op)

    return factory


for _op_type, _op in _COMPARISONS.items():
    register(_op_type, since=13)(_binary_factory(_op))


@register("Not", since=13)
def not_(ctx: NodeContext) -> Kernel:
    return torch.logical_not


@register("IsNaN", since=13)
def isnan(ctx: NodeContext) -> Kernel:
    return torch.isnan


@register("IsInf", since=13)
def isinf(ctx: NodeContext) -> Kernel:
    negative = bool(ctx.attr("detect_negative", 1))
    positive = bool(ctx.attr("detect_positive", 1))
    if negative and positive:
        return torch.isinf
    if positive:
        return torch.isposinf
    if negative:
        return torch.isneginf
    return lambda x: torch.zeros_like(x, dtype=torch.bool)


@register("Where", since=13)
def where(ctx: NodeContext) -> Kernel:
    # A constant one-element branch becomes a Python number (keeps the other branch's dtype).
    x_const, y_const = ctx.const(1), ctx.const(2)
    if y_const is not None and x_const is None and y_const.dim() == 0:
        y = y_const.item()
        return lambda cond, x, _y: torch.where(cond, x, y)
    if x_const is not None and y_const is None and x_const.dim() == 0:
        x = x_const.item()
        return lambda cond, _x, y: torch.where(cond, x, y)
    return torch.where
