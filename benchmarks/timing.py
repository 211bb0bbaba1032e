"""Interleaved timing: (bare, tool) pairs in one process, so a noisy machine does not decide.

Each pair runs both steps back to back, alternating which goes first (ABBA...), so a slow spell on
a shared machine or allocator state left by the previous step hits both sides alike. The figure
is the median of the per-pair ratios; wall-clock and process CPU time are both kept.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sample:
    wall_s: float
    cpu_s: float


@dataclass(frozen=True)
class Paired:
    """Per-pair samples of a bare step and a tool step."""

    bare: list[Sample] = field(default_factory=list)
    tool: list[Sample] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [t.wall_s / b.wall_s for b, t in zip(self.bare, self.tool)]

    @property
    def cpu_ratios(self) -> list[float]:
        return [t.cpu_s / b.cpu_s for b, t in zip(self.bare, self.tool) if b.cpu_s > 0]

    def summary(self) -> dict[str, Any]:
        ratios = self.ratios
        return {
            "pairs": len(ratios),
            "bare_median_s": statistics.median(s.wall_s for s in self.bare),
            "tool_median_s": statistics.median(s.wall_s for s in self.tool),
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "cpu_ratio_median": statistics.median(self.cpu_ratios) if self.cpu_ratios else None,
            "ratios": ratios,
        }


def timed(step: Callable[[], Any], sync: Callable[[], None]) -> Sample:
    """One run of `step`, after a garbage collection so no run pays for another's garbage."""
    gc.collect()
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    sync()
    return Sample(time.perf_counter() - wall, time.process_time() - cpu)


def interleaved(bare: Callable[[], Any], tool: Callable[[], Any], pairs: int, warmup: int,
                sync: Callable[[], None] = lambda: None) -> Paired:
    """`warmup` untimed runs of each, then `pairs` timed pairs in alternating order."""
    for _ in range(warmup):
        bare()
        tool()
    result = Paired()
    for i in range(pairs):
        if i % 2 == 0:
            result.bare.append(timed(bare, sync))
            result.tool.append(timed(tool, sync))
        else:
            result.tool.append(timed(tool, sync))
            result.bare.append(timed(bare, sync))
    return result


def median_time(step: Callable[[], Any], runs: int, warmup: int = 1,
                sync: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Median wall time of `runs` runs of one step (no pairing: for absolute targets)."""
    for _ in range(warmup):
        step()
    samples = [timed(step, sync).wall_s for _ in range(runs)]
    return {"runs": runs, "median_s": statistics.median(samples), "min_s": min(samples),
            "max_s": max(samples)}


def over_rounds(rounds: list[Paired]) -> dict[str, Any]:
    """The summary of every pair of every round (`Paired.summary`), with each round's median
    ratio and their lowest and highest: the spread from round to round."""
    every = Paired([s for r in rounds for s in r.bare], [s for r in rounds for s in r.tool])
    summary = every.summary()
    medians = [statistics.median(r.ratios) for r in rounds]
    summary.update(rounds=len(rounds), round_medians=medians, spread_min=min(medians),
                   spread_max=max(medians))
    return summary
