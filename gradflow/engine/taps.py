"""Measurement and stop-gradient hooks on the probe's autograd graph, and the model-state guard.

All hooks sit on autograd nodes of the graph the probe built, never on the user's modules, and
`Taps` removes every handle on exit. Hook state lives in small per-junction accumulators built by
named factories; the hooks hand gradients to a `NormBatch`, which takes their norms together, and
every value stays on the model's device as a 0-dim float32 tensor until `Taps._collect` moves them
all to the host in one transfer. No hook calls `.item()` or `.cpu()`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.autograd.function import BackwardCFunction
from torch.autograd.graph import GradientEdge

from gradflow.engine import norms
from gradflow.engine.context import ContextEdge
from gradflow.engine.junctions import BLOCK, SKIP, FoundJunction
from gradflow.engine.norms import NormBatch
from gradflow.engine.report import Measured
from gradflow.errors import ModelError


@dataclass(frozen=True)
class Variant:
    """One backward pass: which junctions (by index) have their skip or block stopped."""

    name: str
    stop_skip: frozenset[int] = frozenset()
    stop_block: frozenset[int] = frozenset()



class _JunctionTap:
    """One junction's numbers during one backward pass, as `NormBatch` slots.

    Contributions to the fork arrive edge by edge; once every edge of a side has reported, the
    side's sum goes to the batch for its norm. The first finished side is held only until the
    other side finishes, for the dot product that gives the cosine; then both are released.
    The gradient the block sends to each tensor of its context (`gradflow.engine.context`) is
    summed the same way over the edges into that tensor, and normed once they have all reported.
    """

    __slots__ = (
        "batch", "remaining", "partial", "known", "norm", "dot", "grad_out", "grad_in",
        "reads_left", "read_sums", "read_norms", "fork_extra",
    )

    def __init__(
        self, batch: NormBatch, expected: tuple[int, int], reads: dict[Any, int] | None = None
    ) -> None:
        self.batch = batch
        self.remaining = list(expected)
        self.partial: list[torch.Tensor | None] = [None, None]
        self.known: list[int | None] = [None, None]
        self.norm: list[int | None] = [None, None]
        self.dot: torch.Tensor | None = None
        self.grad_out: int | None = None
        self.grad_in: int | None = None
        self.reads_left: dict[Any, int] = dict(reads or {})  # context tensor -> edges to come
        self.read_sums: dict[Any, torch.Tensor] = {}
        self.read_norms: list[int] = []  # slots of the norms of what reached each context tensor
        # The skip's gradient when the skip is the view an in-place add wrote into and that view
        # is the fork itself: it reaches the fork's tensor inside the base's gradient, not through
        # the fork's node, so grad_in adds it (see `Taps._read`).
        self.fork_extra: torch.Tensor | None = None

    def contribute(self, side: int, grad: torch.Tensor | None, norm: int | None = None) -> None:
        """One edge's gradient into the fork; `norm` is its slot when already taken."""
        if grad is not None:
            held = self.partial[side]
            if held is None:
                self.partial[side], self.known[side] = grad, norm
            else:
                self.partial[side], self.known[side] = held + grad, None
        self.remaining[side] -= 1
        if self.remaining[side] == 0:
            self._complete(side)

    def _complete(self, side: int) -> None:
        mine = self.partial[side]
        known = self.known[side]
        if known is None and mine is not None:
            known = self.batch.norm(mine)
        self.norm[side] = known
        other = self.partial[1 - side]
        if self.remaining[1 - side] <= 0:
            if mine is not None and other is not None:
                self.dot = norms.dot(mine, other)
            self.partial = [None, None]

    def to_context(self, read: Any, grad: torch.Tensor | None, last: bool = False) -> None:
        """One edge's gradient from the block into the context tensor `read`; `last` closes it."""
        if grad is not None:
            held = self.read_sums.get(read)
            self.read_sums[read] = grad if held is None else held + grad
        self.reads_left[read] = 0 if last else self.reads_left[read] - 1
        if self.reads_left[read] == 0:
            whole = self.read_sums.pop(read, None)
            if whole is not None:
                self.read_norms.append(self.batch.norm(whole))

    def finish(self) -> None:
        """Close sides whose edges never reported (their nodes did not run: no gradient)."""
        for side in (SKIP, BLOCK):
            if self.remaining[side] > 0:
                self.remaining[side] = 0
                self._complete(side)
        for read, left in self.reads_left.items():
            if left > 0:
                self.to_context(read, None, last=True)
        if self.fork_extra is not None:  # the fork's node got no gradient of its own
            self.grad_in = self.batch.norm(self.fork_extra)
            self.fork_extra = None


