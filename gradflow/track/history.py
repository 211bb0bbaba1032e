"""What every history of gradient flow over training steps has in common: a `Track` (gradflow's
own trainer), a `WatchLog` (a watch log read back) and each arm of a `TrackArms`. A history holds
junction names, records (one per step and junction, with the metrics of
`gradflow.engine.report.Junction`) and the loss at each recorded step; the renderers draw any of
them alike. Nothing here imports torch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol


class StepRecord(Protocol):
    """One junction at one step, as a history holds it."""

    @property
    def step(self) -> int: ...

    @property
    def junction(self) -> str: ...

    @property
    def grad_skip(self) -> float | None: ...

    @property
    def grad_block(self) -> float | None: ...

    def metric(self, name: str) -> float | None: ...


class FlowHistory:
    """Series, crossover and lead of the block path, from `junctions`, `records` and `losses`,
    which the subclass (a frozen dataclass) provides."""

    junctions: tuple[str, ...]
    records: Sequence[StepRecord]
    losses: tuple[tuple[int, float | None], ...]

    def steps(self) -> list[int]:
        """The recorded steps, in order."""
        return [step for step, _ in self.losses]

    def series(self, junction: str, metric: str) -> list[tuple[int, float | None]]:
        """(step, value) of one metric at one junction, by step."""
        if junction not in self.junctions:
            raise KeyError(junction)
        return [(r.step, r.metric(metric)) for r in self.records if r.junction == junction]

    def crossover(self, junction: str) -> int | None:
        """The first recorded step at which grad_block exceeds grad_skip after it had not.

        None when the block path never overtook the skip path (including when it led from the
        first record on: see `leads_from_start`).
        """
        behind_seen = False
        for step, skip, block in self._pairs(junction):
            if block > skip:
                if behind_seen:
                    return step
            else:
                behind_seen = True
        return None

    def leads_from_start(self, junction: str) -> bool:
        """True when grad_block already exceeds grad_skip at the first record."""
        pairs = self._pairs(junction)
        return bool(pairs) and pairs[0][2] > pairs[0][1]

    def _pairs(self, junction: str) -> list[tuple[int, float, float]]:
        rows = []
        for r in self.records:
            if r.junction != junction or r.grad_skip is None or r.grad_block is None:
                continue
            if math.isfinite(r.grad_skip) and math.isfinite(r.grad_block):
                rows.append((r.step, r.grad_skip, r.grad_block))
        return rows
