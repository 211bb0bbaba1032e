"""Rich rendering of a Report: one row per junction, a log-scale bar, and a short summary."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import IO

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from gradflow.engine.report import WARM_UP, Junction, Report, Status, on_stream
from gradflow.render.numbers import bar, log_span, num, ratio

BAR_WIDTH = 10

STATUS_STYLE = {
    Status.OK: "green",
    Status.DEAD: "yellow",
    Status.DORMANT: "cyan",
    Status.VANISHING: "red",
    Status.EXPLODING: "magenta",
    Status.NONFINITE: "bold red",
    Status.CUT: "bold red",
}


def console(file: IO[str] | None = None) -> Console:
    """A console that keeps tables readable when stdout is a pipe or a file (width 140)."""
    file = file or sys.stdout
    width = None if file.isatty() or os.environ.get("COLUMNS") else 140
    return Console(file=file, width=width, highlight=False, soft_wrap=False)


def probe_line(report: Report) -> str:
    inputs = ", ".join("×".join(map(str, i.shape)) + f" {i.dtype}" for i in report.probe.inputs)
    autocast = f" · autocast {report.probe.autocast}" if report.probe.autocast else ""
    if report.probe.shard:  # the inputs are one rank's slice
        inputs = f"{inputs} per rank × {report.probe.ranks} ranks ({report.probe.shard})"
    return (
        f"probe {inputs or 'no tensor inputs'}{autocast} · loss {report.probe.loss} · "
        f"{report.probe.mode} mode · seed {report.probe.seed} · {report.probe.device}"
    )


# Columns a narrow terminal loses first, in this order; the rest always stay: the junction, its
# verdict, and where a stop-gradient is (without `sg` a stopped row would read as a normal one).
OPTIONAL = ("cos", "param_grad", "grad_context", "flow", "grad_out", "skip", "ratio", "grad_skip")


def skip_label(kind: str) -> str:
    """The `skip` cell of every table: `id` for an identity skip, `proj` for a projection."""
    return "id" if kind == "identity" else "proj"


def report_table(report: Report, width: int | None = None) -> Table:
    """One row per junction. Columns are the JSON metric names; `ratio` is block_ratio
    (grad_block / grad_skip) and `flow` is grad_in on a log scale shared by all rows, so the eye
    sees where gradient dies. Given a console width, optional columns are dropped until it fits."""
    dropped: list[str] = []
    table = _table(report, dropped)
    if width is None:
        return table
    measure = Console(width=10_000)
    for column in OPTIONAL:
        if Measurement.get(measure, measure.options, table).maximum <= width:
            break
        dropped.append(column)
        table = _table(report, dropped)
    return table


def _table(report: Report, dropped: list[str]) -> Table:
    span = log_span([j.grad_in for j in report.junctions] + [j.grad_out for j in report.junctions])
    stopped_skip = set(report.stop_gradient.skip)
    stopped_block = set(report.stop_gradient.block)
    table = Table(
        title=f"gradflow · {report.model.source} · {report.model.parameters:,} parameters",
        caption=probe_line(report),
        title_justify="left",
        caption_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    shown = nested_names(report.junctions)
    widest = max((len(name) for name in shown), default=8)
    columns: list[tuple[str, dict]] = [
        ("#", {"justify": "right", "style": "dim"}),
        ("junction", {"overflow": "fold", "min_width": max(8, min(widest, 28)), "max_width": 40}),
        ("skip", {}),
    ]
    if stopped_skip or stopped_block:
        columns.append(("sg", {"style": "cyan"}))
    numeric = {"justify": "right"}
    columns += [(name, numeric) for name in ("grad_out", "grad_skip", "grad_block", "grad_in")]
    context = any(j.grad_context is not None for j in report.junctions)
    if context:  # only blocks that read more than their fork have one (cross-attention)
        columns.append(("grad_context", numeric))
    columns += [("ratio", numeric), ("cos", numeric), ("param_grad", numeric)]
    columns += [("flow", {"min_width": BAR_WIDTH}), ("status", {})]
    keep = [name not in dropped for name, _ in columns]
    for (name, options), kept in zip(columns, keep):
        if kept:
            table.add_column(name, no_wrap=name != "junction", **options)
    for j, name in zip(report.junctions, shown):
        style = STATUS_STYLE[j.status]
        cells: list = [str(j.index), name, skip_label(j.skip)]
        if stopped_skip or stopped_block:
            cells.append(_stopped(j.name, stopped_skip, stopped_block))
        cells += [
            num(j.grad_out),
            num(j.grad_skip),
            num(j.grad_block),
            num(j.grad_in),
            *([num(j.grad_context)] if context else []),
            ratio(j.block_ratio),
            "–" if j.cosine is None else f"{j.cosine:+.2f}",
            num(j.param_grad),
            Text(bar(j.grad_in, span, BAR_WIDTH), style=style),
            Text(str(j.status), style=style),
        ]
        table.add_row(*(cell for cell, kept in zip(cells, keep) if kept))
    return table


NESTED = "↳ "  # marks a junction nested inside another, indented by its depth


def nesting_depths(junctions: Sequence[tuple[str, str | None]]) -> list[int]:
    """How many junctions hold each of `junctions` (name, nested_in), in forward order: 0 on the
    stream. Every output marks a nested junction by this depth, as the table does."""
    depth: dict[str, int] = {}
    for name, nested_in in reversed(junctions):  # an enclosing junction comes after those it holds
        depth[name] = 0 if nested_in is None else depth.get(nested_in, 0) + 1
    return [depth[name] for name, _ in junctions]


def nested_name(name: str, depth: int) -> str:
    """A junction's name as a table shows it `depth` junctions deep: marked, indented once per
    enclosing junction beyond the first."""
    return name if not depth else "  " * (depth - 1) + NESTED + name


def nested_names(junctions: Sequence[Junction]) -> list[str]:
    """The `junction` cells: a junction nested inside another (Junction.nested_in) is marked
    and indented one step per enclosing junction, so the stream's junctions stand out."""
    depths = nesting_depths([(j.name, j.nested_in) for j in junctions])
    return [nested_name(j.name, depth) for j, depth in zip(junctions, depths)]


