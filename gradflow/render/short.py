"""The short `repr` of each result: one line that says what the result holds, in place of the
dataclass dump (thousands of characters for a Report). Nothing here imports Rich or torch."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import TYPE_CHECKING

from gradflow.drivers.compare import Comparison
from gradflow.engine.report import Report
from gradflow.gate.result import CheckResult
from gradflow.render.numbers import num, ratio
from gradflow.track.result import Track

if TYPE_CHECKING:
    from gradflow.track.arms import TrackArms
    from gradflow.track.watch_log import WatchLog
    from gradflow.watching.record import WatchRecord
    from gradflow.watching.session import Watch


def report_repr(report: Report) -> str:
    """`Report(6 junctions, survival 7.49×, flagged: none)`"""
    s = report.summary
    return (f"Report({_count(s.junctions, 'junction')}, survival {ratio(s.survival)}, "
            f"flagged: {flag_counts(str(f.status) for f in s.flagged)})")


def comparison_repr(c: Comparison) -> str:
    """`Comparison(grad_in, 6 junctions, baseline vs sg-skip: median 0.433×, sg-block: median 0.205×)`"""
    others = []
    for variant in c.variants:
        if variant == c.baseline:
            continue
        ratios = [c.ratio(row, variant) for row in c.rows]
        finite = [r for r in ratios if r is not None and math.isfinite(r)]
        median = ratio(statistics.median(finite)) if finite else "–"
        others.append(f"{variant}: median {median}")
    return (f"Comparison({c.metric}, {_count(len(c.rows), 'junction')}, {c.baseline} vs "
            + ", ".join(others) + ")")


def check_repr(result: CheckResult) -> str:
    """`CheckResult(passed: 6 rules · 6 junctions · 3 seeds)`"""
    return f"CheckResult({result.verdict()})"


def track_repr(track: Track) -> str:
    """`Track(6 junctions, 60 steps, 12 recorded, loss 2.249 → 0.005345)`"""
    losses = [v for _, v in track.losses]
    loss = f", loss {num(losses[0])} → {num(losses[-1])}" if losses else ""
    interrupted = ", interrupted" if track.interrupted else ""
    return (f"Track({_count(len(track.junctions), 'junction')}, {_count(track.steps_run, 'step')}, "
            f"{len(track.losses)} recorded{loss}{interrupted})")


def watch_repr(watch: Watch) -> str:
    """`Watch(6 junctions, every 100, 3 measured steps up to step 200, flagged: 1 dead)`"""
    steps = sorted({r.step for r in watch.records})
    upto = f" up to step {steps[-1]}" if steps else ""
    latest = [r for r in watch.records if steps and r.step == steps[-1]]
    flagged = flag_counts(str(r.status) for r in latest if r.status not in (None, "ok", "dormant"))
    return (f"Watch({_count(len(watch.junctions), 'junction')}, every {watch.every}, "
            f"{_count(len(steps), 'measured step')}{upto}, flagged: {flagged})")


def record_repr(record: WatchRecord) -> str:
    """`WatchRecord(step 200, layer1.0: grad_skip 0.0123, grad_block 0.00456, block_ratio 0.371×, ok)`"""
    if not record.complete:
        return f"WatchRecord(step {record.step}, {record.junction}: incomplete)"
    return (f"WatchRecord(step {record.step}, {record.junction}: grad_skip {num(record.grad_skip)}, "
            f"grad_block {num(record.grad_block)}, block_ratio {ratio(record.block_ratio)}, {record.status})")


def watch_log_repr(log: WatchLog) -> str:
    """`WatchLog(flow.jsonl: 6 junctions, 3 measured steps up to step 40, loss 2.423 → 0.01164)`"""
    steps = log.steps()
    upto = f" up to step {steps[-1]}" if steps else ""
    losses = [v for _, v in log.losses if v is not None]
    loss = f", loss {num(losses[0])} → {num(losses[-1])}" if losses else ""
    partial = ", last line partial" if log.partial else ""
    name = log.path.replace("\\", "/").rsplit("/", 1)[-1]
    return (f"WatchLog({name}: {_count(len(log.junctions), 'junction')}, "
            f"{_count(len(steps), 'measured step')}{upto}{loss}{partial})")


def track_arms_repr(arms: TrackArms) -> str:
    """`TrackArms(6 junctions, 60 steps, loss baseline 0.005345, sg-skip 0.0213, no-residual 0.108)`"""
    last = ", ".join(f"{name} {num(arm.losses[-1][1]) if arm.losses else '–'}"
                     for name, arm in arms.arms.items())
    return (f"TrackArms({_count(len(arms.junctions), 'junction')}, "
            f"{_count(arms.baseline.settings.steps, 'step')}, loss {last})")


def flag_counts(statuses: Iterable[str]) -> str:
    """`none`, or each status with its count in order of first appearance: `2 dead, 1 cut`."""
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items()) or "none"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
