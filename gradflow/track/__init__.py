"""`gradflow track`: gradient flow at every residual junction over training steps.

    >>> from gradflow.track import track
    >>> result = track(model, torch.randn(8, 3, 32, 32), steps=100, every=5)
    >>> result.series(result.junctions[0], "grad_block")
    >>> read_watch_log("runs/flow.jsonl")   # a gradflow.watch log, as `gradflow show` reads it

The result types import no torch; `track`, `load_data` and `TrainingData` do, when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradflow.track.arms import TRACK_ARMS_SCHEMA, TrackArms
from gradflow.track.result import TRACK_SCHEMA, Optimizer, Track, TrackRecord, TrackSettings
from gradflow.track.watch_log import SHOW_SCHEMA, WatchLog, read_watch_log

if TYPE_CHECKING:
    from gradflow.track.data import TrainingData as TrainingData
    from gradflow.track.data import load_data as load_data
    from gradflow.track.train import StepUpdate as StepUpdate
    from gradflow.track.train import track as track
    from gradflow.track.train import track_arms as track_arms

__all__ = [
    "SHOW_SCHEMA", "TRACK_ARMS_SCHEMA", "TRACK_SCHEMA", "Optimizer", "StepUpdate", "Track",
    "TrackArms", "TrackRecord", "TrackSettings", "TrainingData", "WatchLog", "load_data",
    "read_watch_log", "track", "track_arms",
]

_LAZY = {
    "track": "gradflow.track.train",
    "track_arms": "gradflow.track.train",
    "StepUpdate": "gradflow.track.train",
    "load_data": "gradflow.track.data",
    "TrainingData": "gradflow.track.data",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gradflow.track' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
