"""`gradflow.watch`: gradient flow measured on the steps of the user's own training loop."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from gradflow._version import __version__
from gradflow.errors import OptionError
from gradflow.gate.settings import CheckSettings
from gradflow.watching.record import WatchRecord
from gradflow.watching.rules import OnFlag
from gradflow.watching.session import Watch
from gradflow.watching.sinks import CallableSink, JsonlSink, LogHeader, Sink, TensorBoardSink


def watch(
    model: torch.nn.Module,
    *,
    every: int = 100,
    accumulate: int = 1,
    log: str | os.PathLike[str] | None = None,
    tensorboard: Any = None,
    sink: Callable[[WatchRecord], Any] | None = None,
    on_flag: str | OnFlag = "warn",
    scaler: Any = None,
    at: Sequence[str] | None = None,
    settings: CheckSettings | None = None,
) -> Watch:
    """Measure every residual junction's gradient flow on every `every`-th step of your own
    training loop, on that step's own backward pass.

    Steps are counted by forward passes of `model` with grad enabled (evaluation under no_grad is
    not counted); `accumulate` of them make one step. A step that is not measured costs one hook
    call; a measured step records its forward pass and taps its backward pass, whose numbers come
    to the host once. Training is unchanged: the weights after N steps are bit-identical with and
    without the watch.

    Args:
        model: the model the loop calls (a torch.compile'd model is counted on the compiled
            module; measured steps run its eager module, once noted in `Watch.notes`).
        every: measure steps 0, every, 2*every, ...
        accumulate: forward/backward passes per optimizer step (gradient accumulation): a measured
            step's activation gradients are taken over all of them, its parameter gradients as
            accumulated.
        log: a path to write the `gradflow/watch@1` JSONL log to (flushed at each measured step).
        tensorboard: a SummaryWriter, or a directory for one: scalars gradflow/<junction>/<metric>.
        sink: called with each WatchRecord as its step completes.
        on_flag: what a rule that fires does: "warn" (a GradientFlowWarning, once per junction and
            rule), "raise" (GradientFlowError), or a function called with (record, rule name).
            The rules are `gradflow check`'s, live on each measured step; `dead` fires only when a
            block is dead on two measured steps in a row.
        scaler: the torch.amp.GradScaler the loop scales its loss with: numbers are unscaled.
        at: junction names (globs), indices or ranges to measure (default all), resolved on the
            first measured step.
        settings: the rules' thresholds and levels (default CheckSettings()).
    Returns:
        A Watch: a context manager whose exit removes every hook; `.records`, `.junctions`,
        `.step(loss)` (optional: puts the loss in the step's records), `.close()`.

    Example:
        >>> with gradflow.watch(model, every=100, log="flow.jsonl") as w:
        ...     for x, y in loader:
        ...         loss = F.cross_entropy(model(x), y)
        ...         loss.backward(); opt.step(); opt.zero_grad()
        ...         w.step(loss)
    """
    if not isinstance(model, torch.nn.Module):
        raise OptionError(f"watch needs an nn.Module, got {type(model).__name__}")
    for name, value in (("every", every), ("accumulate", accumulate)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OptionError(f"{name} must be a positive integer, got {value!r}")
    if sink is not None and not callable(sink):
        raise OptionError(f"sink must be a function of one WatchRecord, got {type(sink).__name__}")
    if scaler is not None and not callable(getattr(scaler, "get_scale", None)):
        raise OptionError(f"scaler must be a torch.amp.GradScaler, got {type(scaler).__name__}")
    sinks: list[Sink] = []
    if log is not None:
        header = LogHeader(__version__, torch.__version__, _model_name(model), every, accumulate)
        sinks.append(JsonlSink(log, header))
    if tensorboard is not None:
        sinks.append(TensorBoardSink(tensorboard))
    if sink is not None:
        sinks.append(CallableSink(sink))
    return Watch(model, every=every, accumulate=accumulate, sinks=sinks, on_flag=on_flag,
                 scaler=scaler, at=at, settings=settings)


def _model_name(model: torch.nn.Module) -> str:
    inner = getattr(model, "_orig_mod", None)
    return type(inner if isinstance(inner, torch.nn.Module) else model).__name__
