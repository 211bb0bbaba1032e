"""The result objects, and `build_report`: measured numbers in, a frozen Report out.

The Report serialises to the `gradflow/report@2` JSON schema (and reads `@1` documents);
renderers read it. `build_report` is a pure function of plain numbers and names (what the taps
measured, what the search and the naming found), shared by every driver; each junction's verdict
comes from `gradflow.engine.verdicts`. Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

from gradflow.choices import Choice
from gradflow.engine.verdicts import (
    Status,
    Thresholds,
    closing_gate,
    is_dead,
    junction_status,
    over,
    reaches_weakly,
)

if TYPE_CHECKING:
    from rich.console import RenderableType

REPORT_SCHEMA = "gradflow/report@2"
READABLE_SCHEMAS = ("gradflow/report@1", REPORT_SCHEMA)  # from_dict reads both
WARM_UP = "warm-up"  # the dormant_reason of a junction `gradflow check`'s warm-up saw open

# The per-junction numbers a user can compare, rank or gate on.
METRICS = (
    "grad_out",
    "grad_skip",
    "grad_block",
    "grad_in",
    "block_ratio",
    "cosine",
    "param_grad",
)


@dataclass(frozen=True)
class Junction:
    """One residual junction `y = skip + block` measured at its fork tensor x.

    grad_out: ||dL/dy||, the gradient arriving at the junction.
    grad_skip: ||gradient reaching x through the skip branch||.
    grad_block: ||gradient reaching x through the block branch||.
    grad_in: ||dL/dx||, every consumer of x together.
    block_ratio: grad_block / grad_skip (None when grad_skip is 0).
    cosine: cosine similarity of the skip and block contributions at x (None when either is 0).
    param_grad: ||dL/dtheta|| over the trainable parameters the block uses, each counted once.
    cut: "skip" or "block" when that operand of the add is a detached copy of the path's tensor
        (`x.detach() + f(x)`, `x + f(x).detach()`): no gradient passes it; status is then "cut".
    grad_context: ||gradient the block sends to the tensors it reads besides x and its
        parameters|| (the encoder states of a cross-attention, a position bias made by an earlier
        layer; `gradflow.engine.context`); None when it reads nothing else.
    dormant_reason: why a junction whose numbers say dead is `dormant` instead: the name of the
        gate parameter that holds its block closed (a zero-initialised norm scale or skip gain,
        a 1e-6 layer scale; see `closing_gate`), or "warm-up" (WARM_UP) when `gradflow check`
        saw the block pass gradient after a few optimizer steps. None for every other status.
    nested_in: the name of the innermost junction that holds this one: this junction's fork and
        add both lie on one of its paths, between its fork and its add (a residual inside an
        attention block, a multi-branch net's branches inside its fuse add); None for a junction
        on the stream. What reaches a nested junction is what the path holding it passes it, so
        it is `vanishing` only when nothing reaches its fork at all, and the survival is judged
        on the stream's junctions alone (`on_stream`).

    Example:
        >>> junction = gradflow.inspect(model, x).junction("layer1.0")
        >>> junction.grad_block / junction.grad_skip == junction.block_ratio
        True
    """

    index: int
    name: str
    module: str
    location: str | None
    skip: str
    block_modules: tuple[str, ...]
    skip_modules: tuple[str, ...]
    params: int
    grad_out: float | None
    grad_skip: float | None
    grad_block: float | None
    grad_in: float | None
    block_ratio: float | None
    cosine: float | None
    param_grad: float | None
    status: Status
    cut: str | None = None
    grad_context: float | None = None
    dormant_reason: str | None = None
    nested_in: str | None = None

    @property
    def context_ratio(self) -> float | None:
        """grad_context / grad_skip: what the block passes back besides the fork, against the
        skip (None without a context or a skip gradient)."""
        return over(self.grad_context, self.grad_skip)

    def metric(self, name: str) -> float | None:
        """The metric `name` (one of `METRICS`: grad_out, grad_skip, grad_block, grad_in,
        block_ratio, cosine, param_grad); KeyError for any other name."""
        if name not in METRICS:
            raise KeyError(name)
        value: float | None = getattr(self, name)
        return value


class Gradient(Choice):
    """What reached one trainable parameter in the probe's backward pass.

    UNUSED: the forward pass never used it (a layer built and never called).
    NONE: the forward pass used it, but no gradient arrives: something on the way leaves the
        autograd graph (a `.detach()`, `no_grad`, `.data`), or what it computes does not reach
        the loss (an output the loss ignores).
    ZERO: a gradient arrives and is exactly zero (its norm is 0): everything in front of it is
        zero this step (a zero-initialised gate, dead ReLUs, a bias right before a norm that
        removes the mean).
    OK: a nonzero gradient (NaN and inf included: `Summary.params_nonfinite` names those).
    """

    UNUSED = "unused"
    NONE = "none"
    ZERO = "zero"
    OK = "ok"


@dataclass(frozen=True)
class ParamGrad:
    """Gradient of one trainable parameter after the probe.

    gradient: which of unused, none, zero or ok (see Gradient). grad_norm is None when no
    gradient arrived (unused, none), and NaN or inf when the gradient is not finite (null in
    JSON; `Summary.params_nonfinite` names them); grad_value is the gradient itself for
    one-element parameters (gates, scalars), else None.
    """

    name: str
    numel: int
    gradient: Gradient
    grad_norm: float | None
    grad_value: float | None = None

    @property
    def has_grad(self) -> bool:
        """Whether a gradient arrived (zero or not)."""
        return self.gradient in (Gradient.ZERO, Gradient.OK)


@dataclass(frozen=True)
class ModelInfo:
    source: str
    format: str
    parameters: int


@dataclass(frozen=True)
class InputInfo:
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class ProbeInfo:
    """How the probe ran. autocast: the dtype the forward pass ran under torch.autocast with
    (bfloat16, float16), None for full precision; the numbers differ between the two.
    ranks: how many data-parallel ranks the batch was split over, each measuring its slice
    (`inputs` are one rank's); shard: their wrapper, "ddp" or "fsdp" (None on one process)."""

    inputs: tuple[InputInfo, ...]
    loss: str
    mode: str
    seed: int
    device: str
    autocast: str | None = None  # absent from reports written before it was recorded
    ranks: int = 1
    shard: str | None = None


@dataclass(frozen=True)
class StopGradient:
    skip: tuple[str, ...] = ()
    block: tuple[str, ...] = ()


@dataclass(frozen=True)
class Flag:
    name: str
    status: Status


@dataclass(frozen=True)
class Summary:
    """survival: grad_in at the first junction on the stream / grad_out at the last (see
    `on_stream`; None without junctions).

    The parameters by what reached them (see Gradient): params_unused (never used by the forward
    pass), params_without_grad (used, but no gradient arrives), params_zero_grad (an exactly-zero
    gradient), params_nonfinite (a NaN or inf in the gradient).
    """

    junctions: int
    loss: float | None
    grad_output: float | None
    survival: float | None
    flagged: tuple[Flag, ...]
    params_without_grad: tuple[str, ...]
    params_nonfinite: tuple[str, ...]
    params_unused: tuple[str, ...] = ()
    params_zero_grad: tuple[str, ...] = ()
    found: int = 0  # junctions in the model; `junctions` counts the ones measured
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    """Everything one probe measured. `to_dict()` is the `gradflow/report@2` JSON.

    In a notebook a Report shows the table `gradflow inspect` prints (through Rich) or its
    `--html` page; `repr` is one line.

    Attributes:
        model: where the model came from, its format and parameter count.
        probe: the probe's inputs, loss, mode, seed, device and autocast dtype.
        stop_gradient: the junctions whose skip or block path the probe stopped.
        junctions: one Junction per measured residual add, in forward order.
        parameters: the gradient of every trainable parameter.
        summary: survival, flagged junctions, parameters without gradient, notes.
        timings_s: seconds spent per phase (load, forward, backward, ...).

    Example:
        >>> report = gradflow.inspect(model, torch.randn(8, 3, 32, 32))
        >>> report
        Report(6 junctions, survival 7.49×, flagged: none)
        >>> report.junction("layer1.0").grad_block
    """

    model: ModelInfo
    probe: ProbeInfo
    stop_gradient: StopGradient
    junctions: tuple[Junction, ...]
    parameters: tuple[ParamGrad, ...]
    summary: Summary
    timings_s: dict[str, float] = field(default_factory=dict)
    gradflow_version: str = ""
    torch_version: str = ""
    warmup: Warmup | None = None  # `gradflow check`'s measurement after its warm-up, if it ran

    def __repr__(self) -> str:
        from gradflow.render.short import report_repr
        return report_repr(self)

    def __rich__(self) -> RenderableType:
        from gradflow.render.table import report_rich
        return report_rich(self)

    def _repr_html_(self) -> str:
        from gradflow.render.html import report_fragment
        return report_fragment(self)

    def junction(self, name: str) -> Junction:
        """The junction named `name`; KeyError when there is none."""
        for junction in self.junctions:
            if junction.name == name:
                return junction
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The `gradflow/report@1` JSON document (`gradflow/schemas/report.schema.json`)."""
        return {
            "schema": REPORT_SCHEMA,
            "gradflow_version": self.gradflow_version,
            "torch_version": self.torch_version,
            "model": _plain(asdict(self.model)),
            "probe": _plain(asdict(self.probe)),
            "stop_gradient": _plain(asdict(self.stop_gradient)),
            "junctions": [_plain(asdict(j)) for j in self.junctions],
            "parameters": [_plain(asdict(p)) for p in self.parameters],
            "summary": _plain(asdict(self.summary)),
            "timings_s": {k: round(v, 6) for k, v in self.timings_s.items()},
            "warmup": None if self.warmup is None else self.warmup.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Rebuild a Report from its JSON form (e.g. a baseline file): a `gradflow/report@2`
        document, or a `gradflow/report@1` one, whose parameters are read as @2 says them."""
        schema = data.get("schema")
        if schema not in READABLE_SCHEMAS:
            raise ValueError(
                f"not a {' or '.join(READABLE_SCHEMAS)} document (schema={schema!r})"
            )
        if schema != REPORT_SCHEMA:
            data = _upgraded(data)
        probe = dict(data["probe"])
        probe["inputs"] = tuple(InputInfo(tuple(i["shape"]), i["dtype"]) for i in probe["inputs"])
        summary = dict(data["summary"])
        summary["flagged"] = tuple(Flag(f["name"], Status(f["status"])) for f in summary["flagged"])
        for key in ("params_without_grad", "params_nonfinite", "params_unused", "params_zero_grad"):
            summary[key] = tuple(summary.get(key, ()))
        summary["notes"] = tuple(summary.get("notes", ()))
        summary.setdefault("found", summary["junctions"])
        return cls(
            model=ModelInfo(**data["model"]),
            probe=ProbeInfo(**probe),
            stop_gradient=StopGradient(
                tuple(data["stop_gradient"]["skip"]), tuple(data["stop_gradient"]["block"])
            ),
            junctions=tuple(_junction_from_dict(j) for j in data["junctions"]),
            parameters=tuple(
                ParamGrad(p["name"], p["numel"], Gradient(p["gradient"]), p["grad_norm"],
                          p.get("grad_value"))
                for p in data.get("parameters", [])
            ),
            summary=Summary(**summary),
            timings_s=dict(data.get("timings_s", {})),
            gradflow_version=data.get("gradflow_version", ""),
            torch_version=data.get("torch_version", ""),
            warmup=Warmup.from_dict(data["warmup"]) if data.get("warmup") else None,
        )


@dataclass(frozen=True)
class Warmup:
    """`gradflow check`'s warm-up: `steps` steps of `optimizer` at learning rate `lr` on a copy
    of the model with the probe batch (`gradflow.track.warmup`), and the Report measured after
    them with the same probe."""

    steps: int
    optimizer: str
    lr: float
    report: Report

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "optimizer": self.optimizer, "lr": self.lr,
                "report": self.report.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Warmup:
        return cls(int(data["steps"]), str(data["optimizer"]), float(data["lr"]),
                   Report.from_dict(data["report"]))


def _upgraded(data: dict[str, Any]) -> dict[str, Any]:
    """A `gradflow/report@1` document in the words of @2. @1 had one `has_grad` flag, and its
    `params_without_grad` held both the parameters that got no gradient and those whose gradient
    was exactly zero; @1 could not tell an unused parameter from one cut off, so both read as
    `none`."""
    parameters = []
    for p in data.get("parameters", []):
        if not p["has_grad"]:
            gradient = Gradient.NONE
        else:
            gradient = Gradient.ZERO if p["grad_norm"] == 0 else Gradient.OK
        parameters.append({k: v for k, v in p.items() if k != "has_grad"} | {"gradient": str(gradient)})
    summary = dict(data["summary"])
    if "parameters" in data:
        summary["params_without_grad"] = [p["name"] for p in parameters if p["gradient"] == "none"]
        summary["params_zero_grad"] = [p["name"] for p in parameters if p["gradient"] == "zero"]
    return data | {"parameters": parameters, "summary": summary}


def _junction_from_dict(data: dict[str, Any]) -> Junction:
    values = {f.name: data[f.name] for f in fields(Junction) if f.name in data}
    values["block_modules"] = tuple(values["block_modules"])
    values["skip_modules"] = tuple(values["skip_modules"])
    values["status"] = Status(values["status"])
    return Junction(**values)


def _plain(value: Any) -> Any:
    """JSON-ready: tuples to lists, enums to strings, non-finite floats to None."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class Located:
    """A junction as the search and the naming found it, before anything is measured: what
    `gradflow blocks` lists, and what `build_report` puts beside the measured numbers.

    params: the number of trainable elements the block uses; block_params: their positions in
    the measurement's list of trainable parameters. cut: "skip" or "block" when that operand of
    the add is a detached copy. nested_in: the name of the junction whose block holds this one.
    """

    index: int
    name: str
    module: str
    location: str | None
    skip: str
    block_modules: tuple[str, ...]
    skip_modules: tuple[str, ...]
    params: int
    block_params: tuple[int, ...] = ()
    cut: str | None = None
    nested_in: str | None = None


@dataclass(frozen=True)
class Measured:
    """Host-side numbers of one backward pass; None where a value could not be formed.

    The per-junction lists follow the measured junctions in order; `param_norms` and
    `param_values` follow the trainable parameters (None: the parameter got no gradient)."""

    grad_out: list[float]
    grad_skip: list[float]
    grad_block: list[float]
    grad_in: list[float]
    dot: list[float | None]
    param_norms: list[float | None]
    param_values: list[float | None]
    grad_output: float | None
    loss: float | None
    grad_context: list[float | None] = field(default_factory=list)  # per junction, see Junction


def build_report(
    located: Sequence[Located],
    measured: Measured,
    parameters: Sequence[tuple[str, int]],
    *,
    thresholds: Thresholds,
    model: ModelInfo,
    probe: ProbeInfo,
    stop_gradient: StopGradient = StopGradient(),
    notes: tuple[str, ...] = (),
    found: int | None = None,
    used: Sequence[bool] | None = None,
    gates: Mapping[int, Sequence[tuple[int, float]]] | None = None,
    timings: dict[str, float] | None = None,
    gradflow_version: str = "",
    torch_version: str = "",
) -> Report:
    """The Report of one backward pass.

    Args:
        located: the measured junctions, in the order of `measured`'s per-junction lists.
        measured: the numbers the taps brought to the host.
        parameters: (name, numel) of each trainable parameter, in `measured.param_norms` order.
        found: how many junctions the model has (default: as many as were measured).
        used: per parameter, whether the forward pass used it (what tells `unused` from
            `none` when no gradient arrived; default: every parameter was used).
        gates: for a junction (its position in `located`) whose numbers say dead, the
            parameters that scale its block's path (`gradflow.engine.gates`), each as (its
            position in `parameters`, max |value|); one that holds the block closed makes the
            junction `dormant` (see `closing_gate`).
    Returns:
        A frozen Report: each junction's numbers, cosine, block ratio and status, every
        parameter's gradient, and the summary.
    """
    junctions = tuple(_junction(j, measured, k, thresholds) for k, j in enumerate(located))
    if gates:
        junctions = tuple(
            _gated(j, gates.get(k, ()), parameters, measured.param_norms, thresholds)
            for k, j in enumerate(junctions)
        )
    params = tuple(
        ParamGrad(name, numel, _gradient(norm, True if used is None else used[i]), norm, value)
        for i, ((name, numel), norm, value) in enumerate(
            zip(parameters, measured.param_norms, measured.param_values)
        )
    )
    stream = on_stream(junctions)
    first, last = (stream[0], stream[-1]) if stream else (None, None)
    survival = None
    if first and last and last.grad_out and first.grad_in is not None:
        survival = first.grad_in / last.grad_out
    summary = Summary(
        junctions=len(junctions),
        loss=measured.loss,
        grad_output=measured.grad_output,
        survival=survival,
        flagged=tuple(
            Flag(j.name, j.status) for j in junctions if j.status not in (Status.OK, Status.DORMANT)
        ),
        params_without_grad=tuple(p.name for p in params if p.gradient is Gradient.NONE),
        params_nonfinite=tuple(
            p.name for p in params if p.grad_norm is not None and not math.isfinite(p.grad_norm)
        ),
        params_unused=tuple(p.name for p in params if p.gradient is Gradient.UNUSED),
        params_zero_grad=tuple(p.name for p in params if p.gradient is Gradient.ZERO),
        found=len(junctions) if found is None else found,
        notes=notes + _weak_note(junctions, thresholds),
    )
    return Report(
        model=model,
        probe=probe,
        stop_gradient=stop_gradient,
        junctions=junctions,
        parameters=params,
        summary=summary,
        timings_s=dict(timings or {}),
        gradflow_version=gradflow_version,
        torch_version=torch_version,
    )


def on_stream(junctions: Sequence[Junction]) -> tuple[Junction, ...]:
    """The junctions on the stream, in forward order: those nested in no other's block (see
    Junction.nested_in), the ones the survival is judged on. Every junction when none is on
    it (a measurement of nested junctions only, through `only`)."""
    stream = tuple(j for j in junctions if j.nested_in is None)
    return stream or tuple(junctions)


def _gated(
    junction: Junction,
    gates: Sequence[tuple[int, float]],
    parameters: Sequence[tuple[str, int]],
    param_norms: Sequence[float | None],
    thresholds: Thresholds,
) -> Junction:
    """`junction`, dormant when its block is dead and one of `gates` holds it closed."""
    if not gates or not _looks_dead(junction, thresholds):
        return junction
    candidates = [(parameters[i][0], magnitude, param_norms[i]) for i, magnitude in gates]
    gate = closing_gate(junction.block_ratio, candidates, thresholds.dead_below)
    if gate is None:
        return junction
    return replace(junction, status=Status.DORMANT, dormant_reason=gate)


def dead_positions(
    located: Sequence[Located], measured: Measured, thresholds: Thresholds
) -> list[int]:
    """The positions in `located` of the junctions whose numbers say dead: those whose gates
    `build_report` needs to see."""
    # A dead block passes back less than `dead_below` of the skip: only such junctions are built.
    skip, block, below = measured.grad_skip, measured.grad_block, thresholds.dead_below
    return [
        k for k, j in enumerate(located)
        if skip[k] > 0 and math.isfinite(skip[k]) and block[k] / skip[k] < below
        and _looks_dead(_junction(j, measured, k, thresholds), thresholds)
    ]


def _looks_dead(junction: Junction, thresholds: Thresholds) -> bool:
    """Whether the junction's block passes (almost) nothing back. A junction that is vanishing
    (the gradient reaching it is tiny, as below a gated stage) may have a dead block too: its
    status says the larger trouble, and the block is judged all the same."""
    return junction.status in (Status.DEAD, Status.VANISHING) and is_dead(
        junction.block_ratio, junction.context_ratio, thresholds.dead_below
    )


def _weak_note(junctions: Sequence[Junction], thresholds: Thresholds) -> tuple[str, ...]:
    weak = [
        j.name for j in junctions
        if j.status is Status.OK
        and reaches_weakly(j.block_ratio, j.context_ratio, thresholds.dead_below)
    ]
    if not weak:
        return ()
    shown = ", ".join(weak[:5]) + (f" and {len(weak) - 5} more" if len(weak) > 5 else "")
    return (
        f"{shown}: the block passes back below {thresholds.dead_below:g} of the skip at its fork "
        "but sends gradient to what else it reads (grad_context), as a cross-attention block does "
        "at initialisation: not dead",
    )


def _gradient(norm: float | None, used: bool) -> Gradient:
    if norm is None:
        return Gradient.NONE if used else Gradient.UNUSED
    return Gradient.ZERO if norm == 0.0 else Gradient.OK


def _junction(located: Located, measured: Measured, k: int, thresholds: Thresholds) -> Junction:
    """Junction `located` from the k-th entry of each of `measured`'s per-junction lists."""
    skip, block = measured.grad_skip[k], measured.grad_block[k]
    squares = [measured.param_norms[i] for i in located.block_params]
    param_grad = math.sqrt(sum((s or 0.0) ** 2 for s in squares))
    dot = measured.dot[k]
    cosine = None
    if dot is not None and skip > 0 and block > 0 and math.isfinite(dot):
        cosine = max(-1.0, min(1.0, dot / (skip * block)))
    ratio = block / skip if skip > 0 and math.isfinite(skip) else None
    numbers = (measured.grad_out[k], skip, block, measured.grad_in[k], param_grad)
    context = measured.grad_context[k] if measured.grad_context else None
    return Junction(
        index=located.index,
        name=located.name,
        module=located.module,
        location=located.location,
        skip=located.skip,
        block_modules=located.block_modules,
        skip_modules=located.skip_modules,
        params=located.params,
        grad_out=measured.grad_out[k],
        grad_skip=skip,
        grad_block=block,
        grad_in=measured.grad_in[k],
        block_ratio=ratio,
        cosine=cosine,
        param_grad=param_grad,
        status=junction_status(
            numbers, ratio, measured.grad_output, thresholds, cut=located.cut is not None,
            context=context, nested=located.nested_in is not None,
        ),
        cut=located.cut,
        grad_context=context,
        nested_in=located.nested_in,
    )