GRAD_OUT, GRAD_IN = 0, 1  # what a read is for


@dataclass
class _NodePlan:
    """What the hooks on one autograd node do.

    The reads norm the gradients arriving at the node's outputs (grad_out of the junction whose
    add it is, grad_in of junctions forking at it), each output once: in a pre-hook, or at the
    start of the post-hook when the node has one (`read_late`). The post-hook stops operands of
    its junction and passes the gradients it sends to forks (`taps`) on; one that is the very
    tensor a read normed (an identity skip) reuses its norm. On an add whose junction has a
    shared side (see `gradflow.engine.junctions`), `through` takes that side's contribution to the fork by a
    separate backward pass from the operand to the fork.
    """

    junction: int | None = None  # index of the junction whose add this node is
    view: Any = None  # the ViewAdd of the junction whose add this node is, when it wrote into a view
    view_junction: int | None = None  # that junction's index
    taps: list[tuple[int, int, int]] = field(default_factory=list)  # (junction, side, input index)
    through: list[tuple[int, int, int]] = field(default_factory=list)  # (junction, side, operand)
    context: list[tuple[int, int, Any]] = field(default_factory=list)  # (junction, input, read)
    reads: list[tuple[int, int, int]] = field(default_factory=list)  # (junction, output nr, GRAD_*)
    stash: dict[int, tuple[torch.Tensor, int]] = field(default_factory=dict)  # id(grad) -> (grad, slot)
    read_late: bool = False  # reads done in the post-hook, from its grad_outputs


