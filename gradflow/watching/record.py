"""One junction's numbers at one measured training step. Nothing here imports torch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gradflow.engine.report import METRICS
from gradflow.engine.verdicts import Status

if TYPE_CHECKING:
    from rich.console import RenderableType

WATCH_SCHEMA = "gradflow/watch@1"

# The fields one JSONL line of a watch log holds, in order.
LOGGED = ("step", "junction", *METRICS, "status", "loss")


@dataclass(frozen=True)
class WatchRecord:
    """One junction at one measured step of a watched training loop.

    The metrics are those of `gradflow.Junction` (grad_out, grad_skip, grad_block, grad_in,
    block_ratio, cosine, param_grad), measured on the step's own backward pass, over all its
    micro-batches when `accumulate` > 1, and unscaled when a GradScaler is given.

    step: the training step (optimizer step, counted from 0). loss: what `Watch.step(loss)`
    was given for that step, else None. status: the junction's verdict, None when the step is
    incomplete. complete: False when the step's backward pass did not fill the measurement (a
    forward pass came first, or the loop ended); its numbers are then None and `note` says why.

    Example:
        >>> with gradflow.watch(model, every=100) as w:
        ...     train(model)
        >>> [(r.step, r.junction, r.block_ratio) for r in w.records]
    """

    step: int
    junction: str
    grad_out: float | None
    grad_skip: float | None
    grad_block: float | None
    grad_in: float | None
    block_ratio: float | None
    cosine: float | None
    param_grad: float | None
    status: Status | None
    loss: float | None = None
    complete: bool = True
    note: str | None = None

    def __repr__(self) -> str:
        from gradflow.render.short import record_repr
        return record_repr(self)

    def __rich__(self) -> RenderableType:
        from gradflow.render.watch import record_rich
        return record_rich(self)

    def _repr_html_(self) -> str:
        from gradflow.render.watch import record_html
        return record_html(self)

    def metric(self, name: str) -> float | None:
        """The metric `name` (one of grad_out, grad_skip, grad_block, grad_in, block_ratio,
        cosine, param_grad); KeyError for any other name."""
        if name not in METRICS:
            raise KeyError(name)
        value: float | None = getattr(self, name)
        return value

    def to_dict(self) -> dict[str, Any]:
        """One line of a `gradflow/watch@1` log: non-finite numbers become null, as in a report."""
        out: dict[str, Any] = {name: _plain(getattr(self, name)) for name in LOGGED}
        out["status"] = None if self.status is None else str(self.status)
        if not self.complete:
            out["complete"] = False
            out["note"] = self.note
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
