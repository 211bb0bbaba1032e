"""The depth picture: gradient norms against junction depth on a log scale, flagged junctions
marked. Described once here, as plain data, and drawn twice: as inline SVG at the top of the
HTML pages (`depth_svg`) and by matplotlib for `--plot` (`depth_plot`), so the two agree.

A Report gives three lines, grad_skip, grad_block and grad_in, and marks its flagged junctions
on the grad_in line. A Comparison gives one line per variant, of the compared metric, and marks
on each line the junctions flagged in that variant. Depth is the junction's index in forward
order (0 nearest the input), so a selection (`--at`, `--max-junctions`) keeps its places. A
junction nested inside another is named `↳ name` where the picture names junctions, as the
tables mark it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gradflow.drivers.compare import Comparison
from gradflow.engine.report import Report, Status
from gradflow.render.table import NESTED

REPORT_LINES = (("grad_skip", "#c0392b"), ("grad_block", "#1e8449"), ("grad_in", "#2c3e50"))
VARIANT_COLORS = ("#2c3e50", "#c0392b", "#1e8449", "#8e44ad", "#d68910", "#2874a6")
# Marks are open rings in a colour of their own, so they read apart from every line.
MARK_COLORS = {
    Status.VANISHING: "#e67e22",
    Status.EXPLODING: "#8e44ad",
    Status.DEAD: "#b7950b",
    Status.CUT: "#000000",
    Status.NONFINITE: "#000000",
}


@dataclass(frozen=True)
class Mark:
    """A flagged junction on a line: at `depth`, with its status; `value` is where the ring sits
    (None when the line has no positive finite value there: the ring sits on the bottom axis)."""

    depth: int
    junction: str
    status: str
    value: float | None


@dataclass(frozen=True)
class Line:
    """One metric (or one variant's metric) by depth; None where there is no value to draw.
    `beneath`: drawn wide and pale under the other lines, which it may coincide with (a
    report's grad_in equals grad_block where the skip carries nothing, and the reverse)."""

    label: str
    color: str
    values: tuple[float | None, ...]
    marks: tuple[Mark, ...] = ()
    log: bool = True
    beneath: bool = False

    def points(self, depths: Sequence[int]) -> list[list[tuple[int, float]]]:
        """The drawable (depth, value) runs: the line breaks at None and non-finite values, and
        on a log scale at values that are not positive (0 on a cut path)."""
        runs: list[list[tuple[int, float]]] = [[]]
        for depth, value in zip(depths, self.values):
            if value is not None and drawable(value, self.log):
                runs[-1].append((depth, value))
            elif runs[-1]:
                runs.append([])
        return [run for run in runs if run]

    @property
    def undrawn(self) -> int:
        """How many junctions have no drawable value (0 on a cut path, say)."""
        return sum(1 for v in self.values if not drawable(v, self.log))

    @property
    def legend(self) -> str:
        if not self.undrawn:
            return self.label
        what = "0 or undefined" if self.log else "undefined"
        where = "everywhere" if self.undrawn == len(self.values) else f"at {self.undrawn}"
        return f"{self.label} ({what} {where}: not drawn)"


@dataclass(frozen=True)
class DepthPicture:
    """Everything either drawing needs: the title, the junctions by depth, the lines. The y axis
    is logarithmic unless `log` is False (a cosine, which lies in [-1, 1]). `nested`: whether
    each junction is nested inside another (empty: none is)."""

    title: str
    y_label: str
    depths: tuple[int, ...]
    junctions: tuple[str, ...]
    lines: tuple[Line, ...]
    log: bool = True
    nested: tuple[bool, ...] = ()

    def label(self, k: int, name: str | None = None) -> str:
        """How the picture names its `k`-th junction (`name`: a shortened form of its name):
        marked `↳` when it is nested, as the tables mark it."""
        name = self.junctions[k] if name is None else name
        return NESTED + name if self.nested and self.nested[k] else name

    @property
    def marks(self) -> list[Mark]:
        return [mark for line in self.lines for mark in line.marks]

    def span(self) -> tuple[float, float]:
        """The y range: on a log scale (low, high) exponents of 10 around every drawable value,
        with a margin, at least one decade; else a little more than [-1, 1] for a cosine."""
        if not self.log:
            return (-1.05, 1.05)
        logs = [math.log10(v) for line in self.lines for v in line.values
                if v is not None and drawable(v)]
        if not logs:
            return (-1.0, 0.0)
        low, high = min(logs), max(logs)
        if high - low < 1:
            low, high = (low + high) / 2 - 0.5, (low + high) / 2 + 0.5
        margin = max(0.1, 0.04 * (high - low))
        return (low - margin, high + margin)


def drawable(value: float | None, log: bool = True) -> bool:
    return value is not None and math.isfinite(value) and (value > 0 or not log)


def report_depth(report: Report) -> DepthPicture:
    junctions = report.junctions
    depths = tuple(j.index for j in junctions)
    lines = []
    for metric, color in REPORT_LINES:
        values = tuple(j.metric(metric) for j in junctions)
        marks: tuple[Mark, ...] = ()
        if metric == "grad_in":
            marks = tuple(
                Mark(j.index, j.name, str(j.status), v if drawable(v) else None)
                for j, v in zip(junctions, values) if j.status is not Status.OK
            )
        lines.append(Line(metric, color, values, marks, beneath=metric == "grad_in"))
    return DepthPicture(
        title=f"gradflow · {report.model.source}",
        y_label="gradient norm",
        depths=depths,
        junctions=tuple(j.name for j in junctions),
        lines=tuple(lines),
        nested=tuple(j.nested_in is not None for j in junctions),
    )


def comparison_depth(c: Comparison) -> DepthPicture:
    index: dict[str, int] = {}
    nested: dict[str, bool] = {}
    for report in c.variants.values():  # as the tables mark it: the first variant that has it
        for j in report.junctions:
            index.setdefault(j.name, j.index)
            nested.setdefault(j.name, j.nested_in is not None)
    rows = sorted(c.rows, key=lambda row: index[row.name])  # stable: ties keep the rows' order
    depths = tuple(index[row.name] for row in rows)
    log = c.metric != "cosine"
    lines = []
    for k, (variant, report) in enumerate(c.variants.items()):
        values = tuple(row.values.get(variant) for row in rows)
        status = {j.name: j.status for j in report.junctions}
        marks = tuple(
            Mark(depth, row.name, str(status[row.name]), v if drawable(v, log) else None)
            for depth, row, v in zip(depths, rows, values)
            if row.name in status and status[row.name] is not Status.OK
        )
        lines.append(Line(variant, VARIANT_COLORS[k % len(VARIANT_COLORS)], values, marks, log))
    base = c.variants[c.baseline]
    return DepthPicture(
        title=f"gradflow compare · {c.metric} · {base.model.source}",
        y_label=c.metric,
        depths=depths,
        junctions=tuple(row.name for row in rows),
        lines=tuple(lines),
        log=log,
        nested=tuple(nested[row.name] for row in rows),
    )


def mark_color(status: str) -> str:
    return MARK_COLORS.get(Status(status), "#000000")