class Taps:
    """Hooks for a set of junctions; one `run` per variant over the same retained graph."""

    def __init__(
        self,
        junctions: Sequence[FoundJunction],
        output: torch.Tensor,
        fork_leaves: dict[int, torch.Tensor],
        measured: Sequence[int] | None = None,
        variants: Sequence[Variant] = (),
        captured: Sequence[int] = (),
        context: dict[int, list[ContextEdge]] | None = None,
    ) -> None:
        """Args:
        junctions: every junction of the graph; any of them can be stopped.
        output: the model output the loss is taken on (its gradient is the reference).
        fork_leaves: id(AccumulateGrad node) -> the input tensor it feeds, for input forks.
        measured: indices of the junctions to measure (default all); `run` reports these.
        variants: the passes `run` will make; only the junctions they stop get a stopping hook.
        captured: measured junctions, all `plain` and stopped by no variant, whose numbers come
            from the gradients at their fork and add, which the backward pass hands back with
            the parameters' (`Captured`), instead of from hooks.
        context: junction index -> the edges from its block to its context
            (`gradflow.engine.context.contexts_of`), for the measured junctions that have any;
            these are never captured (their context needs hooks).
        """
        self.junctions = list(junctions)
        self.measured = list(range(len(junctions))) if measured is None else list(measured)
        self.captured = Captured([self.junctions[i] for i in captured], list(captured))
        self.stoppable = {i for v in variants for i in (*v.stop_skip, *v.stop_block)}
        self.context = context or {}
        if set(self.context) & set(self.captured.indices):
            raise ValueError("a junction with a context cannot be captured: its context needs hooks")
        self.reads: dict[int, dict[Any, int]] = {  # junction -> context tensor -> edges into it
            index: _edge_counts(edges) for index, edges in self.context.items()
        }
        self.output: torch.Tensor | None = output  # released once its hook is in place
        self.device = output.device
        self.fork_leaves = fork_leaves
        self.variant = Variant("baseline")
        self.stopping = False  # whether the variant stops any path
        self.batch = NormBatch(norms.CPU_BUDGET)
        self.taps: dict[int, _JunctionTap] = {}
        self.grad_output: int | None = None
        self.handles: list[Any] = []
        self.nested = 0  # > 0 while a shared side's own backward pass runs: hooks only stop

    def __enter__(self) -> Taps:
        try:
            self._install()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _install(self) -> None:
        if any(any(self.junctions[i].separate) for i in self.measured) and not _edges_as_outputs():
            raise ModelError(
                f"a junction's path shares an operation with code outside it, which needs "
                f"torch.autograd.grad to start from a GradientEdge (torch 2.5 or later; this is "
                f"{torch.__version__}): upgrade torch, or leave that junction out with --at"
            )
        plans: dict[Any, _NodePlan] = {}
        leaf_forks: dict[int, list[int]] = {}

        def add_plan(index: int) -> _NodePlan:
            junction = self.junctions[index]
            plan = plans.setdefault(junction.add, _NodePlan())
            if junction.view is not None:
                plan.view, plan.view_junction = junction.view, index
            return plan

        for index in self.stoppable:
            add_plan(index).junction = index
        captured = set(self.captured.indices)
        for index in self.measured:
            if index in captured:
                continue
            junction = self.junctions[index]
            for side in (SKIP, BLOCK):
                if junction.cut == side:
                    continue  # a detached operand: no gradient passes that side
                if junction.separate[side]:
                    operand = junction.skip_operand if side == SKIP else junction.block_operand
                    add_plan(index).through.append((index, side, operand))
                    continue
                for edge in junction.edges[side]:
                    plans.setdefault(edge.consumer, _NodePlan()).taps.append((index, side, edge.index))
            add_plan(index).reads.append((index, 0, GRAD_OUT))
            if id(junction.fork) in self.fork_leaves:
                leaf_forks.setdefault(id(junction.fork), []).append(index)
            else:
                plans.setdefault(junction.fork, _NodePlan()).reads.append(
                    (index, junction.fork_output, GRAD_IN)
                )
            if not junction.shared[BLOCK]:  # a shared block's context comes with its `through`
                for read in self.context.get(index, ()):
                    plans.setdefault(read.consumer, _NodePlan()).context.append(
                        (index, read.index, read.read)
                    )
        for node, plan in plans.items():
            post = bool(plan.taps or plan.through or plan.context) or plan.junction is not None
            # One hook call instead of two: a node that gets a post-hook anyway reads its
            # gradients there (they are the same tensors), unless it is a Python Function, whose
            # backward may write into them.
            plan.read_late = bool(plan.reads) and post and not isinstance(node, BackwardCFunction)
            if plan.reads and not plan.read_late:
                self.handles.append(node.register_prehook(self._pre_hook(plan)))
            if post:
                self.handles.append(node.register_hook(self._node_hook(plan)))
        for key, indices in leaf_forks.items():
            self.handles.append(self.fork_leaves[key].register_hook(self._input_hook(indices)))
        assert self.output is not None
        self.handles.append(self.output.register_hook(self._output_hook()))
        self.output = None  # the hook lives on the graph; holding the output would cost memory

    # Hook factories: each closes over the plan it serves and reads the current taps.

    def _pre_hook(self, plan: _NodePlan):  # type: ignore[no-untyped-def]
        def hook(grad_outputs: tuple[torch.Tensor | None, ...]) -> None:
            if not self.nested:
                self._read(plan, grad_outputs)

        return hook

    def _read(
        self,
        plan: _NodePlan,
        grad_outputs: tuple[torch.Tensor | None, ...],
        grad_y: torch.Tensor | None = None,
    ) -> None:
        """The gradients arriving at the node's outputs: grad_out and grad_in of junctions. On the
        CopySlices node of an in-place add into a view, grad_out is `grad_y`, the view's part."""
        normed: dict[int, int] = {}
        for index, output_nr, kind in plan.reads:
            grad = grad_outputs[output_nr]
            if kind == GRAD_OUT and plan.view is not None:
                if grad_y is not None:
                    self.taps[index].grad_out = self.batch.norm(grad_y)
                continue
            if grad is None:
                continue
            extra = self.taps[index].fork_extra if kind == GRAD_IN else None
            if extra is not None:
                self.taps[index].fork_extra = None
                self.taps[index].grad_in = self.batch.norm(grad + extra)
                continue
            norm = normed.get(output_nr)
            if norm is None:
                norm = normed[output_nr] = self.batch.norm(grad)
                if plan.taps:  # the post-hook, which clears the stash, may reuse it
                    plan.stash[id(grad)] = (grad, norm)
            if kind == GRAD_OUT:
                self.taps[index].grad_out = norm
            else:
                self.taps[index].grad_in = norm

    def _node_hook(self, plan: _NodePlan):  # type: ignore[no-untyped-def]
        def hook(
            grad_inputs: tuple[torch.Tensor | None, ...], grad_outputs: tuple[torch.Tensor | None, ...]
        ) -> tuple[Any, ...] | None:
            replaced = None
            stopped: tuple[int, ...] = ()
            if plan.junction is not None and self.stopping:
                stopped = self._stopped(plan.junction)
                if stopped:
                    replaced = grad_inputs = self._stop(plan, stopped, grad_inputs)
            if self.nested:
                return replaced
            grad_y = None
            if plan.view is not None and grad_outputs[0] is not None:
                grad_y = _view_of(grad_outputs[0], plan.view)
                tap = self.taps.get(plan.view_junction)  # type: ignore[arg-type]
                if tap is not None and 0 not in stopped and self.junctions[plan.view_junction].view_is_fork:  # type: ignore[index]
                    tap.fork_extra = grad_y
            if plan.read_late:
                self._read(plan, grad_outputs, grad_y)
            for index, side, slot in plan.taps:
                grad = grad_inputs[slot]
                known = plan.stash.get(id(grad)) if grad is not None else None
                self.taps[index].contribute(side, grad, known[1] if known and known[0] is grad else None)
            plan.stash.clear()
            for index, slot, read in plan.context:
                self.taps[index].to_context(read, grad_inputs[slot])
            for index, side, operand in plan.through:
                if plan.view is not None and operand == 0:  # the view: its gradient is the add's
                    grad = None if 0 in stopped else grad_y
                else:
                    grad = grad_inputs[operand]
                reads = list(self.reads.get(index, ())) if side == BLOCK else []
                through: list[torch.Tensor | None] = [None] * (1 + len(reads))
                if grad is not None:
                    through = self._through(index, operand, grad, reads)
                self.taps[index].contribute(side, through[0])
                for read, sent in zip(reads, through[1:]):
                    self.taps[index].to_context(read, sent, last=True)
            return replaced

        return hook

    def _stopped(self, index: int) -> tuple[int, ...]:
        """The operands of junction `index`'s add that the variant stops."""
        junction = self.junctions[index]
        stopped: tuple[int, ...] = ()
        if index in self.variant.stop_skip:
            stopped += (junction.skip_operand,)
        if index in self.variant.stop_block:
            stopped += (junction.block_operand,)
        return stopped

    def _stop(
        self, plan: _NodePlan, stopped: tuple[int, ...], grad_inputs: tuple[Any, ...]
    ) -> tuple[Any, ...]:
        """Stop-gradient: the stopped operands of the add get no gradient (constants). The view an
        in-place add wrote into gets its gradient inside the base's: that part becomes zero, the
        rest of the base keeps its gradient."""
        out = []
        for i, grad in enumerate(grad_inputs):
            if i not in stopped:
                out.append(grad)
            elif plan.view is not None and i == 0 and grad is not None:
                out.append(_without_view(grad, plan.view))
            else:
                out.append(None)
        return tuple(out)

    def _through(
        self, index: int, operand: int, grad: torch.Tensor, reads: Sequence[Any] = ()
    ) -> list[torch.Tensor | None]:
        """The gradient that `grad`, arriving at operand `operand` of the junction's add, sends to
        the fork along that operand's paths alone, then what it sends to each context tensor in
        `reads`: a backward pass of its own, from the operand to the fork, over the retained
        graph. Its nodes have not run yet in the main pass (they all lie below the add), and the
        hooks only apply stop-gradients while it runs."""
        junction = self.junctions[index]
        # The view an in-place add wrote into starts where it was before the add; any other
        # operand where the add's node says (a replayed junction's recorded operands are stale).
        operands = junction.operands if junction.view is not None else junction.add.next_functions
        node, output_nr = operands[operand]
        if node is junction.fork and output_nr == junction.fork_output:
            return [grad] + [None] * len(reads)  # the operand is the fork itself: no path between
        start = GradientEdge(node, output_nr)
        targets = [GradientEdge(junction.fork, junction.fork_output)]
        targets += [GradientEdge(*read) for read in reads]
        self.nested += 1
        try:
            through = torch.autograd.grad([start], targets, [grad], retain_graph=True, allow_unused=True)
        finally:
            self.nested -= 1
        return list(through)

    def _input_hook(self, indices: list[int]):  # type: ignore[no-untyped-def]
        def hook(grad: torch.Tensor | None) -> None:
            if grad is None or self.nested:  # every path into the input was stopped
                return
            norm = self.batch.norm(grad)
            for index in indices:
                self.taps[index].grad_in = norm

        return hook

    def _output_hook(self):  # type: ignore[no-untyped-def]
        def hook(grad: torch.Tensor | None) -> None:
            if grad is not None:
                self.grad_output = self.batch.norm(grad)

        return hook

    def run(
        self,
        variant: Variant,
        loss: torch.Tensor,
        wrt: Sequence[torch.Tensor],
        params: Sequence[torch.Tensor],
        retain_graph: bool,
    ) -> Measured:
        """One backward pass under `variant`, made here; returns its numbers on the host."""
        self.arm(variant)
        asked: list[Any] = [*wrt, *self.captured.edges]
        keep = retain_graph or bool(self.captured.edges)  # for `Captured._exact_block`
        grads = torch.autograd.grad(loss, asked, retain_graph=keep, allow_unused=True)
        self.captured.take(grads[len(wrt) :])
        return self.collect(grads[: len(params)], params, loss)

    def arm(self, variant: Variant) -> None:
        """Ready the hooks for the next backward pass, under `variant`: `run` makes that pass,
        or the caller does (`loss.backward()` in a training loop) and then calls `collect`."""
        self.variant = variant
        self.stopping = bool(variant.stop_skip or variant.stop_block)
        self.grad_output = None
        self.batch = batch = NormBatch(norms.budget(self.device))
        if self.stoppable & set(self.captured.indices):
            raise ValueError("a captured junction cannot be stopped: it has no hooks")
        captured = set(self.captured.indices)
        self.taps = {
            i: _JunctionTap(batch, _expected(self.junctions[i]), self.reads.get(i))
            for i in self.measured if i not in captured
        }

    def collect(
        self, grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor], loss: torch.Tensor
    ) -> Measured:
        """The armed pass's numbers on the host, in one transfer, with the parameters' gradients
        `grads` (None: none reached the parameter) and the `loss` it differentiated."""
        for tap in self.taps.values():
            tap.finish()
        return self._collect(grads, params, loss)

    def _collect(
        self, grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor], loss: torch.Tensor
    ) -> Measured:
        """Move every number to the host in one transfer."""
        device = self.device
        zero = torch.zeros((), dtype=torch.float32, device=device)
        nan = torch.full((), float("nan"), dtype=torch.float32, device=device)
        param_norms_taken = iter(self.batch.flush(also=[g for g in grads if g is not None]))
        taken = self.batch.values

        def value(slot: int | None) -> torch.Tensor:
            return zero if slot is None else taken[slot]  # type: ignore[return-value]

        # Five numbers per junction: grad_out, grad_skip, grad_block, grad_in, dot.
        hooked: list[torch.Tensor] = []
        hooked_order: list[int] = []
        for index in self.measured:
            tap = self.taps.get(index)
            if tap is None:
                continue
            skip, block = tap.norm
            hooked += [value(tap.grad_out), value(skip), value(block), value(tap.grad_in)]
            hooked.append(nan if tap.dot is None else tap.dot)
            hooked_order.append(index)
        rest: list[torch.Tensor] = []
        for grad, param in zip(grads, params):
            rest.append(next(param_norms_taken) if grad is not None else nan)
            if param.numel() == 1:
                # A sum, not the one element: a rank may hold none of a sharded parameter.
                rest.append(grad.float().sum() if grad is not None else nan)
        rest.append(taken[self.grad_output] if self.grad_output is not None else nan)  # type: ignore[arg-type]
        rest.append(loss.detach().float().reshape(()))
        with_context = [i for i in self.measured if i in self.reads]
        for i in with_context:  # the norm of the norms: the whole context's gradient
            read = [taken[slot] for slot in self.taps[i].read_norms]
            rest.append(torch.linalg.vector_norm(torch.stack(read)) if read else zero)  # type: ignore[arg-type]
        captured_order, captured_rows = self.captured.numbers()
        chunks = [torch.stack(hooked + rest)] + [rows.reshape(-1) for rows in captured_rows]
        host = norms.to_host(chunks, device)
        rows: dict[int, list[float]] = {}
        for k, index in enumerate(hooked_order):
            rows[index] = host[5 * k : 5 * k + 5]
        cursor = 5 * len(hooked_order)
        tail = len(hooked) + len(rest)
        for k, index in enumerate(captured_order):
            rows[index] = host[tail + 5 * k : tail + 5 * k + 5]
        param_norms: list[float | None] = []
        param_values: list[float | None] = []
        for grad, param in zip(grads, params):
            param_norms.append(None if grad is None else host[cursor])
            cursor += 1
            if param.numel() == 1:
                param_values.append(None if grad is None else host[cursor])
                cursor += 1
            else:
                param_values.append(None)
        per_junction = [rows[index] for index in self.measured]
        dots = [row[4] for row in per_junction]
        context = dict(zip(with_context, host[cursor + 2 : cursor + 2 + len(with_context)]))
        return Measured(
            grad_out=[row[0] for row in per_junction],
            grad_skip=[row[1] for row in per_junction],
            grad_block=[row[2] for row in per_junction],
            grad_in=[row[3] for row in per_junction],
            dot=[None if d != d else d for d in dots],
            param_norms=param_norms,
            param_values=param_values,
            grad_output=None if self.grad_output is None else host[cursor],
            loss=host[cursor + 1],
            grad_context=[context.get(i) for i in self.measured],
        )


