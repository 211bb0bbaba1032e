"""Activations and their kin: Relu, Sigmoid, Tanh, Gelu, Swish, SwiGLU, the hard and leaky
variants, Shrink, Clip, Softmax, LogSoftmax and Hardmax."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gradflow.onnx.context import NodeContext
from gradflow.onnx.registry import Kernel, register


@register("Relu", since=13)
def relu(ctx: NodeContext) -> Kernel:
    return torch.relu


@register("Sigmoid", since=13)
def sigmoid(ctx: NodeContext) -> Kernel:
    return torch.sigmoid


@register("Tanh", since=13)
def tanh(ctx: NodeContext) -> Kernel:
    return torch.tanh


@register("Softsign", since=13)
def softsign(ctx: NodeContext) -> Kernel:
    return F.softsign


@register("Softplus", since=13)
def softplus(ctx: NodeContext) -> Kernel:
    return F.softplus


@register("Mish", since=18)
def mish(ctx: NodeContext) -> Kernel:
    return F.mish


@register("Gelu", since=20)
def gelu(ctx: NodeContext) -> Kernel:
    approximate = ctx.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise ctx.unsupported(f"approximate='{approximate}'")
    if approximate == "none":
        return F.gelu
    return lambda x: F.gelu(x, approximate="tanh")


@register("LeakyRelu", since=13)
def leaky_relu(ctx: NodeContext) -> Kernel:
    alpha = ctx.attr("alpha", 0.01)
    return lambda x: F.leaky_relu(x, alpha)


@register("PRelu", since=13)
def prelu(ctx: NodeContext) -> Kernel:
    # The slope broadcasts numpy-style against x (trailing dims aligned), unlike F.prelu.
    def run(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, x * slope)

    return run


@register("Elu", since=13)
def elu(ctx: NodeContext) -> Kernel:
    alpha = ctx.attr("alpha", 1.0)
    return lambda x: F.elu(x, alpha)


@register("Selu", since=13)
def selu(ctx: NodeContext) -> Kernel:
    alpha = ctx.attr("alpha", 1.67326319217681884765625)
    gamma = ctx.attr("gamma", 1.05070102214813232421875)
    return lambda x: gamma * F.elu(x, alpha)


@register("Celu", since=13)
def celu(ctx: NodeContext) -> Kernel:
    alpha = ctx.attr("alpha", 1.0)
    return lambda x: F.celu(x, alpha)


@register("ThresholdedRelu", since=13)
def thresholded_relu(ctx: NodeContext) -> Kernel:
    alpha = ctx.attr("alpha", 1.0)
    return lambda x: F.threshold(x, alpha, 0.0)


@register("HardSigmoid", since=13)
def hard_sigmoid(ctx: NodeContext) -> Kernel:
    alpha = ctx.attr("alpha", 0.2)
    beta = ctx.attr("beta", 0.5)
    if math.isclose(alpha, 1 / 6, rel_tol=1e-6) and beta == 0.5:
        return F.hardsigmoid
    return lambda x: torch.clamp(x * alpha + beta, 0.0, 1.0)


@register("HardSwish", since=14)
def hard_swish(ctx: NodeContext) -> Kernel:
    return F.hardswish


@register("Clip", since=13)
def clip(ctx: NodeContext) -> Kernel:
    # Absent bounds are unbounded; constant bounds become Python numbers.
    low_const = ctx.const_scalar(1) if ctx.has_input(1) else None
    high_const = ctx.const_scalar(2) if ctx.has_input(2) else None
    low_known = not ctx.has_input(1) or low_const is not None
    high_known = not ctx.has_input(2) or high_const is not None
    if low_known and high_known:
        if low_const is None and high_const is None:
            return lambda x, *_: x
        return lambda x, *_: torch.clamp(x, low_const, high_const)

    def run(
        x: torch.Tensor, low: torch.Tensor | None = None, high: torch.Tensor | None = None
    ) -> torch.Tensor:
        if low is None and high is None:
            return x
        return torch.clamp(x, low, high)

    return run


@register("Softmax", since=13)
def softmax(ctx: NodeContext) -> Kernel:
    axis = ctx.attr("axis", -1)
    return lambda x: torch.softmax(x, axis)


@register("LogSoftmax", since=13)
def log_softmax(ctx: NodeContext) -> Kernel:
    axis = ctx.attr("axis", -1)
    return lambda x: torch.log_softmax(x, axis)


@register("Hardmax", since=13)
def hardmax(ctx: NodeContext) -> Kernel:
    # One-hot of the first maximum along the axis: piecewise constant, so no gradient flows.
    axis = ctx.attr("axis", -1)

    def run(x: torch.Tensor) -> torch.Tensor:
        if x.numel() == 0:
            return x
        first = x.argmax(axis, keepdim=True)
        return torch.zeros_like(x).scatter_(axis, first, 1)

    return run


@register("Shrink", since=13)
def shrink(ctx: NodeContext) -> Kernel:
    bias = ctx.attr("bias", 0.0)
    lambd = ctx.attr("lambd", 0.5)

    def run(x: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, zero))

    return run


@register("Swish", since=24)
def swish(ctx: NodeContext) -> Kernel:
    alpha = ctx.attr("alpha", 1.0)
    if alpha == 1.0:
        return F.silu
    return lambda x: x * torch.sigmoid(alpha * x)


@register("SwiGLU", since=28)
def swiglu(ctx: NodeContext) -> Kernel:
    # Swish-gated linear unit: swish_alpha(a) * b, on inputs of one shape.
    alpha = ctx.attr("alpha", 1.0)
    if alpha == 1.0:
        return lambda a, b: F.silu(a) * b
    return lambda a, b: a * torch.sigmoid(alpha * a) * b
