"""The Watch: gradient flow measured on the user's own training steps.

One forward pre-hook on the model counts steps: forward passes with grad enabled, `accumulate` of
them to a step. That hook is all a step that is not measured pays for. On a measured step (0,
every, 2*every, ...) the hook opens the engine's ForwardRecorder for that forward pass and a
one-shot forward hook closes it; the junctions are found on the graph the pass built (replayed
from the first measured step's search when the graph has the same shape, `gradflow.engine.replay`)
and tapped, and the user's own backward pass fills the taps. When that pass is over (an autograd
final callback, queued behind those a data-parallel wrapper queued, so the parameter gradients are
the reduced ones) the numbers come to the host in one transfer and the taps are removed.

The step's records are made, judged by the live rules and written to the sinks when the step is
over: at `Watch.step()`, the next counted forward pass, or `close()`. Nothing here changes what
training computes: the hooks read gradients and return nothing, the model's mode, RNG and
parameters are untouched, and leaving the `with` block, by an exception too, removes every hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from gradflow._version import __version__
from gradflow.engine.context import contexts_of
from gradflow.engine.inventory import Inventory
from gradflow.engine.junctions import FoundJunction, input_forks
from gradflow.engine.measure import _Gates, junctions_of, located
from gradflow.engine.parallel import DataParallel
from gradflow.engine.recorder import ForwardRecorder
from gradflow.engine.reduce import reduce
from gradflow.engine.replay import replays_of
from gradflow.engine.report import (
    InputInfo,
    Located,
    Measured,
    ModelInfo,
    ProbeInfo,
    Report,
    build_report,
    dead_positions,
)
from gradflow.engine.select import select
from gradflow.engine.taps import Taps, Variant
from gradflow.errors import GradflowError, ModelError, first_line
from gradflow.gate.settings import CheckSettings
from gradflow.probe import Probe, select_output
from gradflow.watching.record import WatchRecord
from gradflow.watching.rules import LiveRules, OnFlag
from gradflow.watching.sinks import Sink

if TYPE_CHECKING:
    from rich.console import RenderableType

_BASELINE = Variant("baseline")
COMPILED_NOTE = (
    "the model is compiled (torch.compile): steps are counted on the compiled module, and "
    "measured steps run its eager module, whose adds the junction search can see"
)
UNFILLED_NOTE = "the next forward pass came before this step's backward pass filled the measurement"
UNFINISHED_NOTE = "the watch ended before this step's backward pass filled the measurement"
FAILED_NOTE = "the step's forward pass raised"


@dataclass
class _Flight:
    """One measured forward pass, from its pre-hook until its backward pass is over."""

    recorder: ForwardRecorder
    leaves: list[torch.Tensor]
    handles: list[Any] = field(default_factory=list)
    taps: Taps | None = None
    reached: bool = False  # the backward pass reached the output


@dataclass
class _Step:
    """A measured step: its micro-batches' numbers as they arrive."""

    step: int
    located: list[Located] = field(default_factory=list)
    found: list[FoundJunction] = field(default_factory=list)
    graph_params: list[torch.Tensor] = field(default_factory=list)
    used: list[bool] | None = None
    found_count: int = 0
    notes: tuple[str, ...] = ()
    inputs: tuple[InputInfo, ...] = ()
    device: str = "cpu"
    measured: list[Measured] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    live: _Flight | None = None
    note: str | None = None  # why the step is incomplete
    loss: float | None = None


