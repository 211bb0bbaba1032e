"""A watch log shown (`gradflow show`): `track`'s table, loss line, HTML and figure, drawn from
the log's records; and the log as `gradflow/show@1` JSON or CSV."""

from __future__ import annotations

import csv
import io
from html import escape
from pathlib import Path
from typing import IO

from rich.console import Group, RenderableType
from rich.text import Text

from gradflow.render.html import fragment, page
from gradflow.render.json import dumps
from gradflow.render.table import console, fit_to_console
from gradflow.render.track import SPARK_CAPTION, flow_table, loss_line
from gradflow.render.track_html import GLOSSARY, flow_table_html, loss_html
from gradflow.track.watch_log import WatchLog
from gradflow.watching.record import LOGGED

CSV_FIELDS = (*LOGGED, "complete", "note")


def _title(log: WatchLog) -> str:
    steps = log.steps()
    upto = f", steps {steps[0]}–{steps[-1]}" if steps else ""
    accumulate = f" ({log.accumulate} forward passes each)" if log.accumulate > 1 else ""
    return (f"gradflow show · {Path(log.path).name} · {log.model} · {_every(log)}{accumulate} · "
            f"{len(steps)} measured{upto}")


def _every(log: WatchLog) -> str:
    return "every step" if log.every == 1 else f"every {log.every} steps"


def plot_title(log: WatchLog) -> str:
    """The figure's title: the log, the model, the steps."""
    steps = log.steps()
    return (f"{Path(log.path).name} · {log.model} · {_every(log)} · "
            f"{len(steps)} measured" + (f" up to step {steps[-1]}" if steps else ""))


def _notes(log: WatchLog) -> list[str]:
    notes = []
    incomplete = log.incomplete_steps()
    if incomplete:
        shown = ", ".join(map(str, incomplete[:8])) + (", …" if len(incomplete) > 8 else "")
        notes.append(f"incomplete step(s) {shown}: no numbers (see each record's note)")
    if log.partial:
        notes.append("the last line is still being written: left out")
    return notes


def render_show(log: WatchLog, width: int | None = None) -> Group:
    parts: list[RenderableType] = []
    if log.junctions:
        parts.append(flow_table(log, _title(log), SPARK_CAPTION, width))
    else:
        parts.append(Text(f"{_title(log)}: no junction measured", style="yellow"))
    parts.append(loss_line(log))
    parts += [Text(note, style="yellow") for note in _notes(log)]
    return Group(*parts)


def show_rich(log: WatchLog) -> RenderableType:
    """What `WatchLog.__rich__` shows: the table `gradflow show` prints, for the console's width."""
    return fit_to_console(lambda width: render_show(log, width))


def print_show(log: WatchLog, file: IO[str] | None = None) -> None:
    console(file).print(show_rich(log))


def show_fragment(log: WatchLog) -> str:
    """What `WatchLog._repr_html_` shows, and what `gradflow show --html` writes a page around."""
    notes = "".join(f"<p class=warning>{escape(note)}</p>" for note in _notes(log))
    body = (f"<h1>{escape(_title(log))}</h1>{flow_table_html(log)}{loss_html(log)}{notes}")
    return fragment(body, log.gradflow_version, log.torch_version, GLOSSARY)


def show_html(log: WatchLog) -> str:
    return page(f"gradflow show · {Path(log.path).name}", show_fragment(log))


def show_json(log: WatchLog) -> str:
    """The `gradflow/show@1` document."""
    return dumps(log.to_dict())


def show_csv(log: WatchLog) -> str:
    """One row per record, as the log holds it: step, junction, every metric, status, loss,
    complete, note."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for record in log.records:
        row: list[object] = []
        for name in CSV_FIELDS:
            value = getattr(record, name)
            if isinstance(value, bool):
                row.append(str(value).lower())
            else:
                row.append("" if value is None else repr(value) if isinstance(value, float) else str(value))
        writer.writerow(row)
    return buffer.getvalue()
