"""A Watch shown: the latest measured step's numbers per junction, as a Rich table or HTML."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gradflow.render.numbers import num, ratio
from gradflow.watching.record import WatchRecord

if TYPE_CHECKING:
    from gradflow.watching.session import Watch

COLUMNS = ("junction", "grad_out", "grad_skip", "grad_block", "block_ratio", "cosine", "param_grad",
           "status")


def latest(watch: Watch) -> list[WatchRecord]:
    """The records of the latest measured step."""
    if not watch.records:
        return []
    step = watch.records[-1].step
    return [r for r in watch.records if r.step == step]


def _cells(record: WatchRecord) -> list[str]:
    return [
        record.junction, num(record.grad_out), num(record.grad_skip), num(record.grad_block),
        ratio(record.block_ratio), "–" if record.cosine is None else f"{record.cosine:+.2f}",
        num(record.param_grad),
        "incomplete" if record.status is None else str(record.status),
    ]


def records_table(records: Sequence[WatchRecord], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("junction", "status") else "right")
    for record in records:
        table.add_row(*_cells(record))
    return table


def _title(watch: Watch, records: Sequence[WatchRecord]) -> str:
    if not records:
        return f"gradflow watch: every {watch.every} steps, nothing measured yet"
    loss = "" if records[0].loss is None else f", loss {num(records[0].loss)}"
    return f"gradflow watch: step {records[0].step}{loss} (every {watch.every} steps)"


def watch_rich(watch: Watch) -> RenderableType:
    """What `Watch.__rich__` shows: the latest measured step, one row per junction."""
    records = latest(watch)
    parts: list[RenderableType] = [records_table(records, _title(watch, records))]
    if records and records[0].note:
        parts.append(Text(f"incomplete: {records[0].note}"))
    parts += [Text(f"note: {note}") for note in watch.notes]
    return Group(*parts)


def record_rich(record: WatchRecord) -> RenderableType:
    """What `WatchRecord.__rich__` shows: its one row."""
    return records_table([record], f"step {record.step}")


def _html_table(records: Sequence[WatchRecord]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in _cells(r)) + "</tr>" for r in records
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def watch_html(watch: Watch) -> str:
    """What `Watch._repr_html_` shows: the latest measured step as an HTML table."""
    records = latest(watch)
    notes = "".join(f"<p>note: {html.escape(note)}</p>" for note in watch.notes)
    return (f'<div class="gradflow-watch"><p>{html.escape(_title(watch, records))}</p>'
            f"{_html_table(records)}{notes}</div>")


def record_html(record: WatchRecord) -> str:
    """What `WatchRecord._repr_html_` shows: its one row."""
    return f'<div class="gradflow-watch"><p>step {record.step}</p>{_html_table([record])}</div>'