class Watch:
    """Gradient flow on the steps of a training loop: what `gradflow.watch` returns.

    Use it as a context manager (or call `close()`); leaving the block removes every hook.

    Attributes:
        records: the WatchRecords of the measured steps so far, in step and junction order.
        junctions: the junction names seen, in forward order of the first measured step.
        every, accumulate: the measurement period in steps, the forward passes per step.
        notes: what the watch noticed once (a compiled model, a step it could not measure).
        last_report: the Report of the latest complete measured step (None before one).

    Example:
        >>> with gradflow.watch(model, every=100, log="flow.jsonl") as w:
        ...     for x, y in loader:
        ...         loss = F.cross_entropy(model(x), y)
        ...         loss.backward(); opt.step(); opt.zero_grad()
        ...         w.step(loss)
        >>> w.records[-1].block_ratio
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        every: int,
        accumulate: int,
        sinks: Sequence[Sink],
        on_flag: str | OnFlag,
        scaler: Any,
        at: Sequence[str] | None,
        settings: CheckSettings | None,
        strict: bool = False,
    ) -> None:
        self.every = every
        # A measured step that cannot be measured leaves a note and training goes on; gradflow's
        # own trainer (`track`) asks for the failure instead, as its other measured steps give it.
        self._strict = strict
        self.accumulate = accumulate
        self._sinks = list(sinks)
        self._rules = LiveRules(on_flag, settings)
        self._thresholds = self._rules.settings.thresholds
        self._scaler = scaler
        self._at = at
        self._target = model  # what the user calls, where steps are counted
        inner = getattr(model, "_orig_mod", None)
        self._compiled = type(model).__name__ == "OptimizedModule" and isinstance(inner, torch.nn.Module)
        self._eager: torch.nn.Module = inner if self._compiled else model  # type: ignore[assignment]
        self._parallel = DataParallel.of(self._eager)
        self._inner = self._eager if self._parallel is None else self._parallel.module
        self._parts = Inventory.of(self._inner)
        self._params = self._parts.trainable
        self._replays = replays_of(self._inner)
        self._chosen: set[str] | None = None
        self.records: list[WatchRecord] = []
        self._names: list[str] = []
        self.notes: list[str] = [COMPILED_NOTE] if self._compiled else []
        self.last_report: Report | None = None
        self._passes = 0
        self._pending: _Step | None = None
        self._skipped: int | None = None  # a measured step given up: its other micro-batches pass
        self._closed = False
        self._restore: Callable[[], None] | None = None
        if self._compiled:
            self._eager_next()
        self._handle = model.register_forward_pre_hook(self._before_forward, with_kwargs=True)

    # The public side.

    @property
    def junctions(self) -> tuple[str, ...]:
        """The junction names measured so far, in forward order of the first measured step."""
        return tuple(self._names)

    @property
    def steps(self) -> int:
        """Training steps begun so far (counted forward passes // accumulate, rounded up)."""
        return -(-self._passes // self.accumulate)

    def __enter__(self) -> Watch:
        """The watch itself: its hooks are in place from `gradflow.watch` on."""
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        """`close()`; a flag raises nothing while an exception leaves the block."""
        self.close(flags=error is None)

    def step(self, loss: Any = None) -> None:
        """Mark the end of a training step; `loss` (a tensor or a number) goes into the records of
        a measured step. Optional: without it, a measured step's records are made at the next
        step's forward pass, with no loss. Costs nothing on a step that is not measured."""
        pending = self._pending
        if pending is None:
            return
        if loss is not None:
            value = loss.detach().float().sum().item() if isinstance(loss, torch.Tensor) else float(loss)
            pending.loss = value
        if pending.live is None and len(pending.measured) >= self.accumulate:
            self._finish(pending)

    def close(self, flags: bool = True) -> None:
        """Finish the step in progress (incomplete if its backward pass has not run), remove every
        hook and close the sinks. `flags=False` leaves out what a flag would raise (an exception
        is already on its way). Closing twice does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            pending = self._pending
            if pending is not None:
                if pending.live is not None or len(pending.measured) < self.accumulate:
                    self._give_up(pending, UNFINISHED_NOTE)
                self._finish(pending, flags=flags)
        finally:
            self._handle.remove()
            if self._restore is not None:
                self._restore()
                self._restore = None
            if self._pending is not None and self._pending.live is not None:
                self._land(self._pending.live)
            self._pending = None
            for sink in self._sinks:
                sink.close(self._names)

    def __repr__(self) -> str:
        from gradflow.render.short import watch_repr

        return watch_repr(self)

    def __rich__(self) -> RenderableType:
        from gradflow.render.watch import watch_rich

        return watch_rich(self)

    def _repr_html_(self) -> str:
        from gradflow.render.watch import watch_html

        return watch_html(self)

    # The hooks.

    def _before_forward(
        self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        if not torch.is_grad_enabled() or torch.is_inference_mode_enabled():
            return None
        step, micro = divmod(self._passes, self.accumulate)
        self._passes += 1
        if self._compiled:
            self._eager_next()
        self._settle(step)
        if step % self.every or self._skipped == step:
            return None
        return self._begin(step, micro, args, kwargs)

    def _eager_next(self) -> None:
        """A compiled model runs its eager module on the next call when that call is a measured
        step's: the module picks the function its call runs before any hook does."""
        measured = (self._passes // self.accumulate) % self.every == 0
        if measured and self._restore is None:
            self._restore = _run_eager(self._target, self._eager)
        elif not measured and self._restore is not None:
            self._restore()
            self._restore = None

    def _settle(self, step: int) -> None:
        """Before a counted forward pass of `step`: a measurement still waiting for its backward
        pass is given up, and a finished step's records are made."""
        pending = self._pending
        if pending is None:
            return
        if pending.live is not None:
            self._give_up(pending, UNFILLED_NOTE)
        if pending.step != step or pending.note is not None:
            if pending.note is None and len(pending.measured) < self.accumulate:
                self._give_up(pending, UNFILLED_NOTE)
            self._finish(pending)

    def _begin(
        self, step: int, micro: int, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self._pending is None:
            self._pending = _Step(step)
        pending = self._pending
        probe, leaves = _watched_inputs(args, kwargs)
        recorder = ForwardRecorder(self._inner, self._parts.modules)
        recorder.__enter__()
        flight = _Flight(recorder, leaves)
        pending.live = flight
        try:
            given = recorder.probe_inputs(probe)
            flight.handles.append(self._target.register_forward_hook(
                self._after_forward, with_kwargs=True, always_call=True))
            if not pending.inputs:
                pending.inputs = tuple(
                    InputInfo(tuple(t.shape), str(t.dtype).replace("torch.", "")) for t in probe.tensors()
                )
        except BaseException:
            self._land(flight)
            pending.live = None
            raise
        return given.args, given.kwargs

    def _after_forward(
        self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        pending = self._pending
        flight = None if pending is None else pending.live
        if pending is None or flight is None or flight.taps is not None:
            return
        recorder = flight.recorder
        for handle in flight.handles:
            handle.remove()
        flight.handles.clear()
        recorder.__exit__(None, None, None)
        if output is None:
            self._give_up(pending, FAILED_NOTE)
            return
        try:
            self._tap(pending, flight, recorder, output)
        except GradflowError as e:
            self._give_up(pending, f"the step could not be measured: {first_line(e)}")
            if self._strict:
                raise
        except Exception as e:  # noqa: BLE001 - a failed measurement must not stop training
            self._give_up(pending, f"the step could not be measured: {type(e).__name__}: {first_line(e)}")
            if self._strict:
                raise ModelError(f"the step could not be measured: {type(e).__name__}: "
                                 f"{first_line(e)}") from e

    def _tap(self, pending: _Step, flight: _Flight, recorder: ForwardRecorder, output: Any) -> None:
        """Find the junctions on the graph the measured forward pass built, and tap them."""
        out = select_output(output)
        if out.grad_fn is None:
            raise _Unmeasurable("the model output does not require grad")
        params = self._params
        names = self._parts.parameter_names
        if self._parallel is not None:
            params = self._parallel.graph_params(params)
            names = {id(g): names[id(p)] for p, g in zip(self._params, params)}
        found, naming, notes, used = junctions_of(
            self._inner, out, params, flight.leaves, recorder, names, {}, self._replays
        )
        all_names = [n.name for n in naming]
        if self._chosen is None:
            self._chosen = {all_names[i] for i in select(self._at, all_names)}
        chosen = [i for i, name in enumerate(all_names) if name in self._chosen]
        if not pending.measured:
            every = located(found, naming, params)
            pending.located = [every[i] for i in chosen]
            pending.found = [found[i] for i in chosen]
            pending.graph_params = list(params)
            pending.used, pending.found_count, pending.notes = used, len(found), notes
            pending.device = str(out.device)
        elif [all_names[i] for i in chosen] != [j.name for j in pending.located]:
            raise _Unmeasurable("its micro-batches' graphs hold different junctions")
        if not chosen:
            pending.live = None
            return
        taps = Taps(found, out, input_forks(found), chosen, (), (), contexts_of(found, chosen, params))
        taps.__enter__()
        flight.taps = taps
        taps.arm(_BASELINE)
        flight.handles.append(out.register_hook(self._output_reached(pending, flight)))

    def _output_reached(self, pending: _Step, flight: _Flight) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            if flight.reached:
                return
            flight.reached = True
            # Queued again from the first callback, this one runs after every callback queued
            # during the pass: a wrapper's gradient reduction (DDP, FSDP2) among them.
            engine = torch.autograd.Variable._execution_engine  # type: ignore[attr-defined]
            engine.queue_callback(lambda: engine.queue_callback(lambda: self._backward_done(pending, flight)))

        return hook

    def _backward_done(self, pending: _Step, flight: _Flight) -> None:
        """The measured micro-batch's backward pass is over: its numbers, to the host."""
        if pending.live is not flight:
            return
        taps = flight.taps
        assert taps is not None
        try:
            last = len(pending.measured) + 1 >= self.accumulate
            if not last:
                grads: list[torch.Tensor | None] = [None] * len(self._params)
            elif self._parallel is not None:
                grads = self._parallel.local_grads(self._params)
            else:
                grads = [p.grad for p in self._params]
            scale = 1.0
            if self._scaler is not None and self._scaler.is_enabled():
                scale = float(self._scaler.get_scale())
            zero = torch.zeros((), device=taps.device)
            pending.measured.append(taps.collect(grads, self._params, zero))
            pending.scales.append(scale)
        except Exception as e:  # noqa: BLE001 - a failed measurement must not stop training
            pending.note = f"the measurement failed: {type(e).__name__}: {first_line(e)}"
        finally:
            self._land(flight)
            pending.live = None

    def _land(self, flight: _Flight) -> None:
        """Remove whatever one measured forward pass installed."""
        for handle in flight.handles:
            handle.remove()
        flight.handles.clear()
        if flight.taps is not None:
            flight.taps.remove()
        else:
            flight.recorder.__exit__(None, None, None)

    def _give_up(self, pending: _Step, note: str) -> None:
        if pending.live is not None:
            self._land(pending.live)
            pending.live = None
        if pending.note is None:
            pending.note = note
            if not pending.located and note not in self.notes:  # no record will carry it
                self.notes.append(note)
        self._skipped = pending.step

    # Records.

    def _finish(self, pending: _Step, flags: bool = True) -> None:
        """The step's records: made, written to the sinks, judged by the rules."""
        self._pending = None
        if pending.note is not None:
            records = [
                WatchRecord(pending.step, j.name, None, None, None, None, None, None, None, None,
                            pending.loss, complete=False, note=pending.note)
                for j in pending.located
            ]
            self._keep(records)
            return
        if not pending.located:
            return
        measured = _combined(pending.measured, pending.scales)
        if self._parallel is not None:
            device = self._parts.device()
            (measured,) = reduce([measured], self._parallel, self._params, pending.located,
                                 self._parallel.device(device))
        report = self._report(pending, measured)
        self.last_report = report
        records = [
            WatchRecord(pending.step, j.name, j.grad_out, j.grad_skip, j.grad_block, j.grad_in,
                        j.block_ratio, j.cosine, j.param_grad, j.status, pending.loss)
            for j in report.junctions
        ]
        self._keep(records)
        found = self._rules.judge(pending.step, report, records)
        if flags:
            for violation in found:
                self._rules.flag(pending.step, violation, records)

    def _keep(self, records: list[WatchRecord]) -> None:
        for record in records:
            if record.junction not in self._names:
                self._names.append(record.junction)
        self.records.extend(records)
        for sink in self._sinks:
            sink.write(records, self._names)

    def _report(self, pending: _Step, measured: Measured) -> Report:
        parameters = [
            (self._parts.parameter_names.get(id(p), f"<param {k}>"), p.numel())
            for k, p in enumerate(self._params)
        ]
        device = self._parts.device()
        gates = _Gates(pending.found, pending.graph_params, self._params, device)
        probe = ProbeInfo(
            inputs=pending.inputs, loss="custom", mode="train" if self._inner.training else "eval",
            seed=0, device=pending.device,
            ranks=1 if self._parallel is None else self._parallel.size,
            shard=None if self._parallel is None else self._parallel.kind,
        )
        return build_report(
            pending.located, measured, parameters, thresholds=self._thresholds,
            model=ModelInfo(type(self._inner).__name__, "module", self._parts.parameter_count()),
            probe=probe, notes=tuple(self.notes) + pending.notes, found=pending.found_count,
            used=pending.used,
            gates=gates.of(dead_positions(pending.located, measured, self._thresholds), measured),
            gradflow_version=__version__, torch_version=torch.__version__,
        )


class _Unmeasurable(GradflowError):
    """A measured step that cannot be measured (the reason goes into its records' note)."""


def _watched_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Probe, list[torch.Tensor]]:
    """The inputs as the measured forward pass gets them, and the leaves behind them.

    As in `gradflow.probe.detached_inputs`: a floating input that does not require grad becomes a
    leaf that does, and the model gets a copy of it, so a junction that forks at the input is
    found; the user's tensors are never touched (other tensors are copied, since the recorder
    marks the tensors it is given). An input that requires grad is the user's graph: as it is."""
    leaves: list[torch.Tensor] = []

    def copy(value: Any) -> Any:
        if not isinstance(value, torch.Tensor) or value.requires_grad:
            return value
        if value.is_floating_point() or value.is_complex():
            leaf = value.detach().requires_grad_(True)
            leaves.append(leaf)
            return leaf.clone()
        return value.clone()

    probe = Probe(tuple(copy(a) for a in args), {k: copy(v) for k, v in kwargs.items()})
    return probe, leaves


def _run_eager(wrapper: torch.nn.Module, eager: torch.nn.Module) -> Callable[[], None]:
    """Make the compiled `wrapper` run its eager module for one call, with TorchDynamo off for
    everything it calls (the recorder's wrappers among them); the undo."""
    import torch._dynamo

    saved = wrapper.__dict__.get("forward")
    wrapper.__dict__["forward"] = torch._dynamo.disable(eager.__call__)

    def restore() -> None:
        if saved is None:
            wrapper.__dict__.pop("forward", None)
        else:
            wrapper.__dict__["forward"] = saved

    return restore


def _combined(measured: Sequence[Measured], scales: Sequence[float]) -> Measured:
    """One step's numbers from its micro-batches': squared norms and dot products add up, over
    the micro-batches' activations together; parameter gradients are the last micro-batch's, read
    after the whole step accumulated them. Every number is unscaled by its pass's loss scale."""
    if len(measured) == 1 and scales[0] == 1.0:
        return measured[0]

    def norm(values: Sequence[float | None], scales: Sequence[float]) -> float | None:
        if all(v is None for v in values):
            return None
        return math.sqrt(sum(((v or 0.0) / s) ** 2 for v, s in zip(values, scales)))

    def dot(values: Sequence[float | None]) -> float | None:
        if all(v is None for v in values):
            return None
        return sum((v or 0.0) / s**2 for v, s in zip(values, scales))

    count = len(measured[0].grad_out)
    column = lambda name, k: [getattr(m, name)[k] for m in measured]  # noqa: E731
    last, scale = measured[-1], scales[-1]
    context = [norm(column("grad_context", k), scales) for k in range(count)] if last.grad_context else []
    return Measured(
        grad_out=[norm(column("grad_out", k), scales) for k in range(count)],  # type: ignore[misc]
        grad_skip=[norm(column("grad_skip", k), scales) for k in range(count)],  # type: ignore[misc]
        grad_block=[norm(column("grad_block", k), scales) for k in range(count)],  # type: ignore[misc]
        grad_in=[norm(column("grad_in", k), scales) for k in range(count)],  # type: ignore[misc]
        dot=[dot(column("dot", k)) for k in range(count)],
        param_norms=[None if v is None else v / scale for v in last.param_norms],
        param_values=[None if v is None else v / scale for v in last.param_values],
        grad_output=norm([m.grad_output for m in measured], scales),
        loss=None,
        grad_context=context,
    )
