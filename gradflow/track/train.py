"""The verb: train a copy of a model and record its junctions' gradient flow every few steps.

Each step is one forward and one backward pass. An eager model trains under `gradflow.watch`:
its steps are plain `loss.backward()` and the watch measures every `every`-th on that step's own
backward pass, so track's records and a watched training loop's come from one code path.
TorchScript, exported and ONNX programs keep a measured step of their own (`_measured_step`): the
forward pass under the ForwardRecorder, the junctions found again in the new graph, and the
measurement hooks on that step's backward pass, whose parameter gradients go to the optimizer.
Numbers reach the host once per recorded step (the measurement's single transfer) and never on
other steps.

`track_arms` trains copies side by side: a stopped arm (`sg(x) + f(x)`, `x + sg(f(x))`) takes
every step through `_measured_step` with the stop-gradient hooks on the junctions' adds; the
no-residual arm replaces those adds by their block operand in every forward pass
(`gradflow.engine.rewire`).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from gradflow._version import __version__
from gradflow.choices import Choice, Loss
from gradflow.engine.context import contexts_of
from gradflow.engine.inventory import Inventory, eager
from gradflow.engine.junctions import input_forks, needed_inputs
from gradflow.engine.measure import junctions_of, located
from gradflow.engine.notes import path_notes
from gradflow.engine.recorder import ForwardRecorder, run_forward
from gradflow.engine.report import (
    InputInfo,
    Junction,
    Measured,
    ModelInfo,
    ProbeInfo,
    Report,
    StopGradient,
    Thresholds,
    build_report,
)
from gradflow.engine.rewire import adds_numbered, blocks_only
from gradflow.engine.select import select
from gradflow.engine.state import collector_paused, seed_generators
from gradflow.engine.taps import Taps, Variant
from gradflow.errors import GradflowError, ModelError, OptionError, ProbeError, first_line
from gradflow.probe import (
    Probe,
    as_probe,
    detached_inputs,
    holds_probabilities,
    probabilities_nll,
    probe_loss,
    resolve_loss,
    select_output,
)
from gradflow.track.arms import TrackArms
from gradflow.track.data import TrainingData, as_training_data, batches
from gradflow.track.result import Optimizer, Track, TrackRecord, TrackSettings

if TYPE_CHECKING:
    from gradflow.watching.record import WatchRecord
    from gradflow.watching.session import Watch

_BASELINE = Variant("baseline")


@dataclass(frozen=True)
class StepUpdate:
    """Passed to `on_step` after every training step: steps done, steps asked, and the loss
    at the latest recorded step (None before the first)."""

    done: int
    total: int
    loss: float | None


def track(
    model: torch.nn.Module,
    inputs: Any = None,
    *,
    data: TrainingData | tuple[torch.Tensor, torch.Tensor] | dict[str, Any] | None = None,
    steps: int = 100,
    every: int = 1,
    optimizer: Optimizer | str = Optimizer.ADAM,
    lr: float = 1e-3,
    loss: Loss | str = Loss.AUTO,
    batch_size: int = 32,
    seed: int = 0,
    at: Sequence[str] | None = None,
    source: str = "<module>",
    on_step: Callable[[StepUpdate], None] | None = None,
) -> Track:
    """Train a copy of `model` and record every junction's gradient flow every `every` steps.

    Args:
        model: any nn.Module; it is never modified (a deep copy is trained).
        inputs: the probe batch to train on when there is no `data` (a tensor, a tuple of
            positional inputs or a dict of keyword inputs), with the probe loss of `inspect`.
        data: training inputs and targets (a TrainingData, a pair, or a dict with
            inputs/x and targets/y); batches of `batch_size` are drawn with `seed`.
        steps: training steps (optimizer updates).
        every: record on steps 0, every, 2*every, ... (before that step's update).
        optimizer: "sgd" | "adam" | "adamw", torch.optim defaults besides `lr`.
        loss: without data, the probe loss ("auto", "sum", "mean", "mse", "ce" on seeded
            labels); with data, "ce" (integer class targets), "mse", or "auto" (ce for integer
            targets, else mse).
        seed: seeds the global RNG for dropout (as `inspect` does), the `ce` probe labels and
            the batch order; the caller's RNG state is restored afterwards.
        at: junction names (globs), indices or ranges to record (default all).
        on_step: called after every step with a StepUpdate (progress display).
    Returns:
        A Track. Ctrl-C (KeyboardInterrupt) stops the run and returns what was recorded, with
        `interrupted=True`.

    Example:
        >>> result = track(model, torch.randn(8, 3, 32, 32), steps=50, every=5)
        >>> result.crossover(result.junctions[0])
    """
    _check(steps, every, lr, batch_size)
    kind: Optimizer = _choice(Optimizer, optimizer, "--optimizer")
    loss_kind: Loss = _choice(Loss, loss, "--loss")
    return _train(model, inputs, data, steps=steps, every=every, kind=kind, lr=lr,
                  loss_kind=loss_kind, batch_size=batch_size, seed=seed, at=at, source=source,
                  on_step=on_step, arm=Arm.BASELINE)


def track_arms(
    model: torch.nn.Module,
    inputs: Any = None,
    *,
    sg_skip: bool = False,
    sg_block: bool = False,
    no_residual: bool = False,
    data: TrainingData | tuple[torch.Tensor, torch.Tensor] | dict[str, Any] | None = None,
    steps: int = 100,
    every: int = 1,
    optimizer: Optimizer | str = Optimizer.ADAM,
    lr: float = 1e-3,
    loss: Loss | str = Loss.AUTO,
    batch_size: int = 32,
    seed: int = 0,
    at: Sequence[str] | None = None,
    source: str = "<module>",
    on_step: Callable[[StepUpdate], None] | None = None,
) -> TrackArms:
    """Train copies of `model` side by side from the same weights, on the same batches in the
    same order: a baseline, and one arm for each change asked for at the selected junctions.

    Does training with `sg(x) + f(x)` behave like the network without its residual connection?
    The arms measure it. A stop-gradient applies on every training step (the measurement's
    stop-gradient hooks on the junctions' adds, as `compare` applies them to its probe), not
    only on recorded steps.

    Args:
        model, inputs, data, steps, every, optimizer, lr, loss, batch_size, seed, at, source:
            as for `track`; `at` selects the junctions the arms change (default all).
        sg_skip: an arm training `sg(x) + f(x)`: no gradient over the skip path.
        sg_block: an arm training `x + sg(f(x))`: no gradient through the block into x.
        no_residual: an arm training `y = f(x)`: each selected junction's output replaced by its
            block operand, in the forward pass too. It records the loss only.
        on_step: called after every step of every arm, with that arm's StepUpdate (`done`
            counts over all arms, `total` is steps times arms).
    Returns:
        A TrackArms: each arm's Track by name ("baseline" first), and each arm's trained copy
        (`trained`). Ctrl-C stops the arm running and skips the rest; what was recorded is kept.

    Example:
        >>> arms = track_arms(model, torch.randn(8, 3, 32, 32), steps=100, every=5, sg_skip=True)
        >>> arms.arms["sg-skip"].losses[-1], arms.baseline.losses[-1]
    """
    if not (sg_skip or sg_block or no_residual):
        raise OptionError("no arm to train beside the baseline: set sg_skip, sg_block and/or "
                          "no_residual (--sg-skip, --sg-block, --no-residual)")
    _check(steps, every, lr, batch_size)
    kind: Optimizer = _choice(Optimizer, optimizer, "--optimizer")
    loss_kind: Loss = _choice(Loss, loss, "--loss")
    wanted = [Arm.BASELINE] + [arm for arm, on in ((Arm.SG_SKIP, sg_skip), (Arm.SG_BLOCK, sg_block),
                                                   (Arm.NO_RESIDUAL, no_residual)) if on]
    total = steps * len(wanted)
    arms: dict[str, Track] = {}
    trained: dict[str, torch.nn.Module] = {}
    for k, arm in enumerate(wanted):
        progress = None
        if on_step is not None:
            def progress(update: StepUpdate, offset: int = k * steps) -> None:
                on_step(StepUpdate(offset + update.done, total, update.loss))  # type: ignore[misc]
        result = _train(model, inputs, data, steps=steps, every=every, kind=kind, lr=lr,
                        loss_kind=loss_kind, batch_size=batch_size, seed=seed, at=at,
                        source=source, on_step=progress, arm=arm, trained=trained)
        arms[str(arm)] = result
        if result.interrupted:
            break
    return TrackArms(source=source, arms=arms, junctions=arms["baseline"].junctions, trained=trained)


class Arm(Choice):
    """How a training copy's selected junctions train: unchanged, with a stop-gradient on the
    skip (`sg(x) + f(x)`) or the block (`x + sg(f(x))`) on every step, or without the residual
    connection (`y = f(x)`)."""

    BASELINE = "baseline"
    SG_SKIP = "sg-skip"
    SG_BLOCK = "sg-block"
    NO_RESIDUAL = "no-residual"


def _check(steps: int, every: int, lr: float, batch_size: int) -> None:
    if steps < 1:
        raise OptionError(f"--steps must be at least 1, got {steps}")
    if every < 1:
        raise OptionError(f"--every must be at least 1, got {every}")
    if not lr > 0:
        raise OptionError(f"--lr must be positive, got {lr}")
    if batch_size < 1:
        raise OptionError(f"--batch-size must be at least 1, got {batch_size}")


def _train(model: torch.nn.Module, inputs: Any, data: Any, *, steps: int, every: int,
           kind: Optimizer, lr: float, loss_kind: Loss, batch_size: int, seed: int,
           at: Sequence[str] | None, source: str, on_step: Callable[[StepUpdate], None] | None,
           arm: Arm, trained: dict[str, torch.nn.Module] | None = None) -> Track:
    """Train a copy of `model` as `arm` says, recording every `every` steps.

    The baseline of an eager model trains under `gradflow.watch` (`_watchable`); otherwise its
    recorded steps are `_measured_step`s and the others plain `backward()` passes. A stopped
    arm stops the selected junctions on every step, through the measurement's stop-gradient hooks on the adds
    (`gradflow.engine.taps`), as `compare` does on its probe. The no-residual arm runs every
    forward pass with the selected junctions' adds replaced by their block operand
    (`gradflow.engine.rewire`); it records the loss, and no junction. `trained` gets the
    trained copy under the arm's name.
    """
    started = time.perf_counter()
    work = _training_copy(eager(model)[0])  # a torch.compile wrapper: train its eager module
    if trained is not None:
        trained[str(arm)] = work
    parts = Inventory.of(work)
    device = parts.device()
    params = parts.trainable
    if not params:
        raise ProbeError("the model has no trainable parameter: there is nothing to train")
    param_names = parts.parameter_names
    training = _Objective.build(work, inputs, data, loss_kind, batch_size, seed, device)
    optim = _optimizer(kind, params, lr)
    settings = TrackSettings(
        steps=steps, every=every, optimizer=str(kind), lr=lr, loss=str(loss_kind), seed=seed,
        batch_size=training.batch_size, data=training.data_name, samples=training.samples,
    )
    names: list[str] = []
    chosen: set[str] | None = None  # junction names recorded, fixed by the first record
    records: list[TrackRecord] = []
    losses: list[tuple[int, float | None]] = []
    last_loss: float | None = None
    done = 0
    interrupted = False
    cuda = [device] if device.type == "cuda" else []
    stop = {Arm.SG_SKIP: "skip", Arm.SG_BLOCK: "block"}.get(arm)
    replaced: dict[int, int] | None = None
    watched = arm is Arm.BASELINE and _watchable(work)
    # TorchScript's optimizing executor would, after a few calls, fuse the graph into nodes
    # that hide the junctions; every step must build the graph `inspect` sees.
    with torch.random.fork_rng(devices=cuda), torch.jit.optimized_execution(False), \
            _watch(work, every, at) if watched else contextlib.nullcontext() as watch:
        seed_generators(seed, [device])
        work.train()
        try:
            for step in range(steps):
                args, kwargs, target = training.next_batch()
                if watch is not None:
                    optim.zero_grad(set_to_none=True)
                    seen = len(watch.records)
                    value = _plain_step(work, args, kwargs, target, training)
                    watch.step(value)
                    if step == 0:
                        settings = _with_loss(settings, training.loss_kind)
                    if step % every == 0:
                        last_loss = value.item()
                        losses.append((step, last_loss))
                        for record in _watched_records(watch, watch.records[seen:], step):
                            if record.junction not in names:
                                names.append(record.junction)
                            records.append(record)
                elif arm is Arm.NO_RESIDUAL:
                    if replaced is None:
                        replaced = _replaced_adds(work, args, kwargs, target, training, params,
                                                  param_names, at)
                        settings = _with_loss(settings, training.loss_kind)
                    optim.zero_grad(set_to_none=True)
                    value = _plain_step(work, args, kwargs, target, training, replaced)
                    if step % every == 0:
                        last_loss = value.item()
                        losses.append((step, last_loss))
                elif step % every == 0 or stop is not None:
                    with collector_paused():
                        report, grads = _measured_step(work, args, kwargs, target, training,
                                                       params, param_names, at, chosen, stop)
                    for param, grad in zip(params, grads):
                        param.grad = grad
                    if chosen is None:
                        chosen = {j.name for j in report.junctions}
                        settings = _with_loss(settings, training.loss_kind)
                    if step % every == 0:  # a stopped arm measures every step, records these
                        for junction in report.junctions:
                            if junction.name not in names:
                                names.append(junction.name)
                            records.append(_record(step, junction, report.summary.loss))
                        last_loss = report.summary.loss
                        losses.append((step, last_loss))
                else:
                    optim.zero_grad(set_to_none=True)
                    _plain_step(work, args, kwargs, target, training)
                optim.step()
                done = step + 1
                if on_step is not None:
                    on_step(StepUpdate(done, steps, last_loss))
        except KeyboardInterrupt:
            interrupted = True
    return Track(
        source=source,
        settings=settings,
        junctions=tuple(names),
        records=tuple(records),
        losses=tuple(losses),
        steps_run=done,
        interrupted=interrupted,
        parameters=sum(p.numel() for p in model.parameters()),
        gradflow_version=__version__,
        torch_version=torch.__version__,
        timings_s={"total": time.perf_counter() - started},
    )


class _Objective:
    """Where each step's batch comes from and how it becomes a scalar loss."""

    def __init__(self, batch_iter: Iterator[tuple[Probe, torch.Tensor | None]],
                 loss: Loss, seed: int, batch_size: int | None, data_name: str | None,
                 samples: int | None, targets: torch.Tensor | None) -> None:
        self._batches = batch_iter
        self.loss = loss
        self.seed = seed
        self.batch_size = batch_size
        self.data_name = data_name
        self.samples = samples
        self.all_targets = targets  # CPU copy, to check class labels once
        self.loss_kind: Loss | None = None
        self._labels: torch.Tensor | None = None
        self._checked = False

    @classmethod
    def build(cls, model: torch.nn.Module, inputs: Any, data: Any, loss: Loss,
              batch_size: int, seed: int, device: torch.device) -> _Objective:
        if data is None:
            if inputs is None:
                raise ProbeError("track needs probe inputs or training data")
            probe = as_probe(inputs).to(device)
            size = next((int(t.shape[0]) for t in probe.tensors() if t.dim() > 0), None)
            return cls(_repeat(probe), loss, seed, size, None, None, None)
        if loss in (Loss.SUM, Loss.MEAN):
            raise OptionError(f"--loss {loss} takes no targets: with --data use ce or mse")
        training = as_training_data(data)
        inputs_tensor = training.inputs
        dtype = _float_dtype(model)
        if inputs_tensor.is_floating_point() and dtype is not None:
            inputs_tensor = inputs_tensor.to(dtype)
        targets = training.targets
        kind = loss
        if kind is Loss.AUTO:
            kind = Loss.MSE if targets.is_floating_point() else Loss.CE
        if kind is Loss.CE and (targets.is_floating_point() or targets.dtype == torch.bool):
            raise ProbeError(
                f"{training.name}: --loss ce needs integer class targets, got "
                f"{str(targets.dtype).replace('torch.', '')}; use --loss mse for real-valued targets"
            )
        if kind is Loss.CE:
            targets = targets.long()
        elif dtype is not None:
            targets = targets.to(dtype)
        prepared = TrainingData(inputs_tensor, targets, training.name)
        drawn = ((Probe((x,)), y) for x, y in batches(prepared, batch_size, seed, device))
        objective = cls(drawn, kind, seed, min(batch_size, len(prepared)), training.name,
                        len(prepared), targets if kind is Loss.CE else None)
        objective.loss_kind = kind
        return objective

    def next_batch(self) -> tuple[tuple[Any, ...], dict[str, Any], torch.Tensor | None]:
        probe, target = next(self._batches)
        return probe.args, probe.kwargs, target

    def __call__(self, output: torch.Tensor, target: torch.Tensor | None,
                 probabilities: bool = False) -> torch.Tensor:
        """The loss on `output`; a `ce` loss on `probabilities` (a softmax's output, see
        `gradflow.probe.holds_probabilities`) is their negative log-likelihood."""
        if target is None:
            return self._probe_loss(output, probabilities)
        if self.loss is Loss.CE:
            classes = output.shape[-1] if output.dim() >= 1 else 0
            if not self._checked:
                self._check_classes(output)
            rows = output.reshape(-1, classes).float()
            if probabilities:
                return probabilities_nll(rows, target.reshape(-1))
            return torch.nn.functional.cross_entropy(rows, target.reshape(-1))
        if output.shape != target.shape:
            if output.numel() != target.numel():
                raise ProbeError(
                    f"--loss mse: the model output has shape {list(output.shape)} but a batch "
                    f"of targets has shape {list(target.shape)}"
                )
            target = target.reshape(output.shape)
        return torch.nn.functional.mse_loss(output.float(), target.float())

    def _probe_loss(self, output: torch.Tensor, probabilities: bool) -> torch.Tensor:
        """The probe loss of `inspect`. Its `ce` labels are drawn once (the same draw as
        `gradflow.probe.probe_loss`) and kept on the device, so later steps copy nothing."""
        kind = resolve_loss(self.loss, output)
        self.loss_kind = kind
        if kind is not Loss.CE:
            return probe_loss(output, kind, self.seed)
        if self._labels is None:
            # Checks the output, as inspect does.
            value = probe_loss(output, kind, self.seed, probabilities=probabilities)
            generator = torch.Generator().manual_seed(self.seed)
            rows = output.numel() // output.shape[-1]
            self._labels = torch.randint(0, output.shape[-1], (rows,),
                                         generator=generator).to(output.device)
            return value
        scores = output.reshape(-1, output.shape[-1]).float()
        if probabilities:
            return probabilities_nll(scores, self._labels)
        return torch.nn.functional.cross_entropy(scores, self._labels)

    def _check_classes(self, output: torch.Tensor) -> None:
        """Class targets must index the output's last dimension (checked once, on the host)."""
        self._checked = True
        self.loss_kind = Loss.CE
        if output.dim() < 1 or output.shape[-1] < 2:
            raise ProbeError(
                f"--loss ce needs an output whose last dimension has at least 2 classes, "
                f"got shape {list(output.shape)}; use --loss mse"
            )
        classes = int(output.shape[-1])
        targets = self.all_targets
        if targets is not None and targets.numel():
            low, high = int(targets.min()), int(targets.max())
            if low < 0 or high >= classes:
                raise ProbeError(
                    f"{self.data_name}: class targets range over {low}..{high} but the model "
                    f"output has {classes} classes"
                )


def _repeat(probe: Probe) -> Iterator[tuple[Probe, torch.Tensor | None]]:
    while True:
        yield probe, None


def _measured_step(model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                   target: torch.Tensor | None, objective: _Objective,
                   params: list[torch.Tensor], param_names: dict[int, str],
                   at: Sequence[str] | None, chosen: set[str] | None,
                   stop: str | None = None) -> tuple[Report, list[Any]]:
    """Forward under the recorder, junctions found and named as `inspect` does, hooks on this
    step's backward pass; returns the step's Report and the parameter gradients. `stop` ("skip"
    or "block") stops that path of every measured junction in this backward pass, so the
    gradients are those of `sg(x) + f(x)` or `x + sg(f(x))`.

    The first recorded step resolves `at` to junction names (`chosen`); later steps measure the
    junctions with those names, so a selection by index or range keeps meaning the same ones.
    """
    probe, leaves = detached_inputs(Probe(args, kwargs))
    with ForwardRecorder(model) as recorder:
        given = recorder.probe_inputs(probe)
        output = _forward(model, given.args, given.kwargs)
    out = select_output(output)
    loss = objective(out, target, holds_probabilities(model, output, out))
    found, naming, notes, used = junctions_of(model, loss, params, leaves, recorder, param_names, {})
    names = [n.name for n in naming]
    if chosen is None:
        measured_at = select(at, names)
    else:
        measured_at = [i for i, name in enumerate(names) if name in chosen]
    notes += path_notes([found[i] for i in measured_at], [names[i] for i in measured_at])
    fork_leaves = input_forks(found)
    wrt = [*params, *needed_inputs(found, leaves, params, fork_leaves)]
    grads: list[torch.Tensor | None] = [None] * len(params)
    handles = [p.register_hook(_keep(grads, i)) for i, p in enumerate(params)]
    try:
        stopped = frozenset(measured_at)
        variant = (_BASELINE if stop is None else
                   Variant(f"sg-{stop}", stop_skip=stopped if stop == "skip" else frozenset(),
                           stop_block=stopped if stop == "block" else frozenset()))
        with Taps(found, out, fork_leaves, measured_at, [variant],
                  context=contexts_of(found, measured_at, params)) as taps:
            measured: Measured = taps.run(variant, loss, wrt, params, retain_graph=False)
    except GradflowError:
        raise
    except Exception as e:
        raise ModelError(f"the backward pass failed: {type(e).__name__}: {first_line(e)}") from e
    finally:
        for handle in handles:
            handle.remove()
    probe_info = ProbeInfo(
        tuple(InputInfo(tuple(t.shape), str(t.dtype).replace("torch.", "")) for t in probe.tensors()),
        str(objective.loss_kind), "train", objective.seed, str(out.device),
    )
    # The same metric definitions as `inspect` (ratio, cosine, param_grad), from one place.
    junctions = located(found, naming, params)
    parameters = [(param_names.get(id(p), f"<param {k}>"), p.numel()) for k, p in enumerate(params)]
    stop_gradient = StopGradient(
        tuple(names[i] for i in measured_at) if stop == "skip" else (),
        tuple(names[i] for i in measured_at) if stop == "block" else (),
    )
    report = build_report([junctions[i] for i in measured_at], measured, parameters,
                          thresholds=Thresholds(), model=ModelInfo("<track>", "module", 0),
                          probe=probe_info, notes=notes, found=len(found), used=used,
                          stop_gradient=stop_gradient)
    return report, grads


def _watchable(model: torch.nn.Module) -> bool:
    """An eager model: `gradflow.watch` measures its steps. TorchScript and exported programs run
    their operations outside torch's Python API, and gradflow's ONNX executor names its adds
    from the graph: those keep the measured step of their own (`_measured_step`)."""
    from gradflow.engine.recorder import has_export_metadata

    return not (isinstance(model, torch.jit.ScriptModule) or has_export_metadata(model)
                or type(model).__name__ == "OnnxModel")


def _watch(model: torch.nn.Module, every: int, at: Sequence[str] | None) -> Watch:
    """The watch behind the baseline's records: rules judged but never flagged (track reports
    numbers, `check` judges them), and a step that cannot be measured an error (a bad `at`
    among them), as on track's other measured steps."""
    from gradflow.watching.session import Watch

    return Watch(model, every=every, accumulate=1, sinks=(), on_flag=lambda record, rule: None,
                 scaler=None, at=at, settings=None, strict=True)


def _watched_records(watch: Watch, fresh: Sequence[WatchRecord], step: int) -> list[TrackRecord]:
    """A measured step's WatchRecords as TrackRecords, each with its junction's index in the
    step's report. A step the watch could not measure ends the run, as a failed measured step
    does."""
    incomplete = next((r for r in fresh if not r.complete), None)
    if incomplete is not None:
        raise ModelError(f"step {step} could not be measured: {incomplete.note}")
    report = watch.last_report
    index = {} if report is None else {j.name: j.index for j in report.junctions}
    return [
        TrackRecord(step=step, junction=r.junction, index=index.get(r.junction, k),
                    grad_out=r.grad_out, grad_skip=r.grad_skip, grad_block=r.grad_block,
                    grad_in=r.grad_in, block_ratio=r.block_ratio, cosine=r.cosine,
                    param_grad=r.param_grad, loss=r.loss)
        for k, r in enumerate(fresh)
    ]


def _replaced_adds(model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                   target: torch.Tensor | None, objective: _Objective, params: list[torch.Tensor],
                   param_names: dict[int, str], at: Sequence[str] | None) -> dict[int, int]:
    """The adds of the selected junctions, by number (`gradflow.engine.rewire`), with their
    block operand: found on one forward pass of the first batch, whose RNG draws and buffer
    updates (batch-norm statistics) are undone, so that the training starts where the other
    arms start."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    devices = [d for d in {p.device for p in params} if d.type == "cuda"]
    nodes: list[Any] = []
    with torch.random.fork_rng(devices=devices):
        probe, leaves = detached_inputs(Probe(args, kwargs))
        with ForwardRecorder(model) as recorder, adds_numbered(nodes):
            given = recorder.probe_inputs(probe)
            output = _forward(model, given.args, given.kwargs)
        out = select_output(output)
        loss = objective(out, target, holds_probabilities(model, output, out))
        found, naming, _, _ = junctions_of(model, loss, params, leaves, recorder, param_names, {})
    with torch.no_grad():
        for buffer, saved in buffers:
            buffer.copy_(saved)
    names = [n.name for n in naming]
    replaced: dict[int, int] = {}
    for index in select(at, names):
        junction = found[index]
        number = next((k for k, node in enumerate(nodes) if node is junction.add), None)
        if number is None:
            raise ModelError(f"--no-residual: the add of junction {names[index]} is not one the "
                             f"model's forward pass makes with +, torch.add or Tensor.add")
        replaced[number] = 1 - junction.skip_operand
    return replaced


def _keep(grads: list[Any], index: int) -> Callable[[torch.Tensor], None]:
    """A parameter hook that keeps the gradient autograd computed for it (for the optimizer)."""

    def hook(grad: torch.Tensor) -> None:
        grads[index] = grad

    return hook


def _plain_step(model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                target: torch.Tensor | None, objective: _Objective,
                replaced: dict[int, int] | None = None) -> torch.Tensor:
    """An unrecorded step: forward and `backward()`, no hooks; returns the loss. Inputs are
    copied first because a model may write into its inputs, and the probe batch is reused every
    step. `replaced`: the forward pass's adds replaced by their block operand
    (`gradflow.engine.rewire.blocks_only`)."""
    args = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
    kwargs = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    if replaced is None:
        output = _forward(model, args, kwargs)
    else:
        with blocks_only(replaced):
            output = _forward(model, args, kwargs)
    out = select_output(output)
    loss = objective(out, target, holds_probabilities(model, output, out))
    try:
        loss.backward()
    except Exception as e:
        raise ModelError(f"the backward pass failed: {type(e).__name__}: {first_line(e)}") from e
    return loss.detach()


def _forward(model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return run_forward(model, args, kwargs)
    except GradflowError:
        raise
    except Exception as e:
        shapes = ", ".join("x".join(map(str, t.shape)) for t in (*args, *kwargs.values())
                           if isinstance(t, torch.Tensor))
        raise ProbeError(
            f"the model's forward pass failed on a training batch ({shapes or 'no tensors'}): "
            f"{type(e).__name__}: {first_line(e)}; check the data's shape and --batch-size"
        ) from e


def _record(step: int, junction: Junction, loss: float | None) -> TrackRecord:
    return TrackRecord(
        step=step, junction=junction.name, index=junction.index,
        grad_out=junction.grad_out, grad_skip=junction.grad_skip,
        grad_block=junction.grad_block, grad_in=junction.grad_in,
        block_ratio=junction.block_ratio, cosine=junction.cosine,
        param_grad=junction.param_grad, loss=loss,
    )


def _with_loss(settings: TrackSettings, kind: Loss | None) -> TrackSettings:
    from dataclasses import replace

    return replace(settings, loss=str(kind)) if kind is not None else settings


def _training_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy to train, with the original's requires_grad flags and no grads.

    The copy is made under no_grad: a TorchScript module's deepcopy otherwise clones its
    parameters inside the autograd graph (non-leaf tensors no optimizer accepts), and under
    no_grad it drops their requires_grad, hence the flags are set again afterwards. Tensors a
    module keeps from its last forward pass cannot be deep-copied; the copy gets them detached.
    """
    try:
        with torch.no_grad():
            try:
                work = copy.deepcopy(model)
            except RuntimeError:
                work = copy.deepcopy(model, _detached_activations(model))
    except Exception as e:
        raise ModelError(
            f"cannot copy the model to train it (the original is never modified): "
            f"{type(e).__name__}: {first_line(e)}"
        ) from e
    for original, param in zip(model.parameters(), work.parameters()):
        param.requires_grad_(original.requires_grad)
        param.grad = None
    return work


def _detached_activations(model: torch.nn.Module) -> dict[int, Any]:
    """A deepcopy memo mapping every non-leaf tensor held in module attributes (through lists,
    tuples, dicts and plain objects, a few levels deep) to a detached copy of it."""
    memo: dict[int, Any] = {}
    seen: set[int] = set()

    def visit(value: Any, depth: int) -> None:
        if id(value) in seen or depth > 4:
            return
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            if value.grad_fn is not None:
                memo[id(value)] = value.detach().clone()
            return
        if isinstance(value, (list, tuple, set)):
            items: Any = value
        elif isinstance(value, dict):
            items = value.values()
        elif hasattr(value, "__dict__") and not isinstance(value, (type, torch.nn.Module)):
            items = vars(value).values()
        else:
            return
        for item in items:
            visit(item, depth + 1)

    for module in model.modules():
        for key, value in vars(module).items():
            if key not in ("_parameters", "_buffers", "_modules"):
                visit(value, 0)
    return memo


def _optimizer(kind: Optimizer, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if kind is Optimizer.SGD:
        return torch.optim.SGD(params, lr=lr)
    if kind is Optimizer.ADAM:
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.AdamW(params, lr=lr)


def _choice(enum_type: Any, value: Any, flag: str) -> Any:
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum_type)
        raise OptionError(f"unknown {flag} {value!r}: choose one of {allowed}") from None


def _float_dtype(model: torch.nn.Module) -> torch.dtype | None:
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return None
