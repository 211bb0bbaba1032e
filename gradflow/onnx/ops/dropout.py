"""Dropout: the identity unless the graph switches training mode on."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import item, output_tuple
from gradflow.onnx.registry import PASSTHROUGH, Kernel, register


def _drop(x: torch.Tensor, ratio: float, want_mask: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not want_mask:
        return F.dropout(x, ratio, True), None
    keep = torch.rand_like(x, dtype=torch.float32) >= ratio
    scale = 0.0 if ratio >= 1.0 else 1.0 / (1.0 - ratio)
    return x * keep * scale, keep


def _dropout_trains(ctx: NodeContext) -> bool:
    """False when the node is known at load time to drop nothing: training_mode absent or a
    constant False, or a ratio of constant 0."""
    training_known = not ctx.has_input(2) or ctx.is_const(2)
    training = bool(ctx.const_scalar(2)) if ctx.has_input(2) and ctx.is_const(2) else False
    ratio_const = ctx.const_scalar(1) if ctx.has_input(1) else 0.5
    return not (training_known and (not training or ratio_const == 0))


@register("Dropout", since=13, deterministic=False, trains=_dropout_trains)
def dropout(ctx: NodeContext) -> Kernel:
    # Inputs: data, ratio (default 0.5), training_mode (default False). The mask output is
    # True where an element was kept.
    want_mask = ctx.output_used(1)
    ratio_const = ctx.const_scalar(1) if ctx.has_input(1) else 0.5
    if not _dropout_trains(ctx):
        # Dropping nothing: the output is the input, the mask all True.
        if not want_mask:
            return PASSTHROUGH if ctx.n_outputs == 1 else (lambda x, *_: (x, None))
        return lambda x, *_: (x, torch.ones_like(x, dtype=torch.bool))

    def run(
        x: torch.Tensor, ratio: torch.Tensor | None = None, mode: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor | None, ...]:
        on = bool(item(mode)) if mode is not None else False
        if not on:
            mask = torch.ones_like(x, dtype=torch.bool) if want_mask else None
            return output_tuple(ctx, x, mask)
        p = float(ratio_const if ratio_const is not None else item(ratio))
        y, mask = _drop(x, p, want_mask)
        return output_tuple(ctx, y, mask)

    return run
