"""Comparisons of reports junction by junction: stop-gradient variants, or two models."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from gradflow.engine.report import METRICS, Report


@dataclass(frozen=True)
class Row:
    """One junction across variants. A value is None where the variant lacks the junction (it is
    then in `absent`) or where the metric is undefined there (a ratio over a zero gradient)."""

    name: str
    values: dict[str, float | None]
    absent: frozenset[str] = frozenset()

    def has(self, variant: str) -> bool:
        """Whether `variant` has this junction, whatever its value."""
        return variant not in self.absent


@dataclass(frozen=True)
class Comparison:
    metric: str
    baseline: str
    variants: dict[str, Report]
    rows: tuple[Row, ...]

    def ratio(self, row: Row, variant: str) -> float | None:
        return ratio(row.values.get(variant), row.values.get(self.baseline))


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or not math.isfinite(value) or not math.isfinite(base):
        return None
    if base == 0:
        return None if value == 0 else math.inf
    return value / base


def compare(variants: Mapping[str, Report], metric: str = "grad_in") -> Comparison:
    """Line up reports by junction name; the first variant is the baseline."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: choose one of {', '.join(METRICS)}")
    names: list[str] = []
    for report in variants.values():
        for junction in report.junctions:
            if junction.name not in names:
                names.append(junction.name)
    lookup = {k: {j.name: j for j in r.junctions} for k, r in variants.items()}
    rows = tuple(
        Row(
            name,
            {k: (lookup[k][name].metric(metric) if name in lookup[k] else None) for k in variants},
            frozenset(k for k in variants if name not in lookup[k]),
        )
        for name in names
    )
    return Comparison(metric, next(iter(variants)), dict(variants), rows)


def describe(comparison: Comparison, variant: str) -> str:
    """One sentence on what changed in `variant` relative to the baseline."""
    base = comparison.variants[comparison.baseline]
    report = comparison.variants[variant]
    shared = [r for r in comparison.rows if r.has(variant) and r.has(comparison.baseline)]
    if not shared:
        return f"{variant}: no junction in common with {comparison.baseline}"
    parts = _change(comparison, variant, shared)
    newly = {f.name for f in report.summary.flagged} - {f.name for f in base.summary.flagged}
    if newly:
        parts.append(f"{len(newly)} newly flagged")
    return "; ".join(parts)


def _change(comparison: Comparison, variant: str, shared: list[Row]) -> list[str]:
    """The metric's ratio to the baseline over the junctions both have, where it is defined."""
    metric, baseline = comparison.metric, comparison.baseline
    defined = [r for r in shared if r.values.get(variant) is not None and r.values.get(baseline) is not None]
    if not defined:
        return [f"{variant}: {metric} is undefined (–) in {variant} or {baseline} at all "
                f"{len(shared)} junctions they share"]
    parts = [
        f"{variant}: {metric} at the first junction ({defined[0].name}) is "
        f"{_times(comparison.ratio(defined[0], variant))} the {baseline}"
    ]
    ratios = [comparison.ratio(r, variant) for r in defined]
    finite = [x for x in ratios if x is not None and math.isfinite(x)]
    if finite:
        parts.append(f"median {_times(statistics.median(finite))} over {len(finite)} junctions")
    collapsed = sum(1 for x in finite if x < 0.1)
    grew = sum(1 for x in finite if x > 10)
    if collapsed:
        parts.append(f"{collapsed} fell below 0.1×")
    if grew:
        parts.append(f"{grew} rose above 10×")
    return parts


def _times(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value == 0:
        return "0×"
    if not math.isfinite(value):
        return "∞×"
    if 0.01 <= value < 1000:
        return f"{value:.3g}×"
    return f"{value:.1e}×"


def two_source_names(a: str, b: str) -> tuple[str, str]:
    """Variant labels for `compare A B`: the file names, or A/B when they clash."""
    from pathlib import PurePath

    na, nb = PurePath(a).name or a, PurePath(b).name or b
    return (na, nb) if na != nb else ("A", "B")
