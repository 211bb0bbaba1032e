"""TrackArms shown: the arms' losses side by side, then each junction's skip and block paths in
every arm that has them; as Rich tables, HTML, JSON (`gradflow/track-arms@1`) or CSV."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from html import escape
from typing import IO

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gradflow.render.html import fragment
from gradflow.render.json import dumps
from gradflow.render.numbers import log_span, num, ratio
from gradflow.render.table import console, fit_to_console
from gradflow.render.track import BLOCK_STYLE, SKIP_STYLE, bucket, last_value, spark
from gradflow.render.track_html import BLOCK_COLOR, LOSS_COLOR, SKIP_COLOR, sparkline
from gradflow.track.arms import ARM_FORMS, TrackArms
from gradflow.track.result import RECORD_FIELDS, Track

SPARK = 12
GLOSSARY = ("Every arm trains a copy of the model from the same weights on the same batches. "
            "Loss sparklines share one linear scale; a junction's skip and block sparklines share "
            "one log scale across the arms.")


def _title(arms: TrackArms) -> str:
    s = arms.baseline.settings
    return (f"gradflow track · {arms.source} · {len(arms.arms)} arms from the same weights · "
            f"{s.optimizer} lr {s.lr:g} · {s.steps} steps, every {s.every} recorded")


def _losses(track: Track) -> list[float | None]:
    return [v for _, v in track.losses]


def _loss_span(arms: TrackArms) -> tuple[float, float]:
    finite = [v for arm in arms.arms.values() for v in bucket(_losses(arm), SPARK, False)
              if v is not None and math.isfinite(v)]
    return (min(finite), max(finite)) if finite else (0.0, 1.0)


def _lowest(track: Track) -> str:
    finite = [(s, v) for s, v in track.losses if v is not None and math.isfinite(v)]
    if not finite:
        return "–"
    step, value = min(finite, key=lambda sv: sv[1])
    return f"{num(value)} at step {step}"


def _flow_arms(arms: TrackArms) -> list[str]:
    return [name for name, arm in arms.arms.items() if arm.junctions]


def _flow_span(arms: TrackArms, junction: str) -> tuple[float, float]:
    values: list[float | None] = []
    for name in _flow_arms(arms):
        arm = arms.arms[name]
        if junction in arm.junctions:
            for metric in ("grad_skip", "grad_block"):
                values += bucket([v for _, v in arm.series(junction, metric)], SPARK, True)
    return log_span(values, min_decades=0.5)


def loss_table(arms: TrackArms) -> Table:
    table = Table(title=_title(arms), title_justify="left", header_style="bold", pad_edge=False)
    for column in ("arm", "trains"):
        table.add_column(column, no_wrap=True)
    table.add_column("loss", no_wrap=True)
    table.add_column("first → last", justify="right", no_wrap=True)
    table.add_column("lowest", no_wrap=True)
    span = _loss_span(arms)
    for name, arm in arms.arms.items():
        losses = _losses(arm)
        first_last = f"{num(losses[0])} → {num(losses[-1])}" if losses else "–"
        table.add_row(name, ARM_FORMS[name], Text(spark(losses, span, SPARK, log=False), style="cyan"),
                      first_last, _lowest(arm))
    return table


def flow_table(arms: TrackArms) -> Table:
    names = _flow_arms(arms)
    table = Table(caption="per arm: grad_skip (red) and grad_block (green), sparklines on a log scale "
                  "shared by the junction's arms · block/skip at the last record",
                  caption_justify="left", header_style="bold", pad_edge=False)
    table.add_column("#", justify="right", style="dim", no_wrap=True)
    table.add_column("junction", overflow="fold", min_width=8, max_width=28)
    for name in names:
        table.add_column(name, no_wrap=True)
    for k, junction in enumerate(arms.junctions):
        span = _flow_span(arms, junction)
        cells: list[Text | str] = []
        for name in names:
            arm = arms.arms[name]
            if junction not in arm.junctions:
                cells.append("–")
                continue
            skips = [v for _, v in arm.series(junction, "grad_skip")]
            blocks = [v for _, v in arm.series(junction, "grad_block")]
            cell = Text(spark(skips, span, SPARK), style=SKIP_STYLE)
            cell.append(" ")
            cell.append(spark(blocks, span, SPARK), style=BLOCK_STYLE)
            cell.append(f" {ratio(last_value(arm.series(junction, 'block_ratio'))):>7}")
            cells.append(cell)
        table.add_row(str(k), junction, *cells)
    return table


def render_arms(arms: TrackArms) -> Group:
    parts: list[RenderableType] = [loss_table(arms)]
    if arms.junctions:
        parts.append(flow_table(arms))
    else:
        parts.append(Text("No residual junction found (or none selected): the arms differ in "
                          "nothing.", style="yellow"))
    stopped = [name for name, arm in arms.arms.items() if arm.interrupted]
    if stopped:
        parts.append(Text(f"interrupted in the {stopped[0]} arm; arms after it were not trained",
                          style="yellow"))
    return Group(*parts)


def arms_rich(arms: TrackArms) -> RenderableType:
    """What `TrackArms.__rich__` shows: the tables `gradflow track --sg-skip` prints."""
    return fit_to_console(lambda width: render_arms(arms))


def print_arms(arms: TrackArms, file: IO[str] | None = None) -> None:
    console(file).print(arms_rich(arms))


def arms_fragment(arms: TrackArms) -> str:
    """What `TrackArms._repr_html_` shows: both tables, with SVG sparklines."""
    span = _loss_span(arms)
    rows = "".join(
        f"<tr><td class=name>{escape(name)}</td><td class=left>{escape(ARM_FORMS[name])}</td>"
        f"<td class=left>{sparkline(_losses(arm), span, LOSS_COLOR, 'loss', log=False)}</td>"
        f"<td>{_first_last(_losses(arm))}</td><td class=left>{escape(_lowest(arm))}</td></tr>"
        for name, arm in arms.arms.items()
    )
    losses = ("<table><tr><th class=name>arm</th><th class=left>trains</th><th class=left>loss</th>"
              f"<th>first → last</th><th class=left>lowest</th></tr>{rows}</table>")
    names = _flow_arms(arms)
    head = "".join(f"<th class=left>{escape(n)}</th>" for n in names)
    flow_rows = []
    for k, junction in enumerate(arms.junctions):
        span_j = _flow_span(arms, junction)
        cells = []
        for name in names:
            arm = arms.arms[name]
            if junction not in arm.junctions:
                cells.append("<td>–</td>")
                continue
            skips = [v for _, v in arm.series(junction, "grad_skip")]
            blocks = [v for _, v in arm.series(junction, "grad_block")]
            cells.append(
                f"<td class=left>{sparkline(skips, span_j, SKIP_COLOR, 'grad_skip')}"
                f"{sparkline(blocks, span_j, BLOCK_COLOR, 'grad_block')} "
                f"{ratio(last_value(arm.series(junction, 'block_ratio')))}</td>"
            )
        flow_rows.append(f"<tr><td>{k}</td><td class=name>{escape(junction)}</td>{''.join(cells)}</tr>")
    flows = (f"<table><tr><th>#</th><th class=name>junction</th>{head}</tr>{''.join(flow_rows)}</table>"
             if arms.junctions else "<p class=warning>No residual junction found (or none selected).</p>")
    body = f"<h1>{escape(_title(arms))}</h1>{losses}{flows}"
    first = arms.baseline
    return fragment(body, first.gradflow_version, first.torch_version, GLOSSARY)


def _first_last(values: Sequence[float | None]) -> str:
    return f"{num(values[0])} → {num(values[-1])}" if values else "–"


def arms_json(arms: TrackArms) -> str:
    """The `gradflow/track-arms@1` document."""
    return dumps(arms.to_dict())


def arms_csv(arms: TrackArms) -> str:
    """One row per (arm, step, junction) as `track`'s CSV, the arm first; a row per recorded loss
    with an empty junction for an arm that records no junction."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("arm", *RECORD_FIELDS))
    for name, arm in arms.arms.items():
        if not arm.junctions:
            for step, loss in arm.losses:
                writer.writerow([name, step, *([""] * (len(RECORD_FIELDS) - 2)),
                                 "" if loss is None else repr(loss)])
            continue
        for record in arm.records:
            row: list[object] = [name]
            for field in RECORD_FIELDS:
                value = getattr(record, field)
                row.append("" if value is None else repr(value) if isinstance(value, float) else value)
            writer.writerow(row)
    return buffer.getvalue()
