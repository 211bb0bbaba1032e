"""Object detection's box selection: NonMaxSuppression."""

from __future__ import annotations

import torch

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import item
from gradflow.onnx.registry import Kernel, register


def _corners(boxes: torch.Tensor, center: bool) -> torch.Tensor:
    """[..., 4] boxes as [y_min, x_min, y_max, x_max] (corners may come in either order)."""
    if center:
        x, y, w, h = boxes.unbind(-1)
        return torch.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], -1)
    y1, x1, y2, x2 = boxes.unbind(-1)
    return torch.stack([torch.minimum(y1, y2), torch.minimum(x1, x2),
                        torch.maximum(y1, y2), torch.maximum(x1, x2)], -1)


def _overlaps(corners: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over union of [boxes, 4] corners (0 for empty boxes)."""
    top = torch.maximum(corners[:, None, 0], corners[None, :, 0])
    left = torch.maximum(corners[:, None, 1], corners[None, :, 1])
    bottom = torch.minimum(corners[:, None, 2], corners[None, :, 2])
    right = torch.minimum(corners[:, None, 3], corners[None, :, 3])
    inter = (bottom - top).clamp(min=0) * (right - left).clamp(min=0)
    area = (corners[:, 2] - corners[:, 0]) * (corners[:, 3] - corners[:, 1])
    union = area[:, None] + area[None, :] - inter
    valid = (area[:, None] > 0) & (area[None, :] > 0) & (union > 0)
    return torch.where(valid, inter / torch.where(union > 0, union, 1.0), 0.0)


@register("NonMaxSuppression", since=13)
def non_max_suppression(ctx: NodeContext) -> Kernel:
    # Per batch entry and class: boxes by descending score (ties to the lower index), above
    # score_threshold when given, each kept unless its IoU with a kept one exceeds
    # iou_threshold, at most max_output_boxes_per_class; rows [batch, class, box].
    center = bool(ctx.attr("center_point_box", 0))

    def run(boxes: torch.Tensor, scores: torch.Tensor, limit: torch.Tensor | None = None,
            iou: torch.Tensor | None = None, threshold: torch.Tensor | None = None) -> torch.Tensor:
        most = max(int(item(limit)), 0) if limit is not None and limit.numel() else 0
        iou_limit = float(item(iou)) if iou is not None and iou.numel() else 0.0
        selected: list[tuple[int, int, int]] = []
        for b in range(boxes.shape[0]):
            overlap = _overlaps(_corners(boxes[b].double(), center)).tolist()
            for c in range(scores.shape[1]):
                score = scores[b, c].double()
                order = torch.sort(score, descending=True, stable=True).indices.tolist()
                if threshold is not None and threshold.numel():
                    order = [i for i in order if score[i] > float(item(threshold))]
                kept: list[int] = []
                for i in order:
                    if len(kept) >= most:
                        break
                    if all(overlap[i][j] <= iou_limit for j in kept):
                        kept.append(i)
                selected += [(b, c, i) for i in kept]
        return torch.tensor(selected, dtype=torch.int64, device=boxes.device).reshape(-1, 3)

    return run
