"""The result objects: frozen dataclasses that serialise to the `gradflow/report@1` JSON schema.

Measurement builds a Report; renderers read it. Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any

from gradflow.choices import Choice

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
    """Verdict on one junction, most severe first."""

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
    """Everything one probe measured. `to_dict()` is the `gradflow/report@1` JSON."""

    model: ModelInfo
    probe: ProbeInfo
    stop_gradient: StopGradient
    junctions: tuple[Junction, ...]
    parameters: tuple[ParamGrad, ...]
    summary: Summary
    timings_s: dict[str, float] = field(default_factory=dict)
    gradflow_version: str = ""
    torch_version: str = ""

    def junction(self, name: str) -> Junction:
        for junction in self.junctions:
            if junction.name == name:
                return junction
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
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
