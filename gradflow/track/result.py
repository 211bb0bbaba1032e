"""The result of `gradflow track`: frozen records, one per (recorded step, junction).

`track()` builds a Track; renderers (Rich table, JSON, CSV, plot) read it. Nothing here imports
torch, so the renderers stay light.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from gradflow.choices import Choice
from gradflow.engine.report import METRICS
from gradflow.track.history import FlowHistory

if TYPE_CHECKING:
    from rich.console import RenderableType

TRACK_SCHEMA = "gradflow/track@1"


class Optimizer(Choice):
    """The optimizer that steps the training copy (torch.optim defaults besides the lr)."""

    SGD = "sgd"
    ADAM = "adam"
    ADAMW = "adamw"


@dataclass(frozen=True)
class TrackRecord:
    """One junction's numbers at one recorded step (before that step's parameter update).

    The metrics are those of `gradflow.engine.report.Junction`, measured on the training step's own
    backward pass; `loss` is that step's training loss.
    """

    step: int
    junction: str
    index: int
    grad_out: float | None
    grad_skip: float | None
    grad_block: float | None
    grad_in: float | None
    block_ratio: float | None
    cosine: float | None
    param_grad: float | None
    loss: float | None

    def metric(self, name: str) -> float | None:
        if name not in METRICS:
            raise KeyError(name)
        value: float | None = getattr(self, name)
        return value


@dataclass(frozen=True)
class TrackSettings:
    """What the run was asked to do. `data` is None when training on the probe batch."""

    steps: int
    every: int
    optimizer: str
    lr: float
    loss: str
    seed: int
    batch_size: int | None
    data: str | None = None
    samples: int | None = None


@dataclass(frozen=True)
class Track(FlowHistory):
    """Gradient flow over training steps: what `gradflow.track.track` returns. `to_dict()` is
    the `gradflow/track@1` JSON.

    In a notebook a Track shows the table `gradflow track` prints (through Rich) or the same
    as HTML with sparklines; `repr` is one line.

    Attributes:
        source: the model as the user named it.
        settings: steps asked for, recording interval, optimizer, lr, loss, seed, data.
        junctions: the recorded junction names, in forward order.
        records: every (step, junction) record, by step then junction.
        losses: (step, training loss) at every recorded step, with or without junctions.
        steps_run: training steps completed (fewer than asked when interrupted).
        interrupted: True when Ctrl-C stopped the run; the records made until then are kept.
        parameters: the model's trainable parameter count.

    Example:
        >>> from gradflow.track import track
        >>> result = track(model, torch.randn(8, 3, 32, 32), steps=60, every=5)
        >>> result
        Track(6 junctions, 60 steps, 12 recorded, loss 2.249 → 0.005345)
        >>> result.crossover("layer1.0"), result.series("layer1.0", "grad_block")[-1]
    """

    source: str
    settings: TrackSettings
    junctions: tuple[str, ...]
    records: tuple[TrackRecord, ...]
    losses: tuple[tuple[int, float | None], ...]
    steps_run: int
    interrupted: bool = False
    parameters: int = 0
    gradflow_version: str = ""
    torch_version: str = ""
    timings_s: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        from gradflow.render.short import track_repr
        return track_repr(self)

    def __rich__(self) -> RenderableType:
        from gradflow.render.track import track_rich
        return track_rich(self)

    def _repr_html_(self) -> str:
        from gradflow.render.track_html import track_fragment
        return track_fragment(self)

    def to_dict(self) -> dict[str, Any]:
        """The `gradflow/track@1` JSON document."""
        return {
            "schema": TRACK_SCHEMA,
            "gradflow_version": self.gradflow_version,
            "torch_version": self.torch_version,
            "source": self.source,
            "parameters": self.parameters,
            "settings": asdict(self.settings),
            "steps_run": self.steps_run,
            "interrupted": self.interrupted,
            "junctions": [
                {"name": name, "crossover": self.crossover(name),
                 "block_leads_from_start": self.leads_from_start(name)}
                for name in self.junctions
            ],
            "losses": [{"step": s, "loss": _finite({"v": v})["v"]} for s, v in self.losses],
            "records": [_finite(asdict(r)) for r in self.records],
            "timings_s": {k: round(v, 6) for k, v in self.timings_s.items()},
        }


RECORD_FIELDS = ("step", "junction", "index", *METRICS, "loss")


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN or infinity: such values become null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
