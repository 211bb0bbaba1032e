"""Loss operators: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss."""

from __future__ import annotations

import torch

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import output_tuple
from gradflow.onnx.registry import Kernel, register


def _nll(ctx: NodeContext, log_probs: torch.Tensor, target: torch.Tensor,
         weight: torch.Tensor | None) -> torch.Tensor:
    # -weight[t] * input[n, t, d...], 0 where the target is ignore_index; "mean" divides by the
    # total weight of the targets not ignored. Written out rather than F.nll_loss, which cannot
    # differentiate the weights.
    ignore = ctx.attr("ignore_index")
    reduction = ctx.attr("reduction", "mean")
    target = target.long()
    kept = torch.ones_like(target, dtype=torch.bool) if ignore is None else target != int(ignore)
    safe = torch.where(kept, target, torch.zeros_like(target))
    picked = -log_probs.gather(1, safe.unsqueeze(1)).squeeze(1)
    scale = kept.to(log_probs.dtype)
    if weight is not None:
        scale = scale * weight[safe]
    loss = picked * scale
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / scale.sum()


@register("NegativeLogLikelihoodLoss", since=13)
def negative_log_likelihood_loss(ctx: NodeContext) -> Kernel:
    def run(x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return _nll(ctx, x, target, weight)

    return run


@register("SoftmaxCrossEntropyLoss", since=13)
def softmax_cross_entropy_loss(ctx: NodeContext) -> Kernel:
    # The second output, when asked for, is the log-probabilities the loss is taken on.
    def run(
        x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor | None, ...]:
        log_probs = torch.log_softmax(x, dim=1)
        return output_tuple(ctx, _nll(ctx, log_probs, target, weight), log_probs)

    return run
