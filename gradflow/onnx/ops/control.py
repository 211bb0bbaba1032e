"""Control flow: If, Loop, Scan. Their subgraphs run as compiled callables (see
`gradflow.onnx.subgraph`), so autograd records every iteration like straight-line code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import item, normalize_axis
from gradflow.onnx.prepare import BATCHED_SCAN_DOMAIN
from gradflow.onnx.registry import Kernel, register


def _result(ctx: NodeContext, values: list[Any]) -> Any:
    return values[0] if ctx.n_outputs == 1 else tuple(values)


@register("If", since=13)
def if_(ctx: NodeContext) -> Kernel:
    then_branch = ctx.subgraph("then_branch")
    else_branch = ctx.subgraph("else_branch")

    def run(condition: torch.Tensor, *outer: torch.Tensor) -> Any:
        branch = then_branch if bool(item(condition)) else else_branch
        return _result(ctx, branch(*outer))

    return run


@register("Loop", since=13)
def loop(ctx: NodeContext) -> Kernel:
    # Inputs: the trip count M, the condition, the loop-carried values. The body takes
    # (iteration, condition, carried...) and returns (condition, carried..., scanned...); the node
    # returns the last carried values and each scanned value stacked over the iterations.
    body = ctx.subgraph("body")
    n_carried = len(ctx.inputs) - 2
    n_scanned = ctx.n_outputs - n_carried

    def run(
        trips: torch.Tensor | None, condition: torch.Tensor | None, *rest: torch.Tensor
    ) -> Any:
        carried, outer = list(rest[:n_carried]), rest[n_carried:]
        limit = None if trips is None else int(item(trips))
        going = True if condition is None else bool(item(condition))
        scanned: list[list[torch.Tensor]] = [[] for _ in range(n_scanned)]
        i = 0
        while going and (limit is None or i < limit):
            outs = body(torch.tensor(i, dtype=torch.int64), torch.tensor(going), *carried, *outer)
            going = bool(item(outs[0]))
            carried = outs[1 : 1 + n_carried]
            for k, value in enumerate(outs[1 + n_carried :]):
                scanned[k].append(value)
            i += 1
        stacked = [torch.stack(values) if values else torch.zeros(0) for values in scanned]
        return _result(ctx, [*carried, *stacked])

    return run


@register("Scan", since=13)
def scan(ctx: NodeContext) -> Kernel:
    # Inputs: N initial states, then M scanned tensors. The body takes (states..., one slice of
    # each scanned tensor...) and returns (states..., K slices); the node returns the final
    # states and the K slices stacked, along their axes and in their directions.
    body = ctx.subgraph("body")
    m = int(ctx.attr("num_scan_inputs"))
    n = len(ctx.inputs) - m
    k = ctx.n_outputs - n
    in_axes = list(ctx.attr("scan_input_axes") or [0] * m)
    in_reverse = [bool(d) for d in (ctx.attr("scan_input_directions") or [0] * m)]
    out_axes = list(ctx.attr("scan_output_axes") or [0] * k)
    out_reverse = [bool(d) for d in (ctx.attr("scan_output_directions") or [0] * k)]

    def run(*args: torch.Tensor) -> Any:
        states, stacked = _scan(body, list(args[:n]), args[n : n + m], in_axes, in_reverse,
                                out_axes, out_reverse, args[n + m :])
        return _result(ctx, [*states, *stacked])

    return run


@register("Scan", since=1, domain=BATCHED_SCAN_DOMAIN)
def batched_scan(ctx: NodeContext) -> Kernel:
    # Scan before opset 9: inputs are sequence_lens (optional), N initial states and M scanned
    # tensors, all with a leading batch dimension; each batch entry scans its first
    # sequence_lens[b] steps (time is axis 1), its scanned outputs padded with zeros.
    body = ctx.subgraph("body")
    m = int(ctx.attr("num_scan_inputs"))
    n = len(ctx.inputs) - 1 - m
    k = ctx.n_outputs - n
    reverse = [bool(d) for d in (ctx.attr("directions") or [0] * m)]

    def run(lengths: torch.Tensor | None, *args: torch.Tensor) -> Any:
        outer = args[n + m :]
        finals, scanned = [], []
        for b in range(args[n].shape[0]):
            steps = args[n].shape[1] if lengths is None else int(lengths[b])
            sequences = [x[b, :steps] for x in args[n : n + m]]
            states, stacked = _scan(body, [s[b] for s in args[:n]], sequences, [0] * m, reverse,
                                    [0] * k, [False] * k, outer)
            finals.append(states)
            scanned.append(stacked)
        longest = max((s[0].shape[0] for s in scanned if s), default=0)
        padded = [
            torch.stack([F.pad(s[j], (0, 0) * (s[j].dim() - 1) + (0, longest - s[j].shape[0]))
                         for s in scanned])
            for j in range(k)
        ]
        return _result(ctx, [*[torch.stack([f[i] for f in finals]) for i in range(n)], *padded])

    return run


def _scan(
    body: Any, states: list[torch.Tensor], sequences: Sequence[torch.Tensor], in_axes: list[int],
    in_reverse: list[bool], out_axes: list[int], out_reverse: list[bool],
    outer: Sequence[torch.Tensor],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The final states and the stacked scanned outputs of running `body` along `sequences`."""
    axes = [normalize_axis(a, x.dim()) for a, x in zip(in_axes, sequences)]
    length = sequences[0].shape[axes[0]]
    slices: list[list[torch.Tensor]] = [[] for _ in out_axes]
    for t in range(length):
        elements = [
            x.select(a, length - 1 - t if rev else t)
            for x, a, rev in zip(sequences, axes, in_reverse)
        ]
        outs = body(*states, *elements, *outer)
        states = outs[: len(states)]
        for j, value in enumerate(outs[len(states) :]):
            slices[j].append(value)
    stacked = []
    for values, axis, rev in zip(slices, out_axes, out_reverse):
        if rev:
            values = values[::-1]
        stacked.append(torch.stack(values, normalize_axis(axis, values[0].dim() + 1)))
    return states, stacked