class Captured:
    """The numbers of plain junctions (`FoundJunction.plain`) from two gradients each, with no
    hook: the backward pass hands back the gradient at the fork x and at the add's output y as
    it hands back the parameters'. The skip is the identity, so its contribution is y's
    gradient, and the fork has no other consumer, so the block's is x's minus y's. Norms and dot
    products are taken after the pass, a few batched operations for all junctions of one shape.

    The gradients are held until the pass ends, so only junctions whose tensors fit the norm
    budget are captured (`capturable`), and only on the CPU, where reading a number back costs
    no sync; the others keep their hooks, which norm and free each gradient as it passes.

    x's gradient is y's plus the block's rounded to float precision, so the difference carries
    an error up to about one rounding unit of x's gradient. Where the block's part is below
    `EXACT_BELOW` of x's, that error would show in its norm and in the cosine, so the block's
    contribution is taken exactly instead: a backward pass of its own from the block operand to
    the fork, over the graph the main pass kept (as for a shared side)."""

    EXACT_BELOW = 1e-3

    def __init__(self, junctions: Sequence[FoundJunction], indices: list[int]) -> None:
        self.junctions = list(junctions)
        self.indices = indices
        self.edges: list[GradientEdge] = []
        self._slots: list[tuple[int, int]] = []  # per junction: (fork's slot, add's slot)
        position: dict[tuple[Any, int], int] = {}
        for junction in junctions:
            pair = []
            for node, nr in ((junction.fork, junction.fork_output), (junction.add, 0)):
                slot = position.get((node, nr))
                if slot is None:
                    slot = position[(node, nr)] = len(self.edges)
                    self.edges.append(GradientEdge(node, nr))
                pair.append(slot)
            self._slots.append((pair[0], pair[1]))
        self._grads: Sequence[torch.Tensor | None] = ()
        # The junctions (indices) whose block part was taken exactly for being too small.
        self.exact: list[int] = []

    def take(self, grads: Sequence[torch.Tensor | None]) -> None:
        """The gradients the pass handed back at `edges`, in order."""
        self._grads = grads

    def numbers(self) -> tuple[list[int], list[torch.Tensor]]:
        """The captured junctions' indices, and their numbers as rows of [grad_out, grad_skip,
        grad_block, grad_in, dot] in float32 on the device, one tensor per group of junctions
        of one shape, in the order of the indices; the gradients are released.

        A fork is often the previous junction's add, so the distinct gradients are stacked once
        per shape and each junction's pair is picked from the stack by index."""
        grads = [self._grad(slot) for slot in range(len(self.edges))]
        stacks: dict[tuple[Any, ...], list[int]] = {}
        for slot, grad in enumerate(grads):
            stacks.setdefault((grad.shape, grad.dtype, grad.device), []).append(slot)
        row_of: dict[int, tuple[tuple[Any, ...], int]] = {}
        stacked: dict[tuple[Any, ...], torch.Tensor] = {}
        for key, slots in stacks.items():
            stacked[key] = _wide(torch.stack([grads[slot].reshape(-1) for slot in slots]))
            row_of.update((slot, (key, row)) for row, slot in enumerate(slots))
        groups: dict[tuple[Any, ...], list[int]] = {}
        for k, (fork_slot, add_slot) in enumerate(self._slots):
            (x_key, _), (y_key, _) = row_of[fork_slot], row_of[add_slot]
            # x broadcast into y, or of another dtype: no difference to take, a group of its own
            groups.setdefault(y_key if x_key == y_key else ("alone", k), []).append(k)
        order: list[int] = []
        tables: list[torch.Tensor] = []
        for key, members in groups.items():
            if key[0] == "alone":
                (k,) = members
                table = self._alone(k, grads[self._slots[k][0]], grads[self._slots[k][1]])
            else:
                table = self._together(stacked[key], [row_of[self._slots[k][0]][1] for k in members],
                                       [row_of[self._slots[k][1]][1] for k in members], members, grads)
            tables.append(table)
            order += [self.indices[k] for k in members]
        self._grads = ()
        return order, tables

    def _together(
        self, table: torch.Tensor, x_rows: list[int], y_rows: list[int], members: list[int],
        grads: list[torch.Tensor],
    ) -> torch.Tensor:
        """Rows of numbers for junctions whose fork and add gradients are rows of `table`."""
        xs, ys = table[x_rows], table[y_rows]
        blocks = xs - ys
        grad_in = torch.linalg.vector_norm(xs, dim=1)
        grad_block = torch.linalg.vector_norm(blocks, dim=1)
        dots = torch.linalg.vecdot(ys, blocks)
        for row in (grad_block < self.EXACT_BELOW * grad_in).nonzero().view(-1).tolist():
            k = members[row]
            self.exact.append(self.indices[k])
            block = _wide(self._exact_block(k, grads[self._slots[k][1]]).reshape(-1))
            grad_block[row] = torch.linalg.vector_norm(block)
            dots[row] = torch.dot(ys[row], block.to(ys.dtype))
        grad_out = torch.linalg.vector_norm(ys, dim=1)
        return torch.stack([grad_out, grad_out, grad_block, grad_in, dots], dim=1).float()

    def _alone(self, k: int, grad_x: torch.Tensor, grad_y: torch.Tensor) -> torch.Tensor:
        """One row of numbers for a junction whose add broadcast x, or whose gradients differ in
        dtype: the skip's part is y's gradient summed to x's shape, the block's taken exactly."""
        skip = _wide(grad_y.sum_to_size(grad_x.shape).to(grad_x.dtype))
        block = _wide(self._exact_block(k, grad_y))
        numbers = [
            torch.linalg.vector_norm(_wide(grad_y)),
            torch.linalg.vector_norm(skip),
            torch.linalg.vector_norm(block),
            torch.linalg.vector_norm(_wide(grad_x)),
            torch.dot(skip.reshape(-1), block.reshape(-1).to(skip.dtype)),
        ]
        return torch.stack([n.float() for n in numbers]).reshape(1, 5)

    def _exact_block(self, k: int, grad_y: torch.Tensor) -> torch.Tensor:
        """The block's contribution to the fork's gradient, from its own backward pass."""
        junction = self.junctions[k]
        start = GradientEdge(*junction.add.next_functions[junction.block_operand])
        fork = GradientEdge(junction.fork, junction.fork_output)
        meta = start.node._input_metadata[start.output_nr]
        arriving = grad_y.sum_to_size(tuple(meta.shape)).to(meta.dtype)  # as the add hands it on
        (block,) = torch.autograd.grad([start], [fork], [arriving], retain_graph=True, allow_unused=True)
        return torch.zeros_like(grad_y) if block is None else block

    def _grad(self, slot: int) -> torch.Tensor:
        """The gradient at `slot`; zeros where none reached it (a junction the loss does not use)."""
        grad = self._grads[slot]
        if grad is not None:
            return grad
        meta = self.edges[slot].node._input_metadata[self.edges[slot].output_nr]
        return torch.zeros(tuple(meta.shape), dtype=meta.dtype, device=meta.device)


