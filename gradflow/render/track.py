"""Rendering of a Track: a Rich table with sparklines, and the records as JSON or CSV."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import IO

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gradflow.render.json import dumps
from gradflow.render.numbers import log_span, num, ratio
from gradflow.render.table import console, fit_to_console
from gradflow.track.history import FlowHistory
from gradflow.track.result import RECORD_FIELDS, Track

SPARK_WIDTH = 20
_TICKS = "▁▂▃▄▅▆▇█"
SKIP_STYLE = "red"
BLOCK_STYLE = "green"


def spark(values: Sequence[float | None], span: tuple[float, float] | None = None,
          width: int = SPARK_WIDTH, log: bool = True) -> str:
    """A sparkline of at most `width` characters; longer series are averaged in buckets
    (geometrically on a log scale). Pass the same `span` to make two lines comparable."""
    points = bucket(values, width, log)
    if span is None:
        span = _span(points, log)
    low, high = span
    out = []
    for v in points:
        if v is None or not math.isfinite(v) or (log and v <= 0):
            out.append(" ")
            continue
        x = math.log10(v) if log else v
        fraction = (x - low) / (high - low) if high > low else 0.5
        out.append(_TICKS[max(0, min(7, int(fraction * 7.999)))])
    return "".join(out)


def _span(values: Sequence[float | None], log: bool) -> tuple[float, float]:
    if log:
        return log_span(values, min_decades=0.5)
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return (min(finite), max(finite)) if finite else (0.0, 1.0)


def bucket(values: Sequence[float | None], width: int, log: bool) -> list[float | None]:
    if len(values) <= width:
        return list(values)
    out: list[float | None] = []
    for k in range(width):
        chunk = values[k * len(values) // width: (k + 1) * len(values) // width]
        good = [v for v in chunk if v is not None and math.isfinite(v) and (v > 0 or not log)]
        if not good:
            out.append(None)
        elif log:
            out.append(10 ** (sum(math.log10(v) for v in good) / len(good)))
        else:
            out.append(sum(good) / len(good))
    return out


def overtook_text(track: FlowHistory, name: str) -> str:
    """When the block path first overtook the skip path: `step N`, `from the start` or `never`."""
    step = track.crossover(name)
    if step is not None:
        return f"step {step}"
    return "from the start" if track.leads_from_start(name) else "never"


def overtook(track: FlowHistory, name: str) -> Text:
    text = overtook_text(track, name)
    return Text(text, style="bold" if track.crossover(name) is not None else "dim")


def track_table(track: Track, width: int | None = None) -> Table:
    """The table; below 120 columns the sparklines shorten and the first → last columns go."""
    s = track.settings
    title = (f"gradflow track · {track.source} · {track.parameters:,} parameters · "
             f"{s.optimizer} lr {s.lr:g} · {track.steps_run} steps, every {s.every} recorded")
    data = (f"data {s.data}: {s.samples} samples, batch {s.batch_size}" if s.data
            else f"probe batch{f' of {s.batch_size}' if s.batch_size else ''}")
    return flow_table(track, title, f"{data} · loss {s.loss} · seed {s.seed} · {SPARK_CAPTION}",
                      width)


SPARK_CAPTION = "sparklines on a log scale, shared by skip and block · block/skip at the last record"


def flow_table(history: FlowHistory, title: str, caption: str, width: int | None = None) -> Table:
    """One row per junction of any history: sparklines of grad_skip and grad_block, first → last,
    block/skip at the last record, the step the block path overtook. Below 120 columns the
    sparklines shorten and the first → last columns go."""
    narrow = width is not None and width < 120
    spark_width = 12 if narrow else SPARK_WIDTH
    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left",
                  header_style="bold", pad_edge=False)
    table.add_column("#", justify="right", style="dim", no_wrap=True)
    table.add_column("junction", overflow="fold", min_width=8, max_width=28)
    table.add_column(Text("grad_skip", style=SKIP_STYLE), no_wrap=True)
    if not narrow:
        table.add_column("first → last", justify="right", no_wrap=True)
    table.add_column(Text("grad_block", style=BLOCK_STYLE), no_wrap=True)
    if not narrow:
        table.add_column("first → last", justify="right", no_wrap=True)
    table.add_column("block/skip", justify="right", no_wrap=True)
    table.add_column("block overtook", no_wrap=True)
    for k, name in enumerate(history.junctions):
        skips = [v for _, v in history.series(name, "grad_skip")]
        blocks = [v for _, v in history.series(name, "grad_block")]
        shared = log_span(bucket(skips, spark_width, True) + bucket(blocks, spark_width, True),
                          min_decades=0.5)
        last_ratio = last_value(history.series(name, "block_ratio"))
        skip_cells: list = [Text(spark(skips, shared, spark_width), style=SKIP_STYLE)]
        block_cells: list = [Text(spark(blocks, shared, spark_width), style=BLOCK_STYLE)]
        if not narrow:
            skip_cells.append(first_last(skips))
            block_cells.append(first_last(blocks))
        table.add_row(str(k), name, *skip_cells, *block_cells, ratio(last_ratio),
                      overtook(history, name))
    return table


def last_value(series: Sequence[tuple[int, float | None]]) -> float | None:
    """The latest value a series holds (an incomplete step holds none)."""
    return next((v for _, v in reversed(series) if v is not None), None)


def first_last(values: Sequence[float | None]) -> str:
    if not values:
        return "–"
    return f"{num(values[0])}→{num(values[-1])}"


def loss_line(track: FlowHistory) -> Text:
    losses = [v for _, v in track.losses]
    if not losses:
        return Text("no step was recorded", style="yellow")
    finite = [(step, v) for step, v in track.losses if v is not None and math.isfinite(v)]
    text = Text("loss ", style="bold")
    text.append(f"{num(losses[0])} ")
    text.append(spark(losses, width=SPARK_WIDTH, log=False), style="cyan")
    text.append(f" {num(losses[-1])}")
    if finite:
        best_step, best = min(finite, key=lambda sv: sv[1])
        text.append(f"   (lowest {num(best)} at step {best_step}; "
                    f"steps {track.losses[0][0]}–{track.losses[-1][0]})", style="dim")
    if len(finite) < len(losses):
        text.append(f"   {len(losses) - len(finite)} recorded loss(es) not finite", style="bold red")
    return text


def render_track(track: Track, width: int | None = None) -> Group:
    parts: list = []
    if track.junctions:
        parts.append(track_table(track, width))
    else:
        parts.append(Text("No residual junction found (or none selected): only the loss was "
                          "recorded.", style="yellow"))
    parts.append(loss_line(track))
    if track.interrupted:
        parts.append(Text(f"interrupted after {track.steps_run} of {track.settings.steps} steps; "
                          f"the {len(track.losses)} recorded step(s) are kept", style="yellow"))
    return Group(*parts)


def track_rich(track: Track) -> RenderableType:
    """What `Track.__rich__` shows: the table `gradflow track` prints, for the console's width."""
    return fit_to_console(lambda width: render_track(track, width))


def print_track(track: Track, file: IO[str] | None = None) -> None:
    console(file).print(track_rich(track))


def track_json(track: Track) -> str:
    """The `gradflow/track@1` document: settings, junctions with their crossover, every record."""
    return dumps(track.to_dict())


def track_csv(track: Track) -> str:
    """One row per (step, junction): step, junction, index, every metric, loss."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RECORD_FIELDS)
    for record in track.records:
        row = []
        for name in RECORD_FIELDS:
            value = getattr(record, name)
            row.append("" if value is None else repr(value) if isinstance(value, float) else value)
        writer.writerow(row)
    return buffer.getvalue()
