"""`gradflow.compare`: reports lined up junction by junction, for stop-gradient variants of one
model or for two models. Importing this module does not import torch; the verb does."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gradflow.choices import Loss, Mode
from gradflow.engine.report import METRICS, Report, Thresholds
from gradflow.errors import OptionError

if TYPE_CHECKING:
    import torch
    from rich.console import RenderableType

    from gradflow.engine.measure import LossChoice


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
    """Reports lined up junction by junction: what `gradflow.compare` returns.

    In a notebook a Comparison shows the table `gradflow compare` prints (through Rich) or its
    `--html` page; `repr` is one line.

    Attributes:
        metric: the junction metric the rows hold (`grad_in` unless asked otherwise).
        baseline: the variant the others are divided by (the first one).
        variants: each variant's name and Report, baseline first.
        rows: one Row per junction name, in the order the variants first show it.

    Example:
        >>> comparison = gradflow.compare(model, x, sg_skip=True)
        >>> comparison
        Comparison(grad_in, 6 junctions, baseline vs sg-skip: median 0.433×)
        >>> {row.name: comparison.ratio(row, "sg-skip") for row in comparison.rows}
    """

    metric: str
    baseline: str
    variants: dict[str, Report]
    rows: tuple[Row, ...]

    def __repr__(self) -> str:
        from gradflow.render.short import comparison_repr
        return comparison_repr(self)

    def __rich__(self) -> RenderableType:
        from gradflow.render.compare import comparison_rich
        return comparison_rich(self)

    def _repr_html_(self) -> str:
        from gradflow.render.html import comparison_fragment
        return comparison_fragment(self)

    def ratio(self, row: Row, variant: str) -> float | None:
        """`variant`'s value at `row` over the baseline's: None where either is undefined or
        absent, inf where only the baseline's is 0."""
        return ratio(row.values.get(variant), row.values.get(self.baseline))


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or not math.isfinite(value) or not math.isfinite(base):
        return None
    if base == 0:
        return None if value == 0 else math.inf
    return value / base


def compare(
    model: torch.nn.Module,
    inputs: Any,
    *,
    sg_skip: bool = False,
    sg_block: bool = False,
    at: Sequence[str] | None = None,
    metric: str = "grad_in",
    loss: LossChoice = Loss.AUTO,
    mode: Mode | str = Mode.TRAIN,
    seed: int = 0,
    dtype: str | None = None,
    max_junctions: int | None = None,
    thresholds: Thresholds | None = None,
    source: str = "<module>",
    source_format: str = "module",
    timings: dict[str, float] | None = None,
) -> Comparison:
    """The baseline beside the model with a stop-gradient on skip and/or block paths.

    One forward pass, and one backward pass per variant over the same graph.

    Args:
        model: any nn.Module; it comes back untouched.
        inputs: a tensor, a tuple of positional arguments, or a dict of keyword arguments.
        sg_skip / sg_block: add the variant `sg(x) + f(x)` / `x + sg(f(x))` (at least one).
        at: the junctions the stop-gradient applies to: names (globs), indices or ranges
            (default all); every junction is still reported.
        metric: the junction metric the rows show (`gradflow.engine.report.METRICS`).
        loss, mode, seed, dtype, max_junctions, thresholds: as for `gradflow.inspect`.
    Returns:
        A Comparison: `variants` maps "baseline", "sg-skip", "sg-block" to their Reports, and
        `rows` has one Row per junction.

    Example:
        >>> comparison = gradflow.compare(model, torch.randn(8, 3, 32, 32), sg_skip=True)
        >>> [comparison.ratio(row, "sg-skip") for row in comparison.rows]
    """
    from gradflow.engine.measure import BASELINE, VariantSpec, measure

    _check_metric(metric)
    if not (sg_skip or sg_block):
        raise OptionError("nothing to compare: set sg_skip and/or sg_block (--sg-skip, --sg-block)")
    specs = [BASELINE]
    if sg_skip:
        specs.append(VariantSpec("sg-skip", sg_skip=True))
    if sg_block:
        specs.append(VariantSpec("sg-block", sg_block=True))
    reports = measure(
        model,
        inputs,
        specs,
        loss=loss,
        mode=mode,
        seed=seed,
        at=at,
        max_junctions=max_junctions,
        dtype=dtype,
        thresholds=thresholds,
        source=source,
        source_format=source_format,
        timings=timings,
    )
    return line_up({spec.name: report for spec, report in zip(specs, reports)}, metric)


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise OptionError(f"unknown metric {metric!r}: choose one of {', '.join(METRICS)}")


def line_up(variants: Mapping[str, Report], metric: str = "grad_in") -> Comparison:
    """Line up reports by junction name; the first variant is the baseline."""
    _check_metric(metric)
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
    # the first junction on the stream: a nested one's numbers say little about the whole model
    nested = {j.name for j in comparison.variants[baseline].junctions if j.nested_in is not None}
    first = next((r for r in defined if r.name not in nested), defined[0])
    parts = [
        f"{variant}: {metric} at the first junction ({first.name}) is "
        f"{_times(comparison.ratio(first, variant))} the {baseline}"
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