def _wide(tensor: torch.Tensor) -> torch.Tensor:
    """Float32 for half-precision gradients, as every norm accumulates; float64 stays."""
    return tensor.float() if tensor.dtype in norms.TO_FLOAT32 else tensor


def capturable(
    junctions: Sequence[FoundJunction], measured: Sequence[int], budget: int, device: torch.device
) -> list[int]:
    """The measured plain junctions whose fork and add gradients fit `budget` bytes together,
    in order; none off the CPU (see `Captured`)."""
    chosen: list[int] = []
    if device.type != "cpu" or not _edges_as_outputs():
        return chosen
    held: set[tuple[Any, int]] = set()
    total = 0
    for index in measured:
        junction = junctions[index]
        if not junction.plain:
            continue
        edges = ((junction.fork, junction.fork_output), (junction.add, 0))
        (meta,) = junction.add._input_metadata
        if meta.dtype not in (torch.float32, torch.float64):
            continue  # a half-precision sum keeps too little of a small block part (`EXACT_BELOW`)
        # The fork's gradient is y's size, or smaller where the add broadcast it (`numbers`).
        size = meta.dtype.itemsize * _numel(meta.shape) * sum(edge not in held for edge in edges)
        if total + size > budget:
            break
        total += size
        held.update(edges)
        chosen.append(index)
    return chosen


