"""A `gradflow/watch@1` log read back (`gradflow show`): the header, every record, and the loss at
each measured step, as a history `track`'s renderers draw.

A watch flushes its log at each measured step, so a log may be read while the run still writes
it: a last line without its newline that does not parse is a record being written, left out and
noted (`partial`). Any other line that is not a record is an error naming the line. Nothing here
imports torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradflow.engine.report import METRICS
from gradflow.engine.verdicts import Status
from gradflow.errors import LogError
from gradflow.track.history import FlowHistory
from gradflow.watching.record import WATCH_SCHEMA, WatchRecord

if TYPE_CHECKING:
    from rich.console import RenderableType

SHOW_SCHEMA = "gradflow/show@1"
_HEADER = ("gradflow_version", "torch_version", "model", "every", "accumulate", "junctions")
_STATUSES = {str(s) for s in Status}


@dataclass(frozen=True)
class WatchLog(FlowHistory):
    """A watch log read back: what `gradflow show` renders. `to_dict()` is the `gradflow/show@1`
    JSON.

    Shows itself as `track`'s table does (sparklines of grad_skip and grad_block per junction,
    the step where the block path overtook the skip path, the loss); `repr` is one line.

    Attributes:
        path: the log file as given.
        model: the watched model's class name (from the header).
        every, accumulate: the watch's measurement period and forward passes per step.
        junctions: the junction names, in forward order of the first measured step.
        records: every record of the log, complete or not, in the log's order.
        losses: (step, loss) at every measured step (None where `Watch.step(loss)` was not called).
        partial: True when the last line was still being written and was left out.
        gradflow_version, torch_version: the versions that wrote the log.

    Example:
        >>> from gradflow.track import read_watch_log
        >>> log = read_watch_log("runs/flow.jsonl")
        >>> log.crossover(log.junctions[0]), log.series(log.junctions[0], "grad_block")[-1]
    """

    path: str
    model: str
    every: int
    accumulate: int
    junctions: tuple[str, ...]
    records: tuple[WatchRecord, ...]
    losses: tuple[tuple[int, float | None], ...]
    partial: bool = False
    gradflow_version: str = ""
    torch_version: str = ""

    def __repr__(self) -> str:
        from gradflow.render.short import watch_log_repr
        return watch_log_repr(self)

    def __rich__(self) -> RenderableType:
        from gradflow.render.show import show_rich
        return show_rich(self)

    def _repr_html_(self) -> str:
        from gradflow.render.show import show_fragment
        return show_fragment(self)

    def incomplete_steps(self) -> list[int]:
        """The measured steps whose backward pass did not fill the measurement."""
        return sorted({r.step for r in self.records if not r.complete})

    def to_dict(self) -> dict[str, Any]:
        """The `gradflow/show@1` document: the log's header, each junction's crossover, the loss
        at each measured step and every record as the log holds it."""
        from gradflow._version import __version__

        return {
            "schema": SHOW_SCHEMA,
            "gradflow_version": __version__,
            "log": {"path": self.path, "model": self.model, "every": self.every,
                    "accumulate": self.accumulate, "gradflow_version": self.gradflow_version,
                    "torch_version": self.torch_version},
            "partial_last_line": self.partial,
            "junctions": [
                {"name": name, "crossover": self.crossover(name),
                 "block_leads_from_start": self.leads_from_start(name)}
                for name in self.junctions
            ],
            "losses": [{"step": s, "loss": _finite(v)} for s, v in self.losses],
            "records": [r.to_dict() for r in self.records],
        }


def read_watch_log(path: str | Path) -> WatchLog:
    """Read a `gradflow/watch@1` log, finished or still being written.

    Args:
        path: the JSONL file a `gradflow.watch(log=...)` writes.
    Returns:
        A WatchLog; a last line cut off mid-write is left out and `partial` is True.
    Raises:
        LogError: (one line) the file is missing, empty, not a watch log, or has a line that is
            not a record (named by its number).

    Example:
        >>> log = read_watch_log("runs/flow.jsonl")
        >>> log.records[-1].block_ratio
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise LogError(f"watch log not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LogError(f"cannot read {path}: {e}") from e
    lines = text.split("\n")
    last = lines.pop()  # "" when the file ends with its newline; else a line still being written
    partial = False
    if last.strip():
        try:
            json.loads(last)
            lines.append(last)  # whole: only its newline is missing
        except ValueError:
            partial = True
    if not any(line.strip() for line in lines):
        raise LogError(f"{path.name} has no header yet: a watch writes it at its first measured step")
    header = _header(path.name, lines[0])
    records = [_record(path.name, number, line)
               for number, line in enumerate(lines[1:], start=2) if line.strip()]
    names = list(header["junctions"])
    for record in records:
        if record.junction not in names:
            names.append(record.junction)
    losses: dict[int, float | None] = {}
    for record in records:
        losses.setdefault(record.step, record.loss)
    return WatchLog(
        path=str(path), model=header["model"], every=header["every"],
        accumulate=header["accumulate"], junctions=tuple(names), records=tuple(records),
        losses=tuple(sorted(losses.items())), partial=partial,
        gradflow_version=header["gradflow_version"], torch_version=header["torch_version"],
    )


def _header(name: str, line: str) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except ValueError:
        raise LogError(f"{name} line 1 is not JSON: not a gradflow/watch@1 log") from None
    schema = header.get("schema") if isinstance(header, dict) else None
    if schema != WATCH_SCHEMA:
        found = f"a {schema} document" if isinstance(schema, str) else "no gradflow/watch@1 header"
        raise LogError(f"{name} is not a watch log: line 1 is {found} (gradflow show reads the "
                       f"{WATCH_SCHEMA} logs of gradflow.watch(log=...))")
    missing = [key for key in _HEADER if key not in header]
    if missing:
        raise LogError(f"{name} line 1: the header has no {', '.join(missing)}")
    if not all(isinstance(header[k], int) and header[k] >= 1 for k in ("every", "accumulate")):
        raise LogError(f"{name} line 1: every and accumulate must be positive integers")
    if not isinstance(header["junctions"], list) or not all(isinstance(j, str) for j in header["junctions"]):
        raise LogError(f"{name} line 1: junctions must be a list of names")
    return header


def _record(name: str, number: int, line: str) -> WatchRecord:
    try:
        row = json.loads(line)
    except ValueError:
        raise LogError(f"{name} line {number} is not JSON (a record cut short in the middle of the "
                       f"log?)") from None
    where = f"{name} line {number}"
    if not isinstance(row, dict):
        raise LogError(f"{where} is not a record")
    if row.get("schema") is not None:
        raise LogError(f"{where} is a second header: was the log written by two runs at once?")
    step, junction = row.get("step"), row.get("junction")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise LogError(f"{where}: step must be a non-negative integer, got {step!r}")
    if not isinstance(junction, str) or not junction:
        raise LogError(f"{where}: junction must be a name, got {junction!r}")
    values: dict[str, float | None] = {}
    for key in (*METRICS, "loss"):
        value = row.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise LogError(f"{where}: {key} must be a number or null, got {value!r}")
        values[key] = None if value is None else float(value)
    status = row.get("status")
    if status is not None and status not in _STATUSES:
        raise LogError(f"{where}: unknown status {status!r}")
    note = row.get("note")
    return WatchRecord(
        step=step, junction=junction, **{m: values[m] for m in METRICS},
        status=None if status is None else Status(status), loss=values["loss"],
        complete=row.get("complete", True) is not False, note=note if isinstance(note, str) else None,
    )


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value
