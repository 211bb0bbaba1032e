"""Indexing: Gather, GatherElements, GatherND, Slice, Trilu, ScatterND, ScatterElements,
TensorScatter, NonZero, Compress, OneHot."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import ints, item, normalize_axis
from gradflow.onnx.registry import Kernel, register


def _nonnegative(indices: torch.Tensor, size: int | torch.Tensor) -> torch.Tensor:
    # ONNX indices may count from the end; torch's gather/scatter take only [0, size).
    return torch.where(indices < 0, indices + size, indices)


@register("Gather", since=13)
def gather(ctx: NodeContext) -> Kernel:
    axis = ctx.attr("axis", 0)
    const = ctx.const(1)
    if const is not None and const.dim() == 0:
        i = int(const.item())
        return lambda data, _indices: data.select(axis, i)

    # Advanced indexing accepts negative indices and puts the index dims at `axis`.
    def run(data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        a = normalize_axis(axis, data.dim())
        if a == 0:
            return data[indices]
        return data[(slice(None),) * a + (indices,)]

    return run


@register("GatherElements", since=13)
def gather_elements(ctx: NodeContext) -> Kernel:
    axis = ctx.attr("axis", 0)

    def run(data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return torch.gather(data, axis, _nonnegative(indices.long(), data.shape[axis]))

    return run


@register("GatherND", since=13)
def gather_nd(ctx: NodeContext) -> Kernel:
    batch_dims = int(ctx.attr("batch_dims", 0))

    def run(data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        k = indices.shape[-1]
        batch = 1
        for d in data.shape[:batch_dims]:
            batch *= d
        flat = data.reshape(batch, *data.shape[batch_dims:])
        idx = indices.long().reshape(batch, -1, k)
        sizes = torch.tensor(flat.shape[1 : 1 + k], device=idx.device)
        idx = _nonnegative(idx, sizes)
        rows = torch.arange(batch, device=idx.device).reshape(batch, 1).expand(idx.shape[:2])
        picked = flat[(rows, *idx.unbind(-1))]
        return picked.reshape(*indices.shape[:-1], *flat.shape[1 + k :])

    return run


def _slice(
    x: torch.Tensor,
    starts: Sequence[int],
    ends: Sequence[int],
    axes: Sequence[int] | None,
    steps: Sequence[int] | None,
) -> torch.Tensor:
    rank = x.dim()
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index: list[slice] = [slice(None)] * rank
    backwards = []
    for start, end, axis, step in zip(starts, ends, axes, steps):
        a = normalize_axis(axis, rank)
        if step > 0:
            # Python slicing clamps exactly as ONNX does for positive steps.
            index[a] = slice(start, end, step)
        else:
            backwards.append((a, start, end, step))
    y = x[tuple(index)] if any(s != slice(None) for s in index) else x
    for a, start, end, step in backwards:
        # Negative steps: start clamps to [0, dim-1], end to [-1, dim-1].
        dim = y.shape[a]
        start = min(max(start + dim if start < 0 else start, 0), dim - 1)
        end = min(max(end + dim if end < 0 else end, -1), dim - 1)
        picks = torch.arange(start, end, step, device=y.device)
        y = y.index_select(a, picks)
    return y


@register("Slice", since=13)
def slice_(ctx: NodeContext) -> Kernel:
    consts = [ctx.const_ints(i) if ctx.has_input(i) else None for i in range(1, 5)]
    known = all(consts[i] is not None or not ctx.has_input(i + 1) for i in range(4))
    if known:
        starts, ends, axes, steps = consts
        return lambda x, *_: _slice(x, starts, ends, axes, steps)  # type: ignore[arg-type]

    def run(
        x: torch.Tensor,
        starts: torch.Tensor,
        ends: torch.Tensor,
        axes: torch.Tensor | None = None,
        steps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return _slice(
            x,
            ints(starts),
            ints(ends),
            None if axes is None else ints(axes),
            None if steps is None else ints(steps),
        )

    return run


@register("Trilu", since=14)
def trilu(ctx: NodeContext) -> Kernel:
    fn = torch.triu if ctx.attr("upper", 1) else torch.tril
    k_const = ctx.const_scalar(1) if ctx.has_input(1) else 0
    if k_const is not None:
        k = int(k_const)
        return lambda x, *_: fn(x, k)
    return lambda x, k: fn(x, int(item(k)))


_SCATTER_REDUCE = {"mul": "prod", "max": "amax", "min": "amin"}


@register("ScatterND", since=13)
def scatter_nd(ctx: NodeContext) -> Kernel:
    reduction = ctx.attr("reduction", "none")
    if reduction not in ("none", "add", *_SCATTER_REDUCE):
        raise ctx.unsupported(f"ScatterND reduction='{reduction}'")
    if reduction in ("none", "add"):
        accumulate = reduction == "add"

        def put(data: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
            return data.index_put(tuple(indices.long().unbind(-1)), updates, accumulate=accumulate)

        return put

    # The other reductions scatter along the flattened indexed dims.
    def reduce(data: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        k = indices.shape[-1]
        sizes = torch.tensor(data.shape[:k], device=data.device)
        idx = _nonnegative(indices.long(), sizes).reshape(-1, k)
        strides = torch.ones(k, dtype=torch.long, device=data.device)
        for i in range(k - 2, -1, -1):
            strides[i] = strides[i + 1] * data.shape[i + 1]
        rows = (idx * strides).sum(-1)
        flat = data.reshape(-1, *data.shape[k:])
        values = updates.reshape(-1, *data.shape[k:])
        index = rows.reshape(-1, *[1] * (flat.dim() - 1)).expand(values.shape)
        out = torch.scatter_reduce(flat, 0, index, values, _SCATTER_REDUCE[reduction])
        return out.reshape(data.shape)

    return reduce


@register("ScatterElements", since=13)
def scatter_elements(ctx: NodeContext) -> Kernel:
    axis = ctx.attr("axis", 0)
    reduction = ctx.attr("reduction", "none")

    def run(data: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        idx = _nonnegative(indices.long(), data.shape[axis])
        if reduction == "none":
            return torch.scatter(data, axis, idx, updates)
        if reduction == "add":
            return torch.scatter_add(data, axis, idx, updates)
        return torch.scatter_reduce(data, axis, idx, updates, _SCATTER_REDUCE[reduction])

    if reduction not in ("none", "add", *_SCATTER_REDUCE):
        raise ctx.unsupported(f"ScatterElements reduction='{reduction}'")
    return run


@register("NonZero", since=13)
def nonzero(ctx: NodeContext) -> Kernel:
    return lambda x: torch.nonzero(x).t()


@register("TensorScatter", since=24)
def tensor_scatter(ctx: NodeContext) -> Kernel:
    # A cache update: each batch entry b writes `update` along `axis` from write_indices[b]
    # (0 when absent), wrapping around the cache length in circular mode.
    axis = int(ctx.attr("axis", -2))
    circular = ctx.attr("mode", "linear") == "circular"

    def run(
        cache: torch.Tensor, update: torch.Tensor, write: torch.Tensor | None = None
    ) -> torch.Tensor:
        a = normalize_axis(axis, cache.dim())
        steps = torch.arange(update.shape[a], device=cache.device)
        start = torch.zeros(cache.shape[0], dtype=torch.long, device=cache.device)
        if write is not None:
            start = write.long().reshape(-1)
        shape = [1] * cache.dim()
        shape[0] = cache.shape[0]
        position = start.reshape(shape) + steps.reshape([-1 if d == a else 1 for d in range(cache.dim())])
        if circular:
            position = position % cache.shape[a]
        return torch.scatter(cache, a, position.expand(update.shape), update)

    return run


@register("Compress", since=13)
def compress(ctx: NodeContext) -> Kernel:
    # The slices whose condition is true, along `axis` (of the flattened input when absent); a
    # short condition leaves the remaining slices out.
    axis = ctx.attr("axis")

    def run(x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        data = x.reshape(-1) if axis is None else x
        a = 0 if axis is None else normalize_axis(axis, x.dim())
        picked = torch.nonzero(condition.reshape(-1)).reshape(-1)
        return data.index_select(a, picked[picked < data.shape[a]])

    return run


@register("OneHot", since=13)
def one_hot(ctx: NodeContext) -> Kernel:
    # A new axis of `depth` entries: on_value where it equals the index (negative indices count
    # from the end; out-of-range ones match nothing), off_value elsewhere.
    axis = int(ctx.attr("axis", -1))

    def run(indices: torch.Tensor, depth: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        n = int(item(depth))
        a = normalize_axis(axis, indices.dim() + 1)
        index = indices.to(torch.int64) if indices.is_floating_point() else indices.long()
        index = torch.where(index < 0, index + n, index).unsqueeze(a)
        shape = [1] * (indices.dim() + 1)
        shape[a] = n
        hot = torch.arange(n, device=indices.device).reshape(shape) == index
        off, on = values[0], values[1]
        return torch.where(hot, on, off)

    return run
