"""The result of `gradflow track --sg-skip / --sg-block / --no-residual`: copies of one model
trained side by side from the same weights on the same batches, each a Track. Nothing here
imports torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gradflow.track.result import Track

if TYPE_CHECKING:
    from rich.console import RenderableType

TRACK_ARMS_SCHEMA = "gradflow/track-arms@1"

# What each arm does to the selected junctions, in words the output uses.
ARM_FORMS = {
    "baseline": "x + f(x)",
    "sg-skip": "sg(x) + f(x)",
    "sg-block": "x + sg(f(x))",
    "no-residual": "f(x)",
}


@dataclass(frozen=True)
class TrackArms:
    """Training arms side by side: what `gradflow.track.track_arms` returns. `to_dict()` is the
    `gradflow/track-arms@1` JSON, which holds each arm's `gradflow/track@1` document.

    Shows itself as the tables `gradflow track --sg-skip` prints: the loss of every arm, then per
    junction the skip and block paths of each arm that has them; `repr` is one line.

    Attributes:
        source: the model as the user named it.
        arms: arm name ("baseline", "sg-skip", "sg-block", "no-residual") -> its Track, in that
            order. The no-residual arm records the loss only: its selected junctions have no add.
        junctions: the junctions the arms change (selected by `at`), in forward order.
        trained: arm name -> the copy of the model that arm trained (an nn.Module; not in the
            JSON), to evaluate the arms afterwards.

    Example:
        >>> from gradflow.track import track_arms
        >>> arms = track_arms(model, x, steps=100, every=5, sg_skip=True, no_residual=True)
        >>> [(name, arm.losses[-1][1]) for name, arm in arms.arms.items()]
    """

    source: str
    arms: dict[str, Track]
    junctions: tuple[str, ...]
    trained: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        from gradflow.render.short import track_arms_repr
        return track_arms_repr(self)

    def __rich__(self) -> RenderableType:
        from gradflow.render.arms import arms_rich
        return arms_rich(self)

    def _repr_html_(self) -> str:
        from gradflow.render.arms import arms_fragment
        return arms_fragment(self)

    @property
    def baseline(self) -> Track:
        """The unchanged arm."""
        return self.arms["baseline"]

    def to_dict(self) -> dict[str, Any]:
        """The `gradflow/track-arms@1` document."""
        first = self.baseline
        return {
            "schema": TRACK_ARMS_SCHEMA,
            "gradflow_version": first.gradflow_version,
            "torch_version": first.torch_version,
            "source": self.source,
            "junctions": list(self.junctions),
            "arms": {name: {"form": ARM_FORMS[name], "track": arm.to_dict()}
                     for name, arm in self.arms.items()},
        }
