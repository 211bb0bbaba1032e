"""The verb: a model and its probe inputs in, a Report out.

Data flows one way: probe -> forward (recording add sites) -> junctions from the autograd graph
-> hooks -> one backward per variant -> Reports. The model comes back exactly as it was.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from gradflow._version import __version__
from gradflow.choices import Loss, Mode
from gradflow.errors import GradflowError, ModelError, OptionError, ProbeError, first_line
from gradflow.graph import (
    ADD_NODES,
    BLOCK,
    SKIP,
    FoundJunction,
    all_nodes,
    find_junctions,
    input_forks,
    needed_inputs,
)
from gradflow.hooks import Measured, Taps, Variant, preserved, seed_generators
from gradflow.inventory import Inventory, eager
from gradflow.naming import junction_names
from gradflow.notes import graph_notes, path_notes, subset_note
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
from gradflow.recorder import ForwardRecorder, run_forward
from gradflow.report import (
    Flag,
    InputInfo,
    Junction,
    ModelInfo,
    ParamGrad,
    ProbeInfo,
    Report,
    Status,
    StopGradient,
    Summary,
    Thresholds,
)
from gradflow.select import select


@dataclass(frozen=True)
class VariantSpec:
    """A backward pass to measure: the baseline, or stop-gradient on skips and/or blocks."""

    name: str = "baseline"
    sg_skip: bool = False
    sg_block: bool = False


BASELINE = VariantSpec()


def inspect(
    model: torch.nn.Module,
    inputs: Any,
    *,
    loss: Loss | str = Loss.AUTO,
    mode: Mode | str = Mode.TRAIN,
    seed: int = 0,
    sg_skip: bool = False,
    sg_block: bool = False,
    at: Sequence[str] | None = None,
    thresholds: Thresholds | None = None,
    source: str = "<module>",
    source_format: str = "module",
) -> Report:
    """Measure the gradient on the skip and block path of every residual junction.

    Args:
        model: any nn.Module; it comes back untouched (parameters, buffers, grads, mode, hooks).
        inputs: a tensor, a tuple of positional arguments, or a dict of keyword arguments.
        loss: "auto" | "sum" | "mean" | "mse" | "ce" (see `gradflow.probe.probe_loss`).
        mode: "train" or "eval" for the probe's forward pass. An ONNX graph runs in the mode its
            nodes fix (`OnnxModel.exported_mode`); the report says that mode, with a note.
        seed: seeds dropout and the `ce` labels, so runs repeat exactly.
        sg_skip / sg_block: stop the gradient on the skip / block path of the selected junctions.
        at: junction names (globs), indices or ranges the stop-gradient applies to (default all).
        thresholds: when a junction is flagged vanishing, exploding or dead.
    Returns:
        A Report, one Junction per residual add in forward order.

    Example:
        >>> report = gradflow.inspect(model, torch.randn(8, 3, 32, 32))
        >>> [j.name for j in report.junctions if j.status != "ok"]
    """
    name = "-".join(n for n, on in (("sg-skip", sg_skip), ("sg-block", sg_block)) if on)
    variant = VariantSpec(name or "baseline", sg_skip, sg_block)
    return measure(
        model,
        inputs,
        [variant],
        loss=loss,
        mode=mode,
        seed=seed,
        at=at,
        thresholds=thresholds,
        source=source,
        source_format=source_format,
    )[0]


def measure(
    model: torch.nn.Module,
    inputs: Any,
    variants: Sequence[VariantSpec] = (BASELINE,),
    *,
    loss: Loss | str = Loss.AUTO,
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

    Args:
        variants: the backward passes to make (see VariantSpec); the forward pass is shared.
        at: the junctions a stop-gradient applies to (names, globs, indices, ranges).
        only: measure only these junctions (same patterns); the others cost nothing.
        max_junctions: measure at most this many, evenly spread over depth.
        dtype: run the probe under torch.autocast with this dtype (bfloat16, float16);
            norms are accumulated in float32 whatever the dtype.
    """
    thresholds = thresholds or Thresholds()
    mode = Mode(mode)
    started = time.perf_counter()
    model, compiled = eager(model)
    timings = dict(timings or {})
    parts = Inventory.of(model)
    device = parts.device()
    params = parts.trainable
    param_names = parts.parameter_names
    precision = _precision(dtype)
    with collector_paused(), preserved(model, parts.devices, parts):
        with _autocast(precision, device):
            graph = _forward_and_find(model, inputs, mode, seed, loss, parts, timings)
        names = [n.name for n in graph.naming]
        stops = [_resolve(v, names, at) for v in variants]
        chosen = _measured(names, only, max_junctions)
        notes = (
            compiled
            + graph.notes
            + subset_note(len(chosen), len(names), only, max_junctions)
            + path_notes([graph.found[i] for i in chosen], [names[i] for i in chosen])
        )
        fork_leaves = input_forks(graph.found)
        wrt = params + needed_inputs(graph.found, graph.leaves, params, fork_leaves)
        measured: list[Measured] = []
        tick = time.perf_counter()
        assert graph.output is not None
        with Taps(graph.found, graph.output, fork_leaves, chosen) as taps:
            graph.output = None  # the output's hook lives on the graph: do not keep the tensor
            for k, variant in enumerate(stops):
                try:
                    measured.append(
                        taps.run(variant, graph.loss, wrt, params, retain_graph=k < len(stops) - 1)
                    )
                except GradflowError:
                    raise
                except Exception as e:
                    raise ModelError(f"the backward pass failed: {type(e).__name__}: {first_line(e)}") from e
        timings["backward"] = time.perf_counter() - tick
    timings["total"] = time.perf_counter() - started + timings.get("load", 0.0)
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
    )
    return [
        _report(
            graph.found,
            graph.naming,
            chosen,
            stop,
            values,
            params,
            param_names,
            thresholds,
            model_info,
            probe_info,
            timings,
            notes,
        )
        for stop, values in zip(stops, measured)
    ]


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused for one measurement, and back as it was after.

    A measurement creates many short-lived Python objects (graph walks, hooks, the report) while
    the model, its autograd graph and their wrappers are alive, so the collector's periodic passes
    kept traversing all of them: on a model of 1,000 blocks they took 40 % of an `inspect`.
    Reference counting still frees everything that is not in a cycle at once; cycles wait for
    the collector's next pass after the measurement."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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


