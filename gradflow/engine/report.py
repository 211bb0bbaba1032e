"""The result objects, and `build_report`: measured numbers in, a frozen Report out.

The Report serialises to the `gradflow/report@1` JSON schema; renderers read it. `build_report`
is a pure function of plain numbers and names (what the taps measured, what the search and the
naming found), shared by every driver. Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import TYPE_CHECKING, Any

from gradflow.choices import Choice

if TYPE_CHECKING:
    from rich.console import RenderableType

REPORT_SCHEMA = "gradflow/report@1"

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


class Status(Choice):
    """Verdict on one junction, most severe first. A Status equals its string value.

    Example:
        >>> [j.name for j in report.junctions if j.status is not Status.OK]
        >>> report.junctions[0].status == "ok"
        True
    """

    NONFINITE = "nonfinite"
    CUT = "cut"
    EXPLODING = "exploding"
    VANISHING = "vanishing"
    DEAD = "dead"
    OK = "ok"


@dataclass(frozen=True)
class Thresholds:
    """When a junction is flagged. Ratios are taken against the gradient at the model output.

    vanishing: grad_in / grad_output below `vanishing_below`.
    exploding: grad_in or grad_out / grad_output above `exploding_above`.
    dead: block_ratio (grad_block / grad_skip) below `dead_below`.

    Example:
        >>> gradflow.inspect(model, x, thresholds=Thresholds(dead_below=1e-2))
    """

    vanishing_below: float = 1e-3
    exploding_above: float = 1e3
    dead_below: float = 1e-3


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

    def metric(self, name: str) -> float | None:
        """The metric `name` (one of `METRICS`: grad_out, grad_skip, grad_block, grad_in,
        block_ratio, cosine, param_grad); KeyError for any other name."""
        if name not in METRICS:
            raise KeyError(name)
        value: float | None = getattr(self, name)
        return value


@dataclass(frozen=True)
class ParamGrad:
    """Gradient of one trainable parameter after the probe.

    grad_norm is None when the parameter got no gradient (has_grad is False), and NaN or inf
    when the gradient is not finite (null in JSON; `Summary.params_nonfinite` names them);
    grad_value is the gradient itself for one-element parameters (gates, scalars), else None.
    """

    name: str
    numel: int
    has_grad: bool
    grad_norm: float | None
    grad_value: float | None = None


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
    (bfloat16, float16), None for full precision; the numbers differ between the two."""

    inputs: tuple[InputInfo, ...]
    loss: str
    mode: str
    seed: int
    device: str
    autocast: str | None = None  # absent from reports written before it was recorded


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
    """survival: grad_in at the first junction / grad_out at the last (None without junctions)."""

    junctions: int
    loss: float | None
    grad_output: float | None
    survival: float | None
    flagged: tuple[Flag, ...]
    params_without_grad: tuple[str, ...]
    params_nonfinite: tuple[str, ...]
    found: int = 0  # junctions in the model; `junctions` counts the ones measured
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    """Everything one probe measured. `to_dict()` is the `gradflow/report@1` JSON.

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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Rebuild a Report from its JSON form (e.g. a baseline file)."""
        if data.get("schema") != REPORT_SCHEMA:
            raise ValueError(f"not a {REPORT_SCHEMA} document (schema={data.get('schema')!r})")
        probe = dict(data["probe"])
        probe["inputs"] = tuple(InputInfo(tuple(i["shape"]), i["dtype"]) for i in probe["inputs"])
        summary = dict(data["summary"])
        summary["flagged"] = tuple(Flag(f["name"], Status(f["status"])) for f in summary["flagged"])
        summary["params_without_grad"] = tuple(summary["params_without_grad"])
        summary["params_nonfinite"] = tuple(summary["params_nonfinite"])
        summary["notes"] = tuple(summary.get("notes", ()))
        summary.setdefault("found", summary["junctions"])
        return cls(
            model=ModelInfo(**data["model"]),
            probe=ProbeInfo(**probe),
            stop_gradient=StopGradient(
                tuple(data["stop_gradient"]["skip"]), tuple(data["stop_gradient"]["block"])
            ),
            junctions=tuple(_junction_from_dict(j) for j in data["junctions"]),
            parameters=tuple(ParamGrad(**p) for p in data.get("parameters", [])),
            summary=Summary(**summary),
            timings_s=dict(data.get("timings_s", {})),
            gradflow_version=data.get("gradflow_version", ""),
            torch_version=data.get("torch_version", ""),
        )


def _junction_from_dict(data: dict[str, Any]) -> Junction:
    values = {f.name: data[f.name] for f in fields(Junction) if f.name in data or f.name != "cut"}
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
    the add is a detached copy.
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
    Returns:
        A frozen Report: each junction's numbers, cosine, block ratio and status, every
        parameter's gradient, and the summary.
    """
    junctions = tuple(_junction(j, measured, k, thresholds) for k, j in enumerate(located))
    params = tuple(
        ParamGrad(name, numel, norm is not None, norm, value)
        for (name, numel), norm, value in zip(parameters, measured.param_norms, measured.param_values)
    )
    first, last = (junctions[0], junctions[-1]) if junctions else (None, None)
    survival = None
    if first and last and last.grad_out and first.grad_in is not None:
        survival = first.grad_in / last.grad_out
    summary = Summary(
        junctions=len(junctions),
        loss=measured.loss,
        grad_output=measured.grad_output,
        survival=survival,
        flagged=tuple(Flag(j.name, j.status) for j in junctions if j.status is not Status.OK),
        params_without_grad=tuple(p.name for p in params if not p.has_grad or p.grad_norm == 0.0),
        params_nonfinite=tuple(
            p.name for p in params if p.grad_norm is not None and not math.isfinite(p.grad_norm)
        ),
        found=len(junctions) if found is None else found,
        notes=notes,
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
        status=junction_status(numbers, ratio, measured.grad_output, thresholds, cut=located.cut is not None),
        cut=located.cut,
    )


def junction_status(
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
