"""Normalizations: BatchNormalization (inference and training mode), LayerNormalization,
InstanceNormalization, GroupNormalization, RMSNormalization, LRN, LpNormalization and
MeanVarianceNormalization."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import normalize_axis
from gradflow.onnx.registry import Kernel, register


def _batch_norm(ctx: NodeContext, training: bool) -> Kernel:
    eps = ctx.attr("epsilon", 1e-5)
    momentum = ctx.attr("momentum", 0.9)
    n_out = ctx.n_outputs
    if not training:

        def infer(x, scale, bias, mean, var):  # type: ignore[no-untyped-def]
            if mean.requires_grad or var.requires_grad:
                # F.batch_norm cannot differentiate through the running statistics.
                shape = (1, -1) + (1,) * (x.dim() - 2)
                y = (x - mean.reshape(shape)) * torch.rsqrt(var.reshape(shape) + eps)
                y = y * scale.reshape(shape) + bias.reshape(shape)
            else:
                y = F.batch_norm(x, mean, var, scale, bias, False, 0.0, eps)
            return y if n_out == 1 else (y,) + (None,) * (n_out - 1)

        return infer

    want_stats = any(ctx.output_used(i) for i in range(1, n_out))

    # Training mode: normalise with the batch's statistics. The optional outputs are the
    # updated running statistics (input * momentum + batch statistic * (1 - momentum)), then,
    # before opset 14, the batch mean and inverse standard deviation (as onnxruntime gives).
    def train(x, scale, bias, mean, var):  # type: ignore[no-untyped-def]
        y = F.batch_norm(x, None, None, scale, bias, True, 0.0, eps)
        if n_out == 1:
            return y
        if not want_stats:
            return (y,) + (None,) * (n_out - 1)
        dims = [0, *range(2, x.dim())]
        batch_var, batch_mean = torch.var_mean(x, dims, correction=0)
        running_mean = mean * momentum + batch_mean * (1 - momentum)
        running_var = var * momentum + batch_var * (1 - momentum)
        inv_std = torch.rsqrt(batch_var + eps)
        return (y, running_mean, running_var, batch_mean, inv_std)[:n_out]

    return train


def _batch_norm_9_trains(ctx: NodeContext) -> bool:
    # Before opset 14, asking for the statistics outputs is what selects training mode.
    return ctx.n_outputs > 1


def _batch_norm_14_trains(ctx: NodeContext) -> bool:
    return bool(ctx.attr("training_mode", 0))


@register("BatchNormalization", since=13, until=13, trains=_batch_norm_9_trains)
def batch_norm_9(ctx: NodeContext) -> Kernel:
    return _batch_norm(ctx, training=_batch_norm_9_trains(ctx))


@register("BatchNormalization", since=14, trains=_batch_norm_14_trains)
def batch_norm_14(ctx: NodeContext) -> Kernel:
    return _batch_norm(ctx, training=_batch_norm_14_trains(ctx))


@register("LayerNormalization", since=17)
def layer_norm(ctx: NodeContext) -> Kernel:
    axis = ctx.attr("axis", -1)
    eps = ctx.attr("epsilon", 1e-5)
    n_out = ctx.n_outputs
    want_stats = ctx.output_used(1) or ctx.output_used(2)

    def run(
        x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor | None, ...]:
        a = normalize_axis(axis, x.dim())
        shape = x.shape[a:]
        if scale.shape == shape and (bias is None or bias.shape == shape):
            y = F.layer_norm(x, shape, scale, bias, eps)
        else:
            # Scale and bias only need to broadcast against the normalised dims.
            y = F.layer_norm(x, shape, None, None, eps) * scale
            if bias is not None:
                y = y + bias
        if n_out == 1:
            return y
        if not want_stats:
            return (y, None, None)[:n_out]
        dims = tuple(range(a, x.dim()))
        var, mean = torch.var_mean(x, dims, correction=0, keepdim=True)
        return (y, mean, torch.rsqrt(var + eps))[:n_out]

    return run


@register("InstanceNormalization", since=13)
def instance_norm(ctx: NodeContext) -> Kernel:
    eps = ctx.attr("epsilon", 1e-5)
    return lambda x, scale, bias: F.instance_norm(x, weight=scale, bias=bias, eps=eps)


@register("GroupNormalization", since=21)
def group_norm(ctx: NodeContext) -> Kernel:
    # Opset 21 semantics: scale and bias hold one value per channel. (GroupNormalization-18,
    # with one value per group, is deprecated and the ONNX checker rejects it.)
    groups = int(ctx.attr("num_groups"))
    eps = ctx.attr("epsilon", 1e-5)
    return lambda x, scale, bias: F.group_norm(x, groups, scale, bias, eps)


@register("RMSNormalization", since=23)
def rms_norm(ctx: NodeContext) -> Kernel:
    axis = ctx.attr("axis", -1)
    eps = ctx.attr("epsilon", 1e-5)

    def run(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        a = normalize_axis(axis, x.dim())
        shape = x.shape[a:]
        if scale.shape == shape:
            return F.rms_norm(x, shape, scale, eps)
        return F.rms_norm(x, shape, None, eps) * scale

    return run


@register("LRN", since=13)
def lrn(ctx: NodeContext) -> Kernel:
    # Each channel is divided by (bias + alpha / size * sum of squares over a window of `size`
    # channels)^beta; the window reaches floor((size-1)/2) channels back and ceil((size-1)/2)
    # forward (torch's local_response_norm centres even windows the other way).
    size = int(ctx.attr("size"))
    alpha = ctx.attr("alpha", 1e-4)
    beta = ctx.attr("beta", 0.75)
    bias = ctx.attr("bias", 1.0)
    back, forward = (size - 1) // 2, size // 2

    def run(x: torch.Tensor) -> torch.Tensor:
        # [N, 1, C, rest]: the channels become the first pooled dim.
        squares = (x * x).reshape(x.shape[0], 1, x.shape[1], -1)
        padded = F.pad(squares, (0, 0, back, forward))
        total = (F.avg_pool2d(padded, (size, 1), stride=1) * size).reshape(x.shape)
        return x / (bias + alpha / size * total) ** beta

    return run


@register("LpNormalization", since=13)
def lp_normalization(ctx: NodeContext) -> Kernel:
    axis = ctx.attr("axis", -1)
    p = int(ctx.attr("p", 2))
    if p not in (1, 2):
        raise ctx.unsupported(f"LpNormalization p={p}")

    def run(x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, p, dim=axis, keepdim=True)
        # A zero norm means a zero slice, which stays zero (not 0/0).
        return x / torch.where(norm == 0, torch.ones_like(norm), norm)

    return run


@register("MeanVarianceNormalization", since=13)
def mean_variance_normalization(ctx: NodeContext) -> Kernel:
    # (x - mean) / (std + 1e-9) over `axes`, as the operator's function body computes it.
    axes = tuple(ctx.attr("axes") or (0, 2, 3))

    def run(x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(axes, keepdim=True)
        std = torch.sqrt((x * x).mean(axes, keepdim=True) - mean * mean)
        return (x - mean) / (std + 1e-9)

    return run