@dataclass(frozen=True)
class Located:
    """A junction found by a forward pass alone (no gradient measured): `gradflow blocks`."""

    index: int
    name: str
    module: str
    location: str | None
    skip: str
    block_modules: tuple[str, ...]
    skip_modules: tuple[str, ...]
    params: int


def locate(
    model: torch.nn.Module, inputs: Any, *, mode: Mode | str = Mode.EVAL, seed: int = 0
) -> list[Located]:
    """Find the junctions of `model` from one forward pass, without a backward pass."""
    model, _ = eager(model)
    parts = Inventory.of(model)
    with collector_paused(), preserved(model, parts.devices, parts):
        graph = _forward_and_find(model, inputs, Mode(mode), seed, Loss.SUM, parts, {})
    return [
        Located(
            i,
            n.name,
            n.module,
            n.location,
            j.skip,
            n.block_modules,
            n.skip_modules,
            sum(p.numel() for p in j.params[BLOCK]),
        )
        for i, (j, n) in enumerate(zip(graph.found, graph.naming))
    ]


@dataclass
class _Graph:
    probe: Probe
    leaves: list[torch.Tensor]
    output: torch.Tensor | None
    loss: torch.Tensor
    loss_kind: Loss
    found: list[FoundJunction]
    naming: list[_Naming]
    mode: Mode
    notes: tuple[str, ...] = ()


def _forward_and_find(
    model: torch.nn.Module,
    inputs: Any,
    mode: Mode,
    seed: int,
    loss: Loss | str,
    parts: Inventory,
    timings: dict[str, float],
) -> _Graph:
    """The probe's forward pass (recording add sites) and the junctions in the graph it built."""
    params = parts.trainable
    probe, leaves = detached_inputs(as_probe(inputs).to(parts.device()))
    mode, notes = _set_mode(model, mode, parts)
    seed_generators(seed, parts.devices)
    tick = time.perf_counter()
    with ForwardRecorder(model, parts.modules) as recorder:
        output = _forward(model, probe)
    chosen = select_output(output)
    probabilities = holds_probabilities(model, output, chosen)
    loss_tensor = probe_loss(chosen, loss, seed, probabilities=probabilities)
    timings["forward"] = time.perf_counter() - tick
    found, naming, found_notes = junctions_of(
        model, loss_tensor, params, leaves, recorder, parts.parameter_names, timings
    )
    kind = resolve_loss(loss, chosen)
    if probabilities and kind is Loss.CE:
        notes += (PROBABILITIES_NOTE,)
    return _Graph(probe, leaves, chosen, loss_tensor, kind, found, naming, mode, found_notes + notes)


