"""Where each add ran: the module scope and source location of every addition in the forward pass.

Junction detection works on the autograd graph, which knows operations but not the modules or
source lines that created them. While the probe runs forward, whoever executes the model (the
eager-mode recorder, the torch.export interpreter, the ONNX executor) calls `record_add` with the
result of each addition, and junctions are later named from these records.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AddSite:
    """Where an addition ran: `module` is the dotted module path ("" for the root)."""

    module: str
    location: str | None = None


_recorder: ContextVar[dict[Any, AddSite] | None] = ContextVar("gradflow_add_sites", default=None)


def record_add(result: Any, module: str, location: str | None = None) -> None:
    """Record that `result` (a tensor) was produced by an addition in `module` at `location`.

    Does nothing when no recording is active or the result is not part of an autograd graph.
    The last record for a node wins: an executor that knows more (the ONNX node, the exported
    module path) records after the generic eager-mode recorder has seen the same add.
    """
    sites = _recorder.get()
    if sites is None:
        return
    node = getattr(result, "grad_fn", None)
    if node is not None:
        sites[node] = AddSite(module, location)


def recording_active() -> bool:
    return _recorder.get() is not None


@contextmanager
def recording() -> Iterator[dict[Any, AddSite]]:
    """Collect AddSites, keyed by the autograd node of each addition's result."""
    sites: dict[Any, AddSite] = {}
    token = _recorder.set(sites)
    try:
        yield sites
    finally:
        _recorder.reset(token)
