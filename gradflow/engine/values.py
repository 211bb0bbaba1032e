"""Which tensors carry the probe's data: a junction's fork must be part of the data stream.

An add whose operands share an ancestor is not a residual when that ancestor is computed from
parameters alone: a relative position bias that one layer makes and every later layer adds to
its attention scores feeds both operands, yet no input flows through it. The autograd graph
alone cannot tell such a tensor from the data stream (an embedding of token ids also has only a
weight as its autograd leaf), so data-ness is decided by value dependence: the probe's inputs,
integer ids included, are data, and an operation's output is data if any operand is. Sizes, and
`arange` built from a shape, are not.

Each probe input reaches the model as a `ProbeData` tensor (a floating-point input's autograd
node is a *data root*), whose `__torch_function__` keeps every result that autograd does not
record (integer results, a mask made from ids, what runs on the input under `torch.no_grad()`) a
`ProbeData`, and notes the autograd node of a result that autograd records (an embedding lookup)
as a data root; such a result is a plain tensor. A tensor autograd records is data when its graph
reaches a data root (`DataCheck`); the recorder makes the detached copy of such a tensor a
`ProbeData` too. So only operations on `ProbeData` tensors pay a Python call; the rest of the
forward pass pays nothing. A tensor computed under `torch.no_grad()` from a plain tensor (past the
model's first recorded operation) is not known to be data.

Value tracking applies to modules that run their operations through torch's Python API. A
TorchScript module or a torch.export program runs them elsewhere: for those, `DataCheck` is not
built and every fork counts as data, as it did before tracking existed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch

_roots: ContextVar[set[Any] | None] = ContextVar("gradflow_data_roots", default=None)


class ProbeData(torch.Tensor):
    """A probe input, or a tensor computed from one that autograd does not record: data."""

    @classmethod
    def __torch_function__(
        cls, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        with torch._C.DisableTorchFunctionSubclass():
            result = func(*args, **(kwargs or {}))
        operands = {id(a) for a in (*args, *(kwargs or {}).values()) if isinstance(a, torch.Tensor)}
        return _handed_on(result, _roots.get(), operands)


def _handed_on(value: Any, roots: set[Any] | None, operands: set[int]) -> Any:
    """`value` as the model gets it: a tensor autograd records is handed on as it is, its node a
    data root (a new result is a plain tensor); a new tensor autograd does not record becomes a
    ProbeData (an operand an in-place operation returns keeps its class: it may be the model's
    own buffer). Containers are rebuilt; anything else passes as it is."""
    if isinstance(value, torch.Tensor):
        node = value.grad_fn
        if node is not None:
            if roots is not None:
                roots.add(node)
        elif id(value) not in operands:
            mark(value)
        return value
    if type(value) is tuple or type(value) is list:
        return type(value)(_handed_on(v, roots, operands) for v in value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # torch.return_types, namedtuples
        return type(value)(*(_handed_on(v, roots, operands) for v in value))
    return value


def mark(tensor: torch.Tensor) -> torch.Tensor:
    """Make `tensor`, a copy gradflow made or a new result, a ProbeData in place: its class
    changes, nothing else (an alias would be a view, and an in-place add into it a CopySlices)."""
    if type(tensor) is torch.Tensor:
        tensor.__class__ = ProbeData
    return tensor


@contextmanager
def roots_recorded(roots: set[Any]) -> Iterator[None]:
    """Add to `roots` the data roots of the operations run inside the block (this context only)."""
    token = _roots.set(roots)
    try:
        yield
    finally:
        _roots.reset(token)


class DataCheck:
    """Whether an autograd node's tensor is data: its graph reaches a data root (`roots`, a set
    the forward pass may still be adding to). Answers are remembered: a node's graph is complete
    once the node exists, so its answer never changes. Forks asked in forward order mostly stop at
    the previous junction's add, which is known to be data."""

    def __init__(self, roots: set[Any]) -> None:
        self.roots = roots
        self.data: set[Any] = set()
        self.not_data: set[Any] = set()

    def __call__(self, node: Any) -> bool:
        if node in self.data or node in self.roots:
            return True
        if node in self.not_data:
            return False
        seen = {node}
        stack = [node]
        while stack:
            current = stack.pop()
            if current in self.data or current in self.roots:
                self.data.add(node)
                return True
            for child, _ in current.next_functions:
                if child is not None and child not in seen and child not in self.not_data:
                    seen.add(child)
                    stack.append(child)
        self.not_data.update(seen)
        return False

    def known(self, node: Any) -> None:
        """`node` is data (the add of a junction whose fork is data)."""
        self.data.add(node)
