"""Where a watch's records go as each measured step completes: a `gradflow/watch@1` JSONL log,
TensorBoard scalars, or any callable. A sink gets one step's records at a time."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from gradflow.engine.report import METRICS
from gradflow.watching.record import WATCH_SCHEMA, WatchRecord


@dataclass(frozen=True)
class LogHeader:
    """The first line of a watch log: what was watched and how."""

    gradflow_version: str
    torch_version: str
    model: str
    every: int
    accumulate: int

    def to_dict(self, junctions: Sequence[str]) -> dict[str, Any]:
        return {
            "schema": WATCH_SCHEMA,
            "gradflow_version": self.gradflow_version,
            "torch_version": self.torch_version,
            "model": self.model,
            "every": self.every,
            "accumulate": self.accumulate,
            "junctions": list(junctions),
        }


class Sink(Protocol):
    def write(self, records: Sequence[WatchRecord], junctions: Sequence[str]) -> None: ...

    def close(self, junctions: Sequence[str]) -> None: ...


class JsonlSink:
    """A `gradflow/watch@1` log: the header (with the junctions of the first measured step), then
    one object per record, flushed after each measured step so a crashed run keeps its log."""

    def __init__(self, path: str | os.PathLike[str], header: LogHeader) -> None:
        self.path = Path(path)
        self.header = header
        self._file: IO[str] | None = None

    def _open(self, junctions: Sequence[str]) -> IO[str]:
        if self._file is None:
            if self.path.parent != Path(""):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")
            self._file.write(json.dumps(self.header.to_dict(junctions), allow_nan=False) + "\n")
        return self._file

    def write(self, records: Sequence[WatchRecord], junctions: Sequence[str]) -> None:
        out = self._open(junctions)
        for record in records:
            out.write(json.dumps(record.to_dict(), allow_nan=False) + "\n")
        out.flush()

    def close(self, junctions: Sequence[str]) -> None:
        self._open(junctions).close()  # a run with no measured step still leaves its header


class TensorBoardSink:
    """Scalars `gradflow/<junction>/<metric>` at each measured step, and `gradflow/loss` when the
    step's loss is known. A directory gets a SummaryWriter of its own, closed with the watch; a
    writer the user made is flushed, and left open."""

    def __init__(self, target: Any) -> None:
        if isinstance(target, (str, os.PathLike)):
            from torch.utils.tensorboard import SummaryWriter

            self.writer: Any = SummaryWriter(log_dir=os.fspath(target))
            self.owned = True
        else:
            self.writer = target
            self.owned = False

    def write(self, records: Sequence[WatchRecord], junctions: Sequence[str]) -> None:
        losses: dict[int, float] = {}
        for record in records:
            for name in METRICS:
                value = record.metric(name)
                if value is not None and math.isfinite(value):
                    self.writer.add_scalar(f"gradflow/{record.junction}/{name}", value, record.step)
            if record.loss is not None and math.isfinite(record.loss):
                losses[record.step] = record.loss
        for step, loss in losses.items():
            self.writer.add_scalar("gradflow/loss", loss, step)
        self.writer.flush()

    def close(self, junctions: Sequence[str]) -> None:
        if self.owned:
            self.writer.close()
        else:
            self.writer.flush()


class CallableSink:
    """`sink=`: called with each record as its step completes."""

    def __init__(self, function: Callable[[WatchRecord], Any]) -> None:
        self.function = function

    def write(self, records: Sequence[WatchRecord], junctions: Sequence[str]) -> None:
        for record in records:
            self.function(record)

    def close(self, junctions: Sequence[str]) -> None:
        pass
