"""Elementwise arithmetic: Add, Sub, Mul, Div, Pow, Mod, the variadic Sum/Mean/Max/Min, and
unary math functions."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from gradflow.engine.sites import record_add
from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import binary, scalar_operands
from gradflow.onnx.registry import Kernel, register


@register("Add", since=13)
def add(ctx: NodeContext) -> Kernel:
    # Every Add reports its result, so junctions found on the autograd graph get a name (the
    # module scope, or the node's shortened name: see gradflow.onnx.add_names).
    module, location = ctx.module, ctx.name
    a, b = scalar_operands(ctx)

    def add_scalar(x: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        result = x + b
        record_add(result, module, location)
        return result

    def scalar_add(_x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        result = a + y
        record_add(result, module, location)
        return result

    def add_tensors(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        result = x + y
        record_add(result, module, location)
        return result

    if b is not None:
        return add_scalar
    if a is not None:
        return scalar_add
    return add_tensors


@register("Sub", since=13)
def sub(ctx: NodeContext) -> Kernel:
    return binary(ctx, torch.sub)


@register("Mul", since=13)
def mul(ctx: NodeContext) -> Kernel:
    return binary(ctx, torch.mul)


@register("Div", since=13)
def div(ctx: NodeContext) -> Kernel:
    dtype = ctx.input_dtype(0) or ctx.input_dtype(1)
    if dtype is not None and dtype.is_floating_point:
        return binary(ctx, torch.div)

    # Integer division truncates toward zero (as onnxruntime does).
    def divide(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            return torch.div(x, y)
        if isinstance(y, torch.Tensor) and y.is_floating_point():
            return torch.div(x, y)
        return torch.div(x, y, rounding_mode="trunc")

    return binary(ctx, divide)


@register("Pow", since=13)
def pow_(ctx: NodeContext) -> Kernel:
    _, exponent = scalar_operands(ctx)
    if exponent is not None:
        return lambda x, _y: torch.pow(x, exponent)

    # The result has the base's type, whatever the exponent's.
    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        result = torch.pow(x, y)
        return result if result.dtype == x.dtype else result.to(x.dtype)

    return run


@register("Mod", since=13)
def mod(ctx: NodeContext) -> Kernel:
    # fmod=0: the result takes the divisor's sign (Python %); fmod=1: the dividend's (C fmod).
    return binary(ctx, torch.fmod if ctx.attr("fmod", 0) else torch.remainder)


def _variadic(op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Kernel:
    def run(*xs: torch.Tensor) -> torch.Tensor:
        return functools.reduce(op, xs)

    return run


@register("Sum", since=13)
def sum_(ctx: NodeContext) -> Kernel:
    # Older exporters add residuals with Sum: each partial sum reports itself as Add does.
    module, location = ctx.module, ctx.name

    def run(*xs: torch.Tensor) -> torch.Tensor:
        total = xs[0]
        for x in xs[1:]:
            total = total + x
            record_add(total, module, location)
        return total

    return run


@register("Max", since=13)
def max_(ctx: NodeContext) -> Kernel:
    return _variadic(torch.maximum)


@register("Min", since=13)
def min_(ctx: NodeContext) -> Kernel:
    return _variadic(torch.minimum)


@register("Mean", since=13)
def mean(ctx: NodeContext) -> Kernel:
    def run(*xs: torch.Tensor) -> torch.Tensor:
        return functools.reduce(torch.add, xs) / len(xs)

    return run


_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Neg": torch.neg,
    "Abs": torch.abs,
    "Reciprocal": torch.reciprocal,
    "Sqrt": torch.sqrt,
    "Exp": torch.exp,
    "Log": torch.log,
    "Floor": torch.floor,
    "Ceil": torch.ceil,
    "Round": torch.round,  # half to even, as ONNX specifies
    "Sign": torch.sign,
    "Erf": torch.erf,
    "Sin": torch.sin,
    "Cos": torch.cos,
    "Tan": torch.tan,
    "Asin": torch.asin,
    "Acos": torch.acos,
    "Atan": torch.atan,
    "Sinh": torch.sinh,
    "Cosh": torch.cosh,
    "Asinh": torch.asinh,
    "Acosh": torch.acosh,
    "Atanh": torch.atanh,
}


def _unary_factory(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[NodeContext], Kernel]:
    def factory(ctx: NodeContext) -> Kernel:
        return fn

    return factory


for _op_type, _fn in _UNARY.items():
    register(_op_type, since=13)(_unary_factory(_fn))
