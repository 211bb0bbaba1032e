"""The measurement's stages in order, for the drivers: a model and its probe in, Reports out.

Data flows one way: probe -> forward (the recorder notes add sites) -> junctions from the
autograd graph, named -> taps -> one backward pass per variant -> build_report. The model comes
back exactly as it was (`gradflow.engine.state`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch.autograd.graph import get_gradient_edge

from gradflow._version import __version__
from gradflow.choices import Loss, Mode
from gradflow.engine.context import contexts_of
from gradflow.engine.gates import gate_candidates, largest_magnitudes, nearly_closed
from gradflow.engine.inventory import Inventory, eager
from gradflow.engine.junctions import (
    ADD_NODES,
    BLOCK,
    SKIP,
    FoundJunction,
    all_nodes,
    find_junctions,
    input_forks,
    needed_inputs,
)
from gradflow.engine.naming import Naming, name_junctions
from gradflow.engine.norms import budget
from gradflow.engine.notes import graph_notes, path_notes, subset_note
from gradflow.engine.parallel import DataParallel
from gradflow.engine.recorder import ForwardRecorder, run_forward
from gradflow.engine.reduce import reduce
from gradflow.engine.replay import Found, Replays, replays_of, shape_key
from gradflow.engine.report import (
    InputInfo,
    Located,
    Measured,
    ModelInfo,
    ProbeInfo,
    Report,
    StopGradient,
    Thresholds,
    build_report,
    dead_positions,
)
from gradflow.engine.select import select
from gradflow.engine.stages import stage
from gradflow.engine.state import collector_paused, grads_set_aside, preserved, seed_generators
from gradflow.engine.taps import Taps, Variant, capturable
from gradflow.errors import GradflowError, ModelError, OptionError, ProbeError, first_line
from gradflow.probe import (
    PROBABILITIES_NOTE,
    Probe,
    as_probe,
    detached_inputs,
    holds_probabilities,
    parse_dtype,
    probe_loss,
    resolve_loss,
    select_output,
)

# The loss a probe takes with a function of the user's: `loss=lambda output: ...`.
CUSTOM_LOSS = "custom"
LossChoice = Loss | str | Callable[[Any], torch.Tensor]


@dataclass(frozen=True)
class VariantSpec:
    """A backward pass to measure: the baseline, or stop-gradient on skips and/or blocks."""

    name: str = "baseline"
    sg_skip: bool = False
    sg_block: bool = False


BASELINE = VariantSpec()


def measure(
    model: torch.nn.Module,
    inputs: Any,
    variants: Sequence[VariantSpec] = (BASELINE,),
    *,
    loss: LossChoice = Loss.AUTO,
    mode: Mode | str = Mode.TRAIN,
    seed: int = 0,
    at: Sequence[str] | None = None,
    only: Sequence[str] | None = None,
    max_junctions: int | None = None,
    dtype: str | torch.dtype | None = None,
    thresholds: Thresholds | None = None,
    source: str = "<module>",
    source_format: str = "module",
    timings: dict[str, float] | None = None,
) -> list[Report]:
    """One forward pass and one backward pass per variant over the same graph; a Report each.

    A model wrapped in DDP or sharded with FSDP2 (`gradflow.engine.parallel`) is measured on each
    rank's slice of the batch, called on every rank: one forward and one real backward pass per
    variant, through the wrapper, and one all-reduce (`gradflow.engine.reduce`) make the same
    Reports on every rank, of the mean over ranks of each rank's loss.

    Args:
        variants: the backward passes to make (see VariantSpec); the forward pass is shared.
        loss: a probe loss (see `gradflow.probe.probe_loss`), or a function of the model output
            (as the model returns it) to the scalar to differentiate; the report says "custom".
        at: the junctions a stop-gradient applies to (names, globs, indices, ranges).
        only: measure only these junctions (same patterns); the others cost nothing.
        max_junctions: measure at most this many, evenly spread over depth.
        dtype: run the probe under torch.autocast with this dtype (bfloat16, float16);
            norms are accumulated in float32 whatever the dtype.
    """
    thresholds = thresholds or Thresholds()
    started = time.perf_counter()
    with stage("inventory"):
        model, compiled = eager(model)
        parallel = DataParallel.of(model)
        inner = model if parallel is None else parallel.module
        parts = Inventory.of(inner)
        device = parts.device()
        params = parts.trainable
        param_names = parts.parameter_names
    timings = dict(timings or {})
    precision = _precision(dtype)
    asked = _Asked(tuple(variants), Mode(mode), seed, loss, precision, at, only, max_junctions)
    with collector_paused(), preserved(inner, parts.devices, parts):
        if parallel is None:
            graph, stops, chosen, notes, measured = _measure_here(model, inputs, asked, parts, timings)
        else:
            graph, stops, chosen, notes, measured = _measure_parallel(parallel, inputs, asked, parts, timings)
    notes = compiled + notes
    names = [n.name for n in graph.naming]
    with stage("report"):
        every = located(graph.found, graph.naming, graph.params)
        junctions = [every[i] for i in chosen]
    if parallel is not None:
        tick = time.perf_counter()
        with stage("reduce"):
            measured = reduce(measured, parallel, params, junctions, device)
        timings["reduce"] = time.perf_counter() - tick
    timings["total"] = time.perf_counter() - started + timings.get("load", 0.0)
    with stage("report"):
        model_info = ModelInfo(source, source_format, parts.parameter_count())
        probe_info = ProbeInfo(
            inputs=tuple(
                InputInfo(tuple(t.shape), str(t.dtype).replace("torch.", "")) for t in graph.probe.tensors()
            ),
            loss=str(graph.loss_kind),
            mode=str(graph.mode),
            seed=seed,
            device=str(device),
            autocast=None if precision is None else str(precision).replace("torch.", ""),
            ranks=1 if parallel is None else parallel.size,
            shard=None if parallel is None else parallel.kind,
        )
        parameters = [(param_names.get(id(p), f"<param {k}>"), p.numel()) for k, p in enumerate(params)]
        gates = _Gates([graph.found[i] for i in chosen], graph.params, params, device)
        return _reports(
            stops, measured, junctions, names, parameters, thresholds, model_info, probe_info, notes,
            graph, gates, timings,
        )


def _reports(
    stops: Sequence[Variant], measured: Sequence[Measured], junctions: Sequence[Located],
    names: Sequence[str], parameters: Sequence[tuple[str, int]], thresholds: Thresholds,
    model_info: ModelInfo, probe_info: ProbeInfo, notes: tuple[str, ...], graph: _Graph,
    gates: _Gates, timings: dict[str, float],
) -> list[Report]:
    return [
        build_report(
            junctions,
            values,
            parameters,
            thresholds=thresholds,
            model=model_info,
            probe=probe_info,
            stop_gradient=StopGradient(
                tuple(names[i] for i in sorted(stop.stop_skip)),
                tuple(names[i] for i in sorted(stop.stop_block)),
            ),
            notes=notes,
            found=len(graph.found),
            used=graph.used,
            gates=gates.of(dead_positions(junctions, values, thresholds), values),
            timings=timings,
            gradflow_version=__version__,
            torch_version=torch.__version__,
        )
        for stop, values in zip(stops, measured)
    ]


class _Gates:
    """The gates of the measured junctions whose numbers say dead (see gradflow.engine.gates),
    for `build_report`. A parameter's magnitude is read only when its gradient is nonzero and
    finite (the others cannot hold a block closed on purpose), and once per measurement."""

    def __init__(self, found: Sequence[FoundJunction], in_graph: Sequence[torch.Tensor],
                 params: Sequence[torch.Tensor], device: torch.device) -> None:
        """`in_graph`: the trainable parameters as the graph holds them; `params`: the same as the
        model holds them (FSDP2's shards), whose values are read."""
        self.found, self.params, self.device = found, params, device
        self.index_of = {id(p): i for i, p in enumerate(in_graph)}
        self.magnitudes: dict[int, float] = {}

    def of(self, dead: Sequence[int], measured: Measured) -> dict[int, list[tuple[int, float]]]:
        norms = measured.param_norms
        candidates = {
            k: [i for i in gate_candidates(self.found[k], self.index_of)
                if norms[i] is not None and norms[i] != 0 and math.isfinite(norms[i])]  # type: ignore[arg-type]
            for k in dead
        }
        unread = sorted({i for found in candidates.values() for i in found} - set(self.magnitudes))
        values = largest_magnitudes([self.params[i] for i in unread], self.device)
        self.magnitudes.update(zip(unread, values))
        return {k: [(i, self.magnitudes[i]) for i in found] for k, found in candidates.items()}


@dataclass(frozen=True)
class _Asked:
    """What `measure` was asked for, as the passes below need it."""

    variants: tuple[VariantSpec, ...]
    mode: Mode
    seed: int
    loss: LossChoice
    precision: torch.dtype | None
    at: Sequence[str] | None
    only: Sequence[str] | None
    max_junctions: int | None


class _Outcome(NamedTuple):
    graph: _Graph  # the (first) forward pass's
    stops: list[Variant]
    chosen: list[int]  # the measured junctions
    notes: tuple[str, ...]
    measured: list[Measured]  # one per variant


def _measure_here(
    model: torch.nn.Module, inputs: Any, asked: _Asked, parts: Inventory, timings: dict[str, float]
) -> _Outcome:
    """One forward pass, and one backward pass per variant over its graph (`torch.autograd.grad`,
    which leaves every `.grad` as it was)."""
    device = parts.device()
    params = parts.trainable
    with _autocast(asked.precision, device):
        graph = _forward_and_find(model, inputs, asked.mode, asked.seed, asked.loss, parts, timings)
    stops, chosen, notes = _plan(graph, asked)
    with stage("junctions"):
        fork_leaves = input_forks(graph.found)
        wrt = params + needed_inputs(graph.found, graph.leaves, params, fork_leaves)
    measured: list[Measured] = []
    tick = time.perf_counter()
    assert graph.output is not None
    stopped = {i for v in stops for i in (*v.stop_skip, *v.stop_block)}
    with stage("context"):
        context = contexts_of(graph.found, chosen, params)
    with stage("taps"):
        names = [n.name for n in graph.naming]
        memory = replays_of(model)
        plain = [i for i in chosen if i not in stopped and i not in context and names[i] not in memory.hooked]
        if device.type == "cpu":  # where junctions are captured (`capturable`)
            closed = nearly_closed([graph.found[i] for i in plain], device)
            memory.hooked.update(names[i] for i, shut in zip(plain, closed) if shut)
            plain = [i for i, shut in zip(plain, closed) if not shut]
        captured = capturable(graph.found, plain, budget(device), device)
        with Taps(graph.found, graph.output, fork_leaves, chosen, stops, captured, context) as taps:
            graph.output = None  # the output's hook lives on the graph: do not keep the tensor
            for k, variant in enumerate(stops):
                with _backward_errors():
                    retain = k < len(stops) - 1
                    measured.append(taps.run(variant, graph.loss, wrt, params, retain_graph=retain))
        memory.hooked.update(names[i] for i in taps.captured.exact)
    timings["backward"] = time.perf_counter() - tick
    return _Outcome(graph, stops, chosen, notes, measured)


def _measure_parallel(
    parallel: DataParallel, inputs: Any, asked: _Asked, parts: Inventory, timings: dict[str, float]
) -> _Outcome:
    """One forward and one real backward pass per variant, through the wrapper, so that it
    reduces the parameter gradients as in training (DDP's all-reduce, FSDP2's reduce-scatter);
    they are read from `.grad`, which is put back after (`grads_set_aside`). A wrapper's backward
    pass runs once per forward pass (FSDP2 frees what it gathered), hence one forward pass per
    variant; each is seeded alike, so each builds the same graph. The numbers are this rank's:
    `gradflow.engine.reduce` makes them global."""
    device = parts.device()
    params = parts.trainable
    measured: list[Measured] = []
    first: _Outcome | None = None
    backward = 0.0
    with grads_set_aside(params):
        for k in range(len(asked.variants)):
            with _autocast(asked.precision, device):
                graph = _forward_and_find(
                    parallel.wrapper, inputs, asked.mode, asked.seed, asked.loss, parts, timings, parallel
                )
            if first is None:
                first = _Outcome(graph, *_plan(graph, asked), measured)
            variant = first.stops[k]
            assert graph.output is not None
            tick = time.perf_counter()
            context = contexts_of(graph.found, first.chosen, graph.params)
            forks = input_forks(graph.found)
            with Taps(graph.found, graph.output, forks, first.chosen, [variant], (), context) as taps:
                graph.output = None
                taps.arm(variant)
                with _backward_errors():
                    graph.loss.backward()
                measured.append(taps.collect(parallel.local_grads(params), params, graph.loss))
            for param in params:
                param.grad = None
            backward += time.perf_counter() - tick
    timings["backward"] = backward
    assert first is not None
    return first


def _plan(graph: _Graph, asked: _Asked) -> tuple[list[Variant], list[int], tuple[str, ...]]:
    """The variants' stops, the junctions measured and the report's notes, from the graph."""
    names = [n.name for n in graph.naming]
    with stage("select"):
        stops = [_resolve(v, names, asked.at) for v in asked.variants]
        chosen = _measured(names, asked.only, asked.max_junctions)
    with stage("notes"):
        notes = (
            graph.notes
            + subset_note(len(chosen), len(names), asked.only, asked.max_junctions)
            + path_notes([graph.found[i] for i in chosen], [names[i] for i in chosen])
        )
    return stops, chosen, notes


@contextmanager
def _backward_errors() -> Iterator[None]:
    try:
        yield
    except GradflowError:
        raise
    except Exception as e:
        raise ModelError(f"the backward pass failed: {type(e).__name__}: {first_line(e)}") from e


def _measured(names: Sequence[str], only: Sequence[str] | None, limit: int | None) -> list[int]:
    chosen = select(only, names) if only else list(range(len(names)))
    if limit is not None and 0 < limit < len(chosen):
        step = (len(chosen) - 1) / (limit - 1) if limit > 1 else 0.0
        chosen = sorted({chosen[round(i * step)] for i in range(limit)})
    return chosen


def _precision(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """The dtype a low-precision probe runs torch.autocast with; None for float32 or None."""
    if dtype is None:
        return None
    resolved = dtype if isinstance(dtype, torch.dtype) else parse_dtype(str(dtype))
    if resolved == torch.float32:
        return None
    if resolved not in (torch.bfloat16, torch.float16):
        raise OptionError(f"--dtype {dtype} is not a probe precision: use float32, bfloat16 or float16")
    return resolved


def _autocast(precision: torch.dtype | None, device: torch.device) -> Any:
    """torch.autocast with `precision` (see _precision); a no-op for None."""
    import contextlib

    if precision is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision)


def locate(
    model: torch.nn.Module, inputs: Any, *, mode: Mode | str = Mode.EVAL, seed: int = 0
) -> list[Located]:
    """Find the junctions of `model` from one forward pass, without a backward pass."""
    model, _ = eager(model)
    parts = Inventory.of(model)
    with collector_paused(), preserved(model, parts.devices, parts):
        graph = _forward_and_find(model, inputs, Mode(mode), seed, Loss.SUM, parts, {})
    return located(graph.found, graph.naming, graph.params)


def located(
    found: Sequence[FoundJunction], naming: Sequence[Naming], params: Sequence[torch.Tensor]
) -> list[Located]:
    """The junctions as the report describes them: names, paths, the positions of each block's
    parameters in `params`, and the junction each is nested in."""
    index_of = {id(p): i for i, p in enumerate(params)}
    names = [n.name for n in naming]
    return [
        Located(
            index=i,
            name=n.name,
            module=n.module,
            location=n.location,
            skip=j.skip,
            block_modules=n.block_modules,
            skip_modules=n.skip_modules,
            params=sum(p.numel() for p in j.params[BLOCK]),
            block_params=tuple(index_of[id(p)] for p in j.params[BLOCK] if id(p) in index_of),
            cut=None if j.cut is None else ("skip" if j.cut == SKIP else "block"),
            nested_in=None if j.nested_in is None else names[j.nested_in],
        )
        for i, (j, n) in enumerate(zip(found, naming))
    ]


@dataclass
class _Graph:
    probe: Probe
    leaves: list[torch.Tensor]
    output: torch.Tensor | None
    loss: torch.Tensor
    loss_kind: Loss | str
    found: list[FoundJunction]
    naming: list[Naming]
    mode: Mode
    notes: tuple[str, ...] = ()
    used: list[bool] | None = None  # per trainable parameter: whether the forward pass used it
    params: list[torch.Tensor] = field(default_factory=list)  # the trainable ones, as the graph holds them


def _forward_and_find(
    model: torch.nn.Module,
    inputs: Any,
    mode: Mode,
    seed: int,
    loss: LossChoice,
    parts: Inventory,
    timings: dict[str, float],
    parallel: DataParallel | None = None,
) -> _Graph:
    """The probe's forward pass (recording add sites) and the junctions in the graph it built.
    Under a data-parallel wrapper, `model` is the wrapper and `parts` the model inside it."""
    with stage("recorder"):
        probe, leaves = detached_inputs(as_probe(inputs).to(parts.device()))
    # A wrapper's own mode is not the model's: only the modules the state guard restores change.
    inner = model if parallel is None else parallel.module
    with stage("state"):
        mode, notes = _set_mode(inner, mode, parts)
        seed_generators(seed, parts.devices)
    tick = time.perf_counter()
    with stage("recorder"):
        with ForwardRecorder(model, parts.modules) as recorder:
            output = _forward(model, recorder.probe_inputs(probe))
        chosen = select_output(output)
        probabilities = holds_probabilities(model, output, chosen)
        share = (0, 1) if parallel is None else (parallel.rank, parallel.size)
        if callable(loss):
            loss_tensor = _custom_loss(loss, output)
        else:
            loss_tensor = probe_loss(chosen, loss, seed, share, probabilities=probabilities)
    timings["forward"] = time.perf_counter() - tick
    params, names = parts.trainable, parts.parameter_names
    if parallel is not None:
        params = parallel.graph_params(params)
        names = {id(g): names[id(p)] for p, g in zip(parts.trainable, params)}
    found, naming, found_notes, used = junctions_of(
        model, loss_tensor, params, leaves, recorder, names, timings, replays_of(inner)
    )
    kind: Loss | str = CUSTOM_LOSS if callable(loss) else resolve_loss(loss, chosen)
    if probabilities and kind is Loss.CE:
        notes += (PROBABILITIES_NOTE,)
    return _Graph(
        probe, leaves, chosen, loss_tensor, kind, found, naming, mode, found_notes + notes, used, list(params)
    )


def _custom_loss(loss: Callable[[Any], Any], output: Any) -> torch.Tensor:
    """The user's loss function on the model output: one floating-point element."""
    try:
        value = loss(output)
    except GradflowError:
        raise
    except Exception as e:
        raise ProbeError(f"the loss function raised {type(e).__name__}: {first_line(e)}") from e
    if not isinstance(value, torch.Tensor) or value.numel() != 1 or not value.is_floating_point():
        got = f"shape {list(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise ProbeError(f"the loss function must return a floating-point tensor of one element, got {got}")
    return value.reshape(())


def junctions_of(
    model: torch.nn.Module,
    loss: torch.Tensor,
    params: Sequence[torch.Tensor],
    leaves: Sequence[torch.Tensor],
    recorder: ForwardRecorder,
    param_names: dict[int, str],
    timings: dict[str, float],
    replays: Replays | None = None,
) -> tuple[list[FoundJunction], list[Naming], tuple[str, ...], list[bool]]:
    """The junctions in the graph behind `loss`, their names, the notes on what the graph hides,
    and per parameter whether the forward pass used it (`parameters_used`); `timings["detect"]`
    gets the time of the walk and the search. With `replays`, a graph of a shape seen before is
    not searched again (`gradflow.engine.replay`). Shared by inspect and track."""
    if loss.grad_fn is None:
        raise ProbeError(
            "the loss does not depend on any trainable parameter: nothing to differentiate "
            "(are all parameters frozen, or is the output detached?)"
        )
    tick = time.perf_counter()
    adds = list(recorder.sites)
    key = None
    if replays is not None:
        with stage("replay"):
            extra = (tuple(id(p) for p in params), len(leaves))
            key = shape_key(adds, list(recorder.sites.values()), loss.grad_fn, extra)
            known = replays.find(key, adds)
        if known is not None:
            timings["detect"] = time.perf_counter() - tick
            return known.junctions, known.naming, known.notes, known.used
    with stage("junctions"):
        uses: dict[Any, int] = {}
        nodes = all_nodes([loss.grad_fn], uses)
        found = find_junctions(
            [loss.grad_fn], params, leaves, nodes=nodes, uses=uses, cuts=recorder.cuts,
            view_adds=recorder.view_adds, is_data=recorder.data_check,
        )
    timings["detect"] = time.perf_counter() - tick
    with stage("notes"):
        notes = graph_notes(nodes, params, leaves, uses)
    with stage("naming"):
        if isinstance(model, torch.jit.ScriptModule):
            _name_scripted_adds(model, nodes, recorder)
        naming = name_junctions(found, recorder, param_names)
    with stage("junctions"):
        used = parameters_used(params, recorder.read, uses)
    if replays is not None:
        with stage("replay"):
            replays.keep(key, adds, Found(found, naming, notes, used), params)
    return found, naming, notes, used


def parameters_used(
    params: Sequence[torch.Tensor], read: set[int], graph: dict[Any, int]
) -> list[bool]:
    """Per parameter: whether the forward pass used it, that is read it as a module attribute
    (`ForwardRecorder.read`) or made it a leaf of the graph behind the loss (`graph` holds that
    graph's nodes). Only parameters never read are looked up in the graph: a model run by
    TorchScript, whose attribute reads Python does not see, or one that reaches its parameters
    another way."""
    return [id(p) in read or get_gradient_edge(p).node in graph for p in params]


def _set_mode(model: torch.nn.Module, mode: Mode, parts: Inventory) -> tuple[Mode, tuple[str, ...]]:
    """Put the model in `mode`; the mode it really runs in, and a note when that is not `mode`."""
    exported = getattr(model, "exported_mode", None)
    if exported is not None:  # an ONNX graph: its nodes fix the mode, train() changes nothing
        if Mode(exported) is mode:
            return mode, ()
        return Mode(exported), (
            f"this ONNX graph runs in {exported} mode, fixed by its nodes when it was exported; "
            "--mode does not change it",
        )
    try:
        if any(m.training is not (mode is Mode.TRAIN) for m in parts.unique_modules):
            model.train(mode is Mode.TRAIN)
    except NotImplementedError:  # torch.export programs fix their mode when exported
        return mode, (
            "this torch.export program runs in the mode it was exported in; --mode does not change it",
        )
    return mode, ()


def _name_scripted_adds(model: torch.nn.Module, nodes: Sequence[Any], recorder: ForwardRecorder) -> None:
    """Give a TorchScript model's adds the module and line its graphs record, when the adds it
    ran line up one to one with those graphs (see gradflow.engine.script_sites)."""
    from gradflow.engine.script_sites import script_add_sites

    sites = script_add_sites(model)
    ran = sorted((n for n in nodes if type(n).__name__ in ADD_NODES), key=lambda n: n._sequence_nr())
    if sites is not None and len(sites) == len(ran):
        for node, site in zip(ran, sites):
            recorder.sites.setdefault(node, site)


def _resolve(spec: VariantSpec, names: Sequence[str], at: Sequence[str] | None) -> Variant:
    chosen = frozenset(select(at, names)) if (spec.sg_skip or spec.sg_block) else frozenset()
    return Variant(
        spec.name,
        stop_skip=chosen if spec.sg_skip else frozenset(),
        stop_block=chosen if spec.sg_block else frozenset(),
    )


def _forward(model: torch.nn.Module, probe: Probe) -> Any:
    try:
        return run_forward(model, probe.args, probe.kwargs)
    except GradflowError:
        raise
    except Exception as e:
        raise ProbeError(
            f"the model's forward pass failed on the probe input ({_describe(probe)}): "
            f"{type(e).__name__}: {first_line(e)}; set the input with --input-shape or --input"
        ) from e


def _describe(probe: Probe) -> str:
    parts = [f"input {i}: {_shape(t)}" for i, t in enumerate(probe.args) if isinstance(t, torch.Tensor)]
    parts += [f"{k}: {_shape(t)}" for k, t in probe.kwargs.items() if isinstance(t, torch.Tensor)]
    return ", ".join(parts) or "no tensor inputs"


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(str(s) for s in tensor.shape) + " " + str(tensor.dtype).replace("torch.", "")