def nested_sentence(depths: Sequence[int]) -> str:
    """What the summary of every output says of the nested junctions, given nesting_depths;
    empty when none is, or when every junction is (as on_stream, the survival is then theirs)."""
    nested = sum(1 for depth in depths if depth)
    if not nested or nested == len(depths):
        return ""
    return f"{nested} nested inside another junction ({NESTED.strip()}), left out of the survival"


def _stopped(name: str, skip: set[str], block: set[str]) -> str:
    """The `sg` cell: which path of the junction the stop-gradient cuts (short, so it fits)."""
    if name in skip and name in block:
        return "both"
    return "skip" if name in skip else "block" if name in block else ""


def summary_lines(report: Report) -> list[Text]:
    s = report.summary
    lines = []
    if not report.junctions:
        lines.append(
            Text(
                "No residual junction found: no add joins a skip path and a block path "
                "from a common tensor. Nothing to measure.",
                style="yellow",
            )
        )
    else:
        stream = on_stream(report.junctions)
        first, last = stream[0], stream[-1]
        if s.junctions == 1:
            survived = Text(f"1 junction · the fork ({first.name}) receives {ratio(s.survival)} "
                            "the gradient that arrives at the add")
        else:
            survived = Text(
                f"{_plural(s.junctions, 'junction')} · gradient reaching the first junction "
                f"({first.name}) is {ratio(s.survival)} what arrives at the last ({last.name})"
            )
        nested = nested_sentence(nesting_depths([(j.name, j.nested_in) for j in report.junctions]))
        if nested:
            survived.append(f" · {nested}")
        lines.append(survived)
        if s.flagged:
            counts: dict[str, list[str]] = {}
            for flag in s.flagged:
                counts.setdefault(str(flag.status), []).append(flag.name)
            text = Text("flagged: ", style="bold")
            for i, (status, names) in enumerate(counts.items()):
                shown = ", ".join(names[:6]) + (f", … ({len(names)})" if len(names) > 6 else "")
                text.append(("; " if i else "") + f"{status} {shown}", style=STATUS_STYLE[Status(status)])
            lines.append(text)
        else:
            lines.append(Text("flagged: none", style="green"))
        dormant = [j for j in report.junctions if j.status is Status.DORMANT]
        if dormant:
            lines.append(dormant_line(dormant))
    stopped = []
    if report.stop_gradient.skip:
        stopped.append(f"skip at {_plural(len(report.stop_gradient.skip), 'junction')}")
    if report.stop_gradient.block:
        stopped.append(f"block at {_plural(len(report.stop_gradient.block), 'junction')}")
    extra = f"loss {num(s.loss)} · |dL/d output| {num(s.grad_output)}"
    if stopped:
        extra += " · stop-gradient on " + " and ".join(stopped)
    lines.append(Text(extra, style="dim"))
    for params, what, style in (
        (s.params_unused, "never used by the forward pass", "yellow"),
        (s.params_without_grad, "used, but no gradient arrives", "yellow"),
        (s.params_zero_grad, "with an exactly-zero gradient", "dim"),
    ):
        if params:
            shown = ", ".join(params[:5]) + (" …" if len(params) > 5 else "")
            lines.append(Text(f"{len(params)} parameter(s) {what}: {shown}", style=style))
    if s.params_nonfinite:
        lines.append(
            Text(
                f"{len(s.params_nonfinite)} parameter(s) have non-finite gradients: "
                + ", ".join(s.params_nonfinite[:5]),
                style="bold red",
            )
        )
    lines.extend(Text(f"note: {note}", style="dim") for note in s.notes)
    return lines


def dormant_line(dormant: list[Junction]) -> Text:
    """The dormant junctions and why: `#0 (gate blocks.0.bn2.weight)`, `#2 (warm-up)`."""
    shown = ", ".join(f"{j.name} ({dormant_words(j.dormant_reason)})" for j in dormant[:6])
    shown += f", … ({len(dormant)})" if len(dormant) > 6 else ""
    return Text(f"dormant at initialisation, alive once training starts: {shown}",
                style=STATUS_STYLE[Status.DORMANT])


def dormant_words(reason: str | None) -> str:
    """A dormant_reason for people: `gate blocks.0.alpha`, `alive after the warm-up`."""
    return "alive after the warm-up" if reason == WARM_UP else f"gate {reason}"


class fit_to_console:  # noqa: N801  # read as a function: it wraps a renderable's builder
    """A renderable built for the width of the console it is printed on, as the CLI builds its
    tables for the terminal's width: `console.print(fit_to_console(lambda w: table(x, w)))`."""

    def __init__(self, build: Callable[[int], RenderableType]) -> None:
        self.build = build

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.build(options.max_width)


def report_rich(report: Report) -> RenderableType:
    """What `Report.__rich__` shows: the table and summary `gradflow inspect` prints, for the
    console's width."""
    return fit_to_console(lambda width: render_report(report, width))


def render_report(report: Report, width: int | None = None) -> Group:
    parts: list = []
    if report.junctions:
        parts.append(report_table(report, width))
    parts.extend(summary_lines(report))
    return Group(*parts)


def print_report(report: Report, file: IO[str] | None = None) -> None:
    console(file).print(report_rich(report))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
