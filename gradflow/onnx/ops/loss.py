"""Loss operators: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import output_tuple
from gradflow.onnx.registry import Kernel, register

# torch's own default: no class index equals it, so nothing is ignored.
_NONE_IGNORED = -100


def _nll(ctx: NodeContext, log_probs: torch.Tensor, target: torch.Tensor,
         weight: torch.Tensor | None) -> torch.Tensor:
    # torch's nll_loss computes what ONNX specifies: -weight[t] * input[n, t, d...], 0 where the
    # target is ignore_index, and "mean" divides by the total weight of the targets not ignored.
    ignore = ctx.attr("ignore_index")
    return F.nll_loss(
        log_probs,
        target.long(),
        weight,
        ignore_index=_NONE_IGNORED if ignore is None else int(ignore),
        reduction=ctx.attr("reduction", "mean"),
    )


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
