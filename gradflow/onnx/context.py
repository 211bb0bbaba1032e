"""What a kernel factory knows about its node at load time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from gradflow.onnx.registry import NotSupported


@dataclass(frozen=True)
class ValueInfo:
    """One input or output of a node, as known before running.

    `present` is False for an absent optional value; `const` holds the value when it is known
    at load time (a Constant node, a non-trainable initializer, or a folded subgraph); `dtype`
    and `rank` come from ONNX shape inference and may be None.
    """

    present: bool
    const: torch.Tensor | None = None
    dtype: torch.dtype | None = None
    rank: int | None = None
    used: bool = True


@dataclass(frozen=True)
class NodeContext:
    """A node as seen by its kernel factory.

    `module` is the module scope recorded by the exporter, or the node name when there is none;
    for an add, the name its junction takes (see `gradflow.onnx.add_names`).
    `subgraphs` holds the node's graph attributes compiled into callables (see
    `gradflow.onnx.subgraph.Subgraph`); their kernels receive, after the node's inputs, the
    values of `implicit`, the enclosing graph's tensors the subgraphs read.
    """

    name: str
    op_type: str
    domain: str
    opset: int
    module: str
    attrs: Mapping[str, Any]
    inputs: tuple[ValueInfo, ...]
    outputs: tuple[ValueInfo, ...]
    subgraphs: Mapping[str, Any] = field(default_factory=dict)
    implicit: tuple[str, ...] = ()

    def attr(self, name: str, default: Any = None) -> Any:
        """The attribute's value (schema default applied), or `default` when unset."""
        return self.attrs.get(name, default)

    def has_input(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i].present

    def const(self, i: int) -> torch.Tensor | None:
        """Input `i` when it is a load-time constant, else None."""
        return self.inputs[i].const if i < len(self.inputs) else None

    def const_ints(self, i: int) -> tuple[int, ...] | None:
        """Input `i` as a tuple of ints when it is a load-time constant, else None."""
        value = self.const(i)
        return None if value is None else tuple(int(v) for v in value.reshape(-1).tolist())

    def const_scalar(self, i: int) -> int | float | bool | None:
        """Input `i` as a Python number when it is a one-element load-time constant."""
        value = self.const(i)
        if value is None or value.numel() != 1:
            return None
        return value.reshape(()).item()

    def is_const(self, i: int) -> bool:
        return self.const(i) is not None

    def input_rank(self, i: int) -> int | None:
        return self.inputs[i].rank if i < len(self.inputs) else None

    def input_dtype(self, i: int) -> torch.dtype | None:
        return self.inputs[i].dtype if i < len(self.inputs) else None

    def output_used(self, i: int) -> bool:
        return i < len(self.outputs) and self.outputs[i].used

    @property
    def n_outputs(self) -> int:
        return len(self.outputs)

    def subgraph(self, name: str) -> Any:
        """The compiled graph attribute `name`.

        Raises:
            NotSupported: the node has no such graph attribute.
        """
        if name not in self.subgraphs:
            raise NotSupported(f"missing graph attribute '{name}'")
        return self.subgraphs[name]

    def unsupported(self, feature: str) -> NotSupported:
        """An error for a feature of this node the executor lacks (raise it)."""
        return NotSupported(feature)