def _numel(shape: Sequence[int]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


@functools.cache
def _edges_as_outputs() -> bool:
    """Whether this torch's autograd.grad takes a GradientEdge as an output (`Taps._through`)."""
    with torch.enable_grad():
        x = torch.ones(1, requires_grad=True)
        y = x * 2
        assert y.grad_fn is not None
        try:
            torch.autograd.grad([GradientEdge(y.grad_fn, 0)], [x], [torch.ones(1)])
        except (TypeError, AttributeError, RuntimeError):
            return False
    return True


def _edge_counts(edges: Sequence[ContextEdge]) -> dict[Any, int]:
    """How many of a block's context edges lead into each context tensor."""
    counts: dict[Any, int] = {}
    for edge in edges:
        counts[edge.read] = counts.get(edge.read, 0) + 1
    return counts


def _expected(junction: FoundJunction) -> tuple[int, int]:
    """How many contributions each side of `junction` sends to its fork: one per edge, one from
    the add's hook for a shared side, none for a cut side."""
    return tuple(  # type: ignore[return-value]
        0 if junction.cut == side else 1 if junction.separate[side] else len(junction.edges[side])
        for side in (SKIP, BLOCK)
    )


def _as_base(grad: torch.Tensor, view: Any) -> torch.Tensor:
    """`grad` (the gradient of a view's base) laid out as the base was, so the view's geometry
    addresses the same elements in it; CopySlices hands its gradients on laid out so."""
    if grad.stride() == view.base_stride and grad.storage_offset() == 0:
        return grad
    out = torch.empty_strided(view.base_size, view.base_stride, dtype=grad.dtype, device=grad.device)
    return out.copy_(grad)


def _view_of(grad: torch.Tensor, view: Any) -> torch.Tensor:
    """The part of a base's gradient that falls on the view an in-place add wrote into."""
    return _as_base(grad, view).as_strided(view.size, view.stride, view.offset)


def _without_view(grad: torch.Tensor, view: Any) -> torch.Tensor:
    """A base's gradient with the view's part zero (a copy; the original is left as it is)."""
    out = torch.empty_strided(view.base_size, view.base_stride, dtype=grad.dtype, device=grad.device)
    out.copy_(grad)
    out.as_strided(view.size, view.stride, view.offset).zero_()
    return out