def junctions_of(
    model: torch.nn.Module,
    loss: torch.Tensor,
    params: Sequence[torch.Tensor],
    leaves: Sequence[torch.Tensor],
    recorder: ForwardRecorder,
    param_names: dict[int, str],
    timings: dict[str, float],
) -> tuple[list[FoundJunction], list[_Naming], tuple[str, ...]]:
    """The junctions in the graph behind `loss`, their names, and the notes on what the graph
    hides; `timings["detect"]` gets the time of the walk and the search. Shared by inspect and
    track."""
    if loss.grad_fn is None:
        raise ProbeError(
            "the loss does not depend on any trainable parameter: nothing to differentiate "
            "(are all parameters frozen, or is the output detached?)"
        )
    tick = time.perf_counter()
    uses: dict[Any, int] = {}
    nodes = all_nodes([loss.grad_fn], uses)
    found = find_junctions([loss.grad_fn], params, leaves, nodes=nodes, uses=uses, cuts=recorder.cuts)
    timings["detect"] = time.perf_counter() - tick
    notes = graph_notes(nodes, recorder.sites, params, leaves, uses)
    if isinstance(model, torch.jit.ScriptModule):
        _name_scripted_adds(model, nodes, recorder)
    return found, _names(found, recorder, param_names), notes


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
    ran line up one to one with those graphs (see gradflow.script_sites)."""
    from gradflow.script_sites import script_add_sites

    sites = script_add_sites(model)
    ran = sorted((n for n in nodes if type(n).__name__ in ADD_NODES), key=lambda n: n._sequence_nr())
    if sites is not None and len(sites) == len(ran):
        for node, site in zip(ran, sites):
            recorder.sites.setdefault(node, site)


@dataclass(frozen=True)
class _Naming:
    name: str
    module: str
    location: str | None
    block_modules: tuple[str, ...]
    skip_modules: tuple[str, ...]


def _names(
    found: Sequence[FoundJunction], recorder: ForwardRecorder, param_names: dict[int, str]
) -> list[_Naming]:
    """Name junctions after the innermost module that ran the add, with #k where one runs several.

    An add that no wrapper saw (one inside torch's own code, such as the mask an attention kernel
    adds) is named after the innermost module holding every module its branches pass through."""
    sites = [recorder.sites.get(junction.add) for junction in found]
    branches = [
        (_branch_modules(j, BLOCK, recorder, param_names), _branch_modules(j, SKIP, recorder, param_names))
        for j in found
    ]
    modules = [
        site.module if site else _enclosing(block + skip) for site, (block, skip) in zip(sites, branches)
    ]
    return [
        _Naming(name, module, site.location if site else None, block, skip)
        for site, (block, skip), module, name in zip(sites, branches, modules, junction_names(modules))
    ]


def _enclosing(modules: Sequence[str]) -> str:
    """The innermost module that holds all of `modules` (dotted names); "" for the root."""
    parents = [name.rpartition(".")[0].split(".") for name in modules if name]
    if not parents:
        return ""
    common = parents[0]
    for parts in parents[1:]:
        n = 0
        while n < min(len(common), len(parts)) and common[n] == parts[n]:
            n += 1
        common = common[:n]
    return ".".join(common)


def _branch_modules(
    junction: FoundJunction, side: int, recorder: ForwardRecorder, param_names: dict[int, str]
) -> tuple[str, ...]:
    """The outermost modules a branch passes through, in forward order."""
    listed: list[str] = []
    for node in sorted(junction.nodes[side], key=lambda n: n._sequence_nr()):
        for name in reversed(recorder.module_outputs.get(node, [])):
            if name and name not in listed:
                listed.append(name)
    for param in junction.params[side]:
        owner = param_names.get(id(param), "").rpartition(".")[0]
        if owner and owner not in listed:
            listed.append(owner)
    return tuple(n for n in listed if not any(n.startswith(m + ".") for m in listed if m != n))


def _resolve(spec: VariantSpec, names: Sequence[str], at: Sequence[str] | None) -> Variant:
    chosen = frozenset(select(at, names)) if (spec.sg_skip or spec.sg_block) else frozenset()
    return Variant(
        spec.name,
        stop_skip=chosen if spec.sg_skip else frozenset(),
        stop_block=chosen if spec.sg_block else frozenset(),
    )


def _report(
    found: Sequence[FoundJunction],
    naming: Sequence[_Naming],
    chosen: Sequence[int],
    variant: Variant,
    values: Measured,
    params: Sequence[torch.Tensor],
    param_names: dict[int, str],
    thresholds: Thresholds,
    model_info: ModelInfo,
    probe_info: ProbeInfo,
    timings: dict[str, float],
    notes: tuple[str, ...],
) -> Report:
    index_of = {id(p): i for i, p in enumerate(params)}
    junctions = []
    for k, i in enumerate(chosen):
        fj, nm = found[i], naming[i]
        skip, block = values.grad_skip[k], values.grad_block[k]
        squares = [values.param_norms[index_of[id(p)]] for p in fj.params[BLOCK]]
        param_grad = math.sqrt(sum((s or 0.0) ** 2 for s in squares))
        dot = values.dot[k]
        cosine = None
        if dot is not None and skip > 0 and block > 0 and math.isfinite(dot):
            cosine = max(-1.0, min(1.0, dot / (skip * block)))
        ratio = block / skip if skip > 0 and math.isfinite(skip) else None
        numbers = (values.grad_out[k], skip, block, values.grad_in[k], param_grad)
        junction = Junction(
            index=i,
            name=nm.name,
            module=nm.module,
            location=nm.location,
            skip=fj.skip,
            block_modules=nm.block_modules,
            skip_modules=nm.skip_modules,
            params=sum(p.numel() for p in fj.params[BLOCK]),
            grad_out=values.grad_out[k],
            grad_skip=skip,
            grad_block=block,
            grad_in=values.grad_in[k],
            block_ratio=ratio,
            cosine=cosine,
            param_grad=param_grad,
            status=_status(numbers, ratio, values.grad_output, thresholds, cut=fj.cut is not None),
            cut=None if fj.cut is None else ("skip" if fj.cut == SKIP else "block"),
        )
        junctions.append(junction)
    parameters = tuple(
        ParamGrad(
            param_names.get(id(p), f"<param {k}>"),
            p.numel(),
            values.param_norms[k] is not None,
            values.param_norms[k],
            values.param_values[k],
        )
        for k, p in enumerate(params)
    )
    first, last = (junctions[0], junctions[-1]) if junctions else (None, None)
    survival = None
    if first and last and last.grad_out and first.grad_in is not None:
        survival = first.grad_in / last.grad_out
    summary = Summary(
        junctions=len(junctions),
        loss=values.loss,
        grad_output=values.grad_output,
        survival=survival,
        flagged=tuple(Flag(j.name, j.status) for j in junctions if j.status is not Status.OK),
        params_without_grad=tuple(p.name for p in parameters if not p.has_grad or p.grad_norm == 0.0),
        params_nonfinite=tuple(
            p.name for p in parameters if p.grad_norm is not None and not math.isfinite(p.grad_norm)
        ),
        found=len(found),
        notes=notes,
    )
    names = [n.name for n in naming]
    return Report(
        model=model_info,
        probe=probe_info,
        stop_gradient=StopGradient(
            tuple(names[i] for i in sorted(variant.stop_skip)),
            tuple(names[i] for i in sorted(variant.stop_block)),
        ),
        junctions=tuple(junctions),
        parameters=parameters,
        summary=summary,
        timings_s=dict(timings),
        gradflow_version=__version__,
        torch_version=torch.__version__,
    )


def _status(
    numbers: tuple[float | None, ...],
    block_ratio: float | None,
    grad_output: float | None,
    t: Thresholds,
    cut: bool = False,
) -> Status:
    """The verdict on a junction from (grad_out, grad_skip, grad_block, grad_in, param_grad), and
    whether one of its paths is cut (a detached copy), which outranks every verdict but nonfinite."""
    if any(v is None or not math.isfinite(v) for v in numbers):
        return Status.NONFINITE
    if cut:
        return Status.CUT
    grad_out, _, _, grad_in, _ = numbers
    assert grad_in is not None and grad_out is not None
    if grad_output and math.isfinite(grad_output):
        if max(grad_in, grad_out) / grad_output > t.exploding_above:
            return Status.EXPLODING
        if grad_in / grad_output < t.vanishing_below:
            return Status.VANISHING
    if block_ratio is not None and block_ratio < t.dead_below:
        return Status.DEAD
    return Status.OK


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

