"""Junction outputs replaced by their block operand, `y = f(x)`, on a forward pass: the add
interception behind `track`'s no-residual arm.

Adds are numbered in the order a forward pass makes them: every call of the six ways eager code
adds tensors (those `gradflow.engine.recorder` wraps) with grad enabled and an operand that
requires grad. A forward pass under `adds_numbered` notes each numbered add's autograd node, so
the junctions found on its graph map to numbers; a later pass of the same model under
`blocks_only` gets, at each of those numbers, the block operand instead of the sum. The numbering
is the same on every pass of a model whose forward adds in the same order (control flow that
depends on the data does not). The original methods are back on exit, whatever happens.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from gradflow.engine.recorder import _ADD_METHODS, _IN_PLACE, _operands

# (number, the original method, in place?, args, kwargs) -> the add's result
Each = Callable[[int, Any, bool, tuple[Any, ...], dict[str, Any]], Any]


@contextmanager
def _adds_intercepted(each: Each) -> Iterator[None]:
    """Route every numbered add through `each(number, original, in_place, args, kwargs)`."""
    count = [0]

    def wrap(original: Any, in_place: bool) -> Any:
        @functools.wraps(original)
        def add(*args: Any, **kwargs: Any) -> Any:
            pair = _operands(args, kwargs)
            live = pair is not None and (pair[0].requires_grad or pair[1].requires_grad)
            if not live or not torch.is_grad_enabled():
                return original(*args, **kwargs)
            number = count[0]
            count[0] += 1
            return each(number, original, in_place, args, kwargs)

        return add

    own = {name: torch.Tensor.__dict__[name] for name in _ADD_METHODS if name in torch.Tensor.__dict__}
    current = {name: getattr(torch.Tensor, name) for name in _ADD_METHODS}
    torch_add = torch.add
    try:
        for name in _ADD_METHODS:
            setattr(torch.Tensor, name, wrap(current[name], name in _IN_PLACE))
        torch.add = wrap(torch_add, in_place=False)
        yield
    finally:
        torch.add = torch_add
        for name in _ADD_METHODS:
            if name in own:
                setattr(torch.Tensor, name, own[name])
            else:
                delattr(torch.Tensor, name)


@contextmanager
def adds_numbered(nodes: list[Any]) -> Iterator[None]:
    """Append the autograd node of each numbered add's result to `nodes`, in order."""

    def each(number: int, original: Any, in_place: bool, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Any:
        result = original(*args, **kwargs)
        nodes.append(result.grad_fn if isinstance(result, torch.Tensor) else None)
        return result

    with _adds_intercepted(each):
        yield


@contextmanager
def blocks_only(replaced: dict[int, int]) -> Iterator[None]:
    """At each add number in `replaced`, the block operand (0 or 1, autograd's operand order)
    instead of the sum: `y = f(x)`. An in-place add into the skip writes the block into it; an
    in-place add into the block leaves it as it is."""

    def each(number: int, original: Any, in_place: bool, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Any:
        block = replaced.get(number)
        if block is None:
            return original(*args, **kwargs)
        pair = _operands(args, kwargs)
        assert pair is not None  # numbered adds have two tensor operands
        if not in_place:
            return pair[block]
        if block == 0:
            return pair[0]
        return pair[0].copy_(pair[1])

    with _adds_intercepted(each):
        yield
