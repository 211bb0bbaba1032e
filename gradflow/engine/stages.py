"""Where a measurement's time goes, stage by stage: off unless a caller turns it on.

Each stage is named after the engine module that does the work, so a figure points at a file:

    inventory  the walk over the model's modules and parameters (`inventory.py`)
    state      the model-state guard: set aside on entry, restored on exit (`state.py`)
    recorder   the probe's forward pass under the recorder, with the probe's loss (`recorder.py`);
               it includes the model's own forward pass
    replay     a graph of a shape seen before: its junctions replayed (`replay.py`)
    junctions  the walk over the autograd graph and the search (`junctions.py`)
    notes      what the graph hides from the search (`notes.py`)
    naming     junction names and the modules each path runs (`naming.py`)
    select     the junctions measured and stopped (`select.py`)
    context    each block's context tensors (`context.py`)
    taps       hooks on, the backward pass, hooks off (`taps.py`); it includes the model's own
               backward pass
    norms      the batched norms and the one transfer to the host (`norms.py`)
    reduce     the ranks' numbers made one (`reduce.py`)
    report     the Report built from the numbers (`report.py`, `gates.py`)
    measure    everything else the driver does between the stages (`measure.py`)

Stages do not overlap: a stage entered inside another pauses the outer one, so the figures add up
to the measurement's wall time. With timing off (the default), `stage` returns one shared
do-nothing context manager: a measurement pays a global lookup and a call per stage.
`benchmarks/breakdown.py` turns it on to split each stage's cost into a fixed part and a part per
junction.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

STAGES = (
    "inventory", "state", "recorder", "replay", "junctions", "notes", "naming", "select",
    "context", "taps", "norms", "reduce", "report", "measure",
)

_OFF: AbstractContextManager[None] = nullcontext()
_clock: _Clock | None = None


class _Clock:
    """Seconds per stage, exclusive: the time of a nested stage is not its parent's."""

    __slots__ = ("seconds", "running", "since")

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.running: list[str] = []
        self.since = time.perf_counter()

    def enter(self, name: str) -> None:
        now = time.perf_counter()
        if self.running:
            self.seconds[self.running[-1]] += now - self.since
        self.running.append(name)
        self.since = now

    def leave(self) -> None:
        now = time.perf_counter()
        self.seconds[self.running.pop()] += now - self.since
        self.since = now


class _Stage:
    __slots__ = ("clock", "name")

    def __init__(self, clock: _Clock, name: str) -> None:
        self.clock, self.name = clock, name

    def __enter__(self) -> None:
        self.clock.enter(self.name)

    def __exit__(self, *exc: Any) -> None:
        self.clock.leave()


def stage(name: str) -> AbstractContextManager[None]:
    """A block of work that belongs to stage `name` (one of STAGES) while timing is on."""
    clock = _clock
    if clock is None:
        return _OFF
    return _Stage(clock, name)


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Time the stages of the measurements made inside the block, on this thread's calls; the
    yielded dict (stage -> seconds, summed over those measurements) fills in as they run. Wrap
    one measurement per block to time one."""
    global _clock
    outer, _clock = _clock, _Clock()
    clock = _clock
    clock.enter("measure")
    try:
        yield clock.seconds
    finally:
        while clock.running:
            clock.leave()
        _clock = outer
