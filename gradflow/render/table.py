"""Rich rendering of a Report: one row per junction, a log-scale bar, and a short summary."""

from __future__ import annotations

import os
import sys
from typing import IO

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from gradflow.render.numbers import bar, log_span, num, ratio
from gradflow.report import Report, Status

STATUS_STYLE = {
    Status.OK: "green",
    Status.DEAD: "yellow",
    Status.VANISHING: "red",
    Status.EXPLODING: "magenta",
    Status.NONFINITE: "bold red",
}


def console(file: IO[str] | None = None) -> Console:
    """A console that keeps tables readable when stdout is a pipe or a file (width 140)."""
    file = file or sys.stdout
    width = None if file.isatty() or os.environ.get("COLUMNS") else 140
    return Console(file=file, width=width, highlight=False, soft_wrap=False)


def probe_line(report: Report) -> str:
    inputs = ", ".join("×".join(map(str, i.shape)) + f" {i.dtype}" for i in report.probe.inputs)
    return (
        f"probe {inputs or 'no tensor inputs'} · loss {report.probe.loss} · {report.probe.mode} mode"
        f" · seed {report.probe.seed} · {report.probe.device}"
    )


def report_table(report: Report) -> Table:
    span = log_span([j.grad_in for j in report.junctions] + [j.grad_out for j in report.junctions])
    table = Table(
        title=f"gradflow · {report.model.source} · {report.model.parameters:,} parameters",
        caption=probe_line(report),
        title_justify="left",
        caption_justify="left",
        header_style="bold",
        pad_edge=False,
    )
    table.add_column("#", justify="right", style="dim")
    table.add_column("junction", overflow="fold", max_width=40)
    table.add_column("skip")
    for name in ("grad_out", "grad_skip", "grad_block", "grad_in"):
        table.add_column(name, justify="right")
    table.add_column("block/skip", justify="right")
    table.add_column("cos", justify="right")
    table.add_column("param_grad", justify="right")
    table.add_column("grad_in (log scale)", min_width=16, no_wrap=True)
    table.add_column("status")
    stopped_skip = set(report.stop_gradient.skip)
    stopped_block = set(report.stop_gradient.block)
    for j in report.junctions:
        style = STATUS_STYLE[j.status]
        marks = ("  sg-skip" if j.name in stopped_skip else "") + (
            "  sg-block" if j.name in stopped_block else ""
        )
        table.add_row(
            str(j.index),
            Text(j.name) + Text(marks, style="cyan"),
            "identity" if j.skip == "identity" else "proj",
            num(j.grad_out),
            num(j.grad_skip),
            num(j.grad_block),
            num(j.grad_in),
            ratio(j.block_ratio),
            "–" if j.cosine is None else f"{j.cosine:+.2f}",
            num(j.param_grad),
            Text(bar(j.grad_in, span), style=style),
            Text(str(j.status), style=style),
        )
    return table


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
        first, last = report.junctions[0], report.junctions[-1]
        survived = Text(
            f"{s.junctions} junctions · gradient reaching the first junction "
            f"({first.name}) is {ratio(s.survival)} what arrives at the last ({last.name})"
        )
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
    stopped = []
    if report.stop_gradient.skip:
        stopped.append(f"skip at {len(report.stop_gradient.skip)} junction(s)")
    if report.stop_gradient.block:
        stopped.append(f"block at {len(report.stop_gradient.block)} junction(s)")
    extra = f"loss {num(s.loss)} · |dL/d output| {num(s.grad_output)}"
    if stopped:
        extra += " · stop-gradient on " + " and ".join(stopped)
    lines.append(Text(extra, style="dim"))
    if s.params_without_grad:
        names = ", ".join(s.params_without_grad[:5]) + (" …" if len(s.params_without_grad) > 5 else "")
        lines.append(
            Text(f"{len(s.params_without_grad)} parameter(s) got no gradient: {names}", style="yellow")
        )
    if s.params_nonfinite:
        lines.append(
            Text(
                f"{len(s.params_nonfinite)} parameter(s) have non-finite gradients: "
                + ", ".join(s.params_nonfinite[:5]),
                style="bold red",
            )
        )
    return lines


def render_report(report: Report) -> Group:
    parts: list = []
    if report.junctions:
        parts.append(report_table(report))
    parts.extend(summary_lines(report))
    return Group(*parts)


def print_report(report: Report, file: IO[str] | None = None) -> None:
    console(file).print(render_report(report))
