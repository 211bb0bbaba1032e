"""Reductions: ReduceMean/Sum/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare, ArgMax, ArgMin,
CumSum, CumProd.

Before opset 18 only ReduceSum took its axes as an input; the others took an `axes` attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import ints, item, normalize_axis
from gradflow.onnx.registry import Kernel, register

Reducer = Callable[[torch.Tensor, tuple[int, ...], bool], torch.Tensor]


def _prod(x: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
    for d in sorted((normalize_axis(d, x.dim()) for d in dims), reverse=True):
        x = torch.prod(x, d, keepdim=keep)
    return x


def _extreme(largest: bool) -> Reducer:
    # Over an empty set the maximum is the lowest value of the type (-inf, False), the minimum
    # the highest, as for an empty reduction in ONNX; torch refuses empty dims.
    reduce = torch.amax if largest else torch.amin

    def run(x: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
        if all(x.shape[d] for d in dims):
            return reduce(x, dims, keepdim=keep)
        reduced = {normalize_axis(d, x.dim()) for d in dims}
        shape = [1 if d in reduced else s for d, s in enumerate(x.shape) if keep or d not in reduced]
        if x.dtype == torch.bool:
            fill: float | bool = not largest
        elif x.is_floating_point():
            fill = float("-inf") if largest else float("inf")
        else:
            info = torch.iinfo(x.dtype)
            fill = info.min if largest else info.max
        return torch.full(shape, fill, dtype=x.dtype, device=x.device)

    return run


_REDUCERS: dict[str, Reducer] = {
    "ReduceMean": lambda x, d, k: torch.mean(x, d, keepdim=k),
    "ReduceSum": lambda x, d, k: torch.sum(x, d, keepdim=k),
    "ReduceMax": _extreme(largest=True),
    "ReduceMin": _extreme(largest=False),
    "ReduceProd": _prod,
    "ReduceL1": lambda x, d, k: torch.sum(torch.abs(x), d, keepdim=k),
    "ReduceL2": lambda x, d, k: torch.linalg.vector_norm(x, 2, d, keepdim=k),
    "ReduceLogSum": lambda x, d, k: torch.log(torch.sum(x, d, keepdim=k)),
    "ReduceLogSumExp": lambda x, d, k: torch.logsumexp(x, d, keepdim=k),
    "ReduceSumSquare": lambda x, d, k: torch.sum(x * x, d, keepdim=k),
}


def _reduce_kernel(
    reducer: Reducer, keep: bool, noop_if_empty: bool
) -> Callable[[torch.Tensor, Sequence[int] | None], torch.Tensor]:
    def apply(x: torch.Tensor, axes: Sequence[int] | None) -> torch.Tensor:
        if not axes:
            if noop_if_empty:
                return x
            # No axes: reduce everything (an explicit tuple, since torch reads () as "all"
            # for some reductions and as "none" for others).
            axes = range(x.dim())
        return reducer(x, tuple(axes), keep)

    return apply


def _axes_attribute(reducer: Reducer) -> Callable[[NodeContext], Kernel]:
    def factory(ctx: NodeContext) -> Kernel:
        apply = _reduce_kernel(reducer, bool(ctx.attr("keepdims", 1)), False)
        axes = list(ctx.attr("axes") or ())
        return lambda x: apply(x, axes)

    return factory


def _axes_input(reducer: Reducer) -> Callable[[NodeContext], Kernel]:
    def factory(ctx: NodeContext) -> Kernel:
        keep = bool(ctx.attr("keepdims", 1))
        noop = bool(ctx.attr("noop_with_empty_axes", 0))
        apply = _reduce_kernel(reducer, keep, noop)
        axes = ctx.const_ints(1) if ctx.has_input(1) else ()
        if axes is not None:
            fixed = list(axes)
            return lambda x, *_: apply(x, fixed)
        return lambda x, axes: apply(x, ints(axes))

    return factory


for _op_type, _reducer in _REDUCERS.items():
    if _op_type == "ReduceSum":
        register(_op_type, since=13)(_axes_input(_reducer))
    else:
        register(_op_type, since=13, until=17)(_axes_attribute(_reducer))
        register(_op_type, since=18)(_axes_input(_reducer))


def _arg(fn: Callable[..., torch.Tensor]) -> Callable[[NodeContext], Kernel]:
    def factory(ctx: NodeContext) -> Kernel:
        axis = ctx.attr("axis", 0)
        keep = bool(ctx.attr("keepdims", 1))
        last = bool(ctx.attr("select_last_index", 0))

        def run(x: torch.Tensor) -> torch.Tensor:
            if not last:
                return fn(x, axis, keepdim=keep)
            # Ties go to the last index: search the flipped tensor and map back.
            a = normalize_axis(axis, x.dim())
            flipped = fn(torch.flip(x, (a,)), a, keepdim=keep)
            return x.shape[a] - 1 - flipped

        return run

    return factory


register("ArgMax", since=13)(_arg(torch.argmax))
register("ArgMin", since=13)(_arg(torch.argmin))


def _cumulative(product: bool) -> Callable[[NodeContext], Kernel]:
    def factory(ctx: NodeContext) -> Kernel:
        exclusive = bool(ctx.attr("exclusive", 0))
        reverse = bool(ctx.attr("reverse", 0))
        op = torch.cumprod if product else torch.cumsum

        def run(x: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
            a = normalize_axis(int(item(axis)), x.dim())
            if reverse:
                x = torch.flip(x, (a,))
            if exclusive and x.shape[a]:
                # Shift by one: the first element is the operation's identity.
                identity = torch.ones_like if product else torch.zeros_like
                x = torch.cat([identity(x.narrow(a, 0, 1)), x.narrow(a, 0, x.shape[a] - 1)], a)
            y = op(x, a, dtype=x.dtype)  # integer inputs keep their type
            return torch.flip(y, (a,)) if reverse else y

        return run

    return factory


register("CumSum", since=13)(_cumulative(product=False))
register("CumProd", since=26)(_cumulative(product=True))
