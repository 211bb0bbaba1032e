"""The operator registry: which kernel factory implements an ONNX operator at an opset.

Ops register by decorator, one module per op family under `gradflow.onnx.ops`:

    @register("Relu", since=13)
    def relu(ctx: NodeContext) -> Kernel:
        return torch.relu

A factory runs once per node at load time (parse attributes, specialise on constant inputs) and
returns the kernel that runs on every forward: it takes the node's inputs positionally (None for
an absent optional input) and returns a tensor, or a tuple with one entry per declared output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

import onnx

from gradflow.registry import Registry

if TYPE_CHECKING:
    from gradflow.onnx.context import NodeContext

Kernel = Callable[..., Any]
KernelFactory = Callable[["NodeContext"], Kernel]
# Says whether a node computes with training semantics (batch statistics, dropping): the mode an
# ONNX graph runs in is fixed by its nodes, not by nn.Module.train().
TrainsPredicate = Callable[["NodeContext"], bool]

# The newest operator versions whose semantics these kernels were written against. A schema
# introduced later may change semantics, so nodes resolving to it are reported unsupported.
REVIEWED_OPSET = 28

_STANDARD = ("", "ai.onnx")


class OpKey(NamedTuple):
    """An operator implementation: `op_type` in `domain` for opsets `since`..`until` (inclusive;
    None = every later opset)."""

    domain: str
    op_type: str
    since: int
    until: int | None = None

    def covers(self, opset: int) -> bool:
        return self.since <= opset and (self.until is None or opset <= self.until)

    def __str__(self) -> str:
        domain = f"{self.domain}." if self.domain else ""
        upper = "" if self.until is None else str(self.until)
        return f"{domain}{self.op_type}[opset {self.since}..{upper}]"


def passthrough(x: Any) -> Any:
    """The identity kernel. A factory returns this function itself to say "output 0 is input 0";
    the planner then aliases the two tensors instead of calling anything."""
    return x


PASSTHROUGH: Kernel = passthrough


class NotSupported(Exception):
    """Raised by a kernel factory at load time: the node uses a feature the executor lacks."""


class UnknownOp(LookupError):
    """No registered implementation covers the requested operator and opset."""


@dataclass(frozen=True)
class OpDef:
    """A registered implementation. `deterministic` ops may be evaluated once at load time when
    all their inputs are constants; `trains`, for ops whose semantics depend on train or eval
    mode, says whether a node runs in training mode."""

    key: OpKey
    factory: KernelFactory
    deterministic: bool = True
    trains: TrainsPredicate | None = None


class OpRegistry:
    """Operator implementations keyed by `OpKey` (in a `gradflow.registry.Registry`); ranges of
    one operator never overlap, so an operator at an opset has at most one implementation."""

    def __init__(self) -> None:
        self._ops: Registry[OpKey, OpDef] = Registry("operator", error=UnknownOp)
        self._versions: dict[tuple[str, str], list[OpDef]] = {}  # each operator's ranges

    def register(
        self,
        op_type: str,
        since: int,
        until: int | None = None,
        *,
        domain: str = "",
        deterministic: bool = True,
        trains: TrainsPredicate | None = None,
    ) -> Callable[[KernelFactory], KernelFactory]:
        """Decorator registering a kernel factory for `op_type` at opsets `since`..`until`.

        Raises:
            ValueError: the range overlaps one already registered for the same operator.
        """
        key = OpKey(_normal_domain(domain), op_type, since, until)

        def decorate(factory: KernelFactory) -> KernelFactory:
            versions = self._versions.setdefault((key.domain, key.op_type), [])
            for other in versions:
                if _overlap(key, other.key):
                    raise ValueError(f"duplicate operator registration: {key} overlaps {other.key}")
            versions.append(self._ops.add(key, OpDef(key, factory, deterministic, trains)))
            return factory

        return decorate

    def find(self, domain: str, op_type: str, opset: int) -> OpDef | None:
        """The implementation of `op_type` for a model importing `domain` at `opset`, or None."""
        domain = _normal_domain(domain)
        for op in self._versions.get((domain, op_type), ()):
            if op.key.covers(opset):
                if domain == "" and _schema_version(op_type, opset) > REVIEWED_OPSET:
                    return None
                return op
        return None

    def lookup(self, domain: str, op_type: str, opset: int) -> OpDef:
        """Like `find`, but a miss raises `UnknownOp` naming the key and the opset ranges
        registered for the operator."""
        op = self.find(domain, op_type, opset)
        if op is None:
            domain = _normal_domain(domain)
            versions = self._versions.get((domain, op_type), ())
            raise self._ops.missing(OpKey(domain, op_type, opset, opset), [o.key for o in versions],
                                    known_as=f"the ranges registered for {op_type}")
        return op

    def __iter__(self) -> Iterator[OpDef]:
        return self._ops.values()


def _normal_domain(domain: str) -> str:
    return "" if domain in _STANDARD else domain


def _overlap(a: OpKey, b: OpKey) -> bool:
    a_until = a.until if a.until is not None else 1 << 30
    b_until = b.until if b.until is not None else 1 << 30
    return a.since <= b_until and b.since <= a_until


@cache
def _schema_version(op_type: str, opset: int) -> int:
    try:
        return int(onnx.defs.get_schema(op_type, opset, "").since_version)
    except onnx.defs.SchemaError:
        return opset


REGISTRY = OpRegistry()
register = REGISTRY.register
