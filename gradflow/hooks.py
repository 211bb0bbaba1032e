"""Measurement and stop-gradient hooks on the probe's autograd graph, and the model-state guard.

All hooks sit on autograd nodes of the graph the probe built, never on the user's modules, and
`Taps` removes every handle on exit. Hook state lives in small per-junction accumulators built by
named factories; the hooks hand gradients to a `_NormBatch`, which takes their norms together, and
every value stays on the model's device as a 0-dim float32 tensor until `Taps._collect` moves them
all to the host in one transfer. No hook calls `.item()` or `.cpu()`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.autograd.function import BackwardCFunction
from torch.autograd.graph import GradientEdge

from gradflow.errors import ModelError
from gradflow.graph import BLOCK, SKIP, FoundJunction
from gradflow.inventory import Inventory


@dataclass(frozen=True)
class Variant:
    """One backward pass: which junctions (by index) have their skip or block stopped."""

    name: str
    stop_skip: frozenset[int] = frozenset()
    stop_block: frozenset[int] = frozenset()


_DOT_FROM = 1 << 16  # elements; below this a norm costs its call, not its arithmetic
_TO_FLOAT32 = (torch.float32, torch.bfloat16, torch.float16)  # norms accumulate in float32


def _by_dot(tensor: torch.Tensor) -> bool:
    return tensor.is_cpu and tensor.dtype is torch.float32 and tensor.is_contiguous()


def _norm(tensor: torch.Tensor) -> torch.Tensor:
    """The 2-norm as a float32 zero-dim tensor on the tensor's device, without a sync.

    For dense float32 tensors on the CPU, `sqrt(dot(x, x))`: the BLAS dot product runs about
    2.4x faster there than `linalg.vector_norm`, and in a measurement on 2.4 M normal values it
    was closer to the float64 norm (relative error 7e-7 against 4e-5)."""
    if _by_dot(tensor):
        flat = tensor.view(-1)
        return torch.dot(flat, flat).sqrt()
    if tensor.dtype in _TO_FLOAT32:
        return torch.linalg.vector_norm(tensor, dtype=torch.float32)
    return torch.linalg.vector_norm(tensor).float()  # float64 keeps its own precision


def _norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """`_norm` of each: large dense float32 CPU tensors and float64 ones one by one (`_norm`), the
    rest through one `_foreach_norm` call per dtype (one fused kernel on CUDA, one C++ loop on the
    CPU, where 148 small tensors take 0.14 ms against 0.51 ms one Python call each)."""
    out: list[torch.Tensor | None] = [None] * len(tensors)
    rest = []
    for i, t in enumerate(tensors):
        if _alone(t):
            out[i] = _norm(t)
        else:
            rest.append(i)
    for i, norm in zip(rest, _together([tensors[i] for i in rest])):
        out[i] = norm
    return out  # type: ignore[return-value]


def _together(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Float32 norms of `tensors`, one `_foreach_norm` call per dtype."""
    out: list[torch.Tensor | None] = [None] * len(tensors)
    by_dtype: dict[torch.dtype, list[int]] = {}
    for i, t in enumerate(tensors):
        by_dtype.setdefault(t.dtype, []).append(i)
    for indices in by_dtype.values():
        norms = torch._foreach_norm([tensors[i] for i in indices], 2, dtype=torch.float32)
        for i, norm in zip(indices, norms):
            out[i] = norm
    return out  # type: ignore[return-value]


def _alone(tensor: torch.Tensor) -> bool:
    """Normed on its own: what the arithmetic dominates (a large dense float32 CPU tensor, by dot
    product) and float64, which keeps its own precision. Called for every gradient a backward
    pass norms, so the cheapest tests come first (`is_cpu`, not `device.type`: 0.05 against
    0.27 µs)."""
    dtype = tensor.dtype
    if dtype not in _TO_FLOAT32:
        return True
    return (
        dtype is torch.float32 and tensor.numel() >= _DOT_FROM and tensor.is_cpu and tensor.is_contiguous()
    )


_CPU_BUDGET = 4 << 20  # bytes of gradients a backward pass on the CPU holds for `_NormBatch`
_MIN_BUDGET = 1 << 20


def _budget(device: torch.device) -> int:
    """How many bytes of gradients `_NormBatch` may hold: 2 % of the device memory in use when the
    backward pass starts (the saved activations and more), so holding them adds at most that to
    the step's peak memory. On the CPU only small tensors are held (see `_alone`)."""
    if device.type == "cuda":
        return max(_MIN_BUDGET, torch.cuda.memory_allocated(device) // 50)
    if device.type == "mps":
        return max(_MIN_BUDGET, torch.mps.current_allocated_memory() // 50)
    return _CPU_BUDGET


class _NormBatch:
    """Norms of one backward pass, taken together rather than one operator call each.

    A hook hands a gradient to `norm` and gets a slot; the gradient is held, and every `flush`
    takes all held norms in one `_foreach_norm` call per dtype. On a GPU fed small batches the
    host's cost of one call per norm was most of what the hooks cost. Held gradients stay alive
    until the flush, so the batch flushes whenever they exceed `budget` bytes; tensors that
    `_alone` picks are normed at once. Values stay on the device.

    Dot products (for the cosine) are not batched: stacking their operands by shape cost more
    than it saved, on the CPU and for models whose junctions differ in shape.
    """

    __slots__ = ("budget", "held", "held_bytes", "values")

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.held: list[tuple[int, torch.Tensor]] = []
        self.held_bytes = 0
        self.values: list[torch.Tensor | None] = []

    def norm(self, tensor: torch.Tensor) -> int:
        slot = len(self.values)
        if _alone(tensor):
            self.values.append(_norm(tensor))
            return slot
        self.values.append(None)
        self.held.append((slot, tensor))
        self.held_bytes += tensor.nbytes
        if self.held_bytes > self.budget:
            self.flush()
        return slot

    def flush(self, also: Sequence[torch.Tensor] = ()) -> list[torch.Tensor]:
        """Norm every held gradient, and `also` in the same `_foreach_norm` calls; returns the
        norms of `also`."""
        if not self.held and not also:
            return []
        norms = _norms([t for _, t in self.held] + list(also))
        for (slot, _), value in zip(self.held, norms):
            self.values[slot] = value
        taken = len(self.held)
        self.held.clear()
        self.held_bytes = 0
        return norms[taken:]


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a · b as a float32 zero-dim tensor: float64 in its own precision, the rest in float32."""
    if a.dtype == b.dtype and a.dtype in (torch.float32, torch.float64):
        return torch.dot(a.reshape(-1), b.reshape(-1)).float()
    return torch.dot(a.reshape(-1).float(), b.reshape(-1).float())


class _JunctionTap:
    """One junction's numbers during one backward pass, as `_NormBatch` slots.

    Contributions to the fork arrive edge by edge; once every edge of a side has reported, the
    side's sum goes to the batch for its norm. The first finished side is held only until the
    other side finishes, for the dot product that gives the cosine; then both are released.
    """

    __slots__ = ("batch", "remaining", "partial", "known", "norm", "dot", "grad_out", "grad_in")

    def __init__(self, batch: _NormBatch, expected: tuple[int, int]) -> None:
        self.batch = batch
        self.remaining = list(expected)
        self.partial: list[torch.Tensor | None] = [None, None]
        self.known: list[int | None] = [None, None]
        self.norm: list[int | None] = [None, None]
        self.dot: torch.Tensor | None = None
        self.grad_out: int | None = None
        self.grad_in: int | None = None

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
                self.dot = _dot(mine, other)
            self.partial = [None, None]

    def finish(self) -> None:
        """Close sides whose edges never reported (their nodes did not run: no gradient)."""
        for side in (SKIP, BLOCK):
            if self.remaining[side] > 0:
                self.remaining[side] = 0
                self._complete(side)


GRAD_OUT, GRAD_IN = 0, 1  # what a read is for


@dataclass
class _NodePlan:
    """What the hooks on one autograd node do.

    The reads norm the gradients arriving at the node's outputs (grad_out of the junction whose
    add it is, grad_in of junctions forking at it), each output once: in a pre-hook, or at the
    start of the post-hook when the node has one (`read_late`). The post-hook stops operands of
    its junction and passes the gradients it sends to forks (`taps`) on; one that is the very
    tensor a read normed (an identity skip) reuses its norm. On an add whose junction has a
    shared side (see `gradflow.graph`), `through` takes that side's contribution to the fork by a
    separate backward pass from the operand to the fork.
    """

    junction: int | None = None  # index of the junction whose add this node is
    taps: list[tuple[int, int, int]] = field(default_factory=list)  # (junction, side, input index)
    through: list[tuple[int, int, int]] = field(default_factory=list)  # (junction, side, operand)
    reads: list[tuple[int, int, int]] = field(default_factory=list)  # (junction, output nr, GRAD_*)
    stash: dict[int, tuple[torch.Tensor, int]] = field(default_factory=dict)  # id(grad) -> (grad, slot)
    read_late: bool = False  # reads done in the post-hook, from its grad_outputs


@dataclass(frozen=True)
class Measured:
    """Host-side numbers of one backward pass; None where a value could not be formed."""

    grad_out: list[float]
    grad_skip: list[float]
    grad_block: list[float]
    grad_in: list[float]
    dot: list[float | None]
    param_norms: list[float | None]
    param_values: list[float | None]
    grad_output: float | None
    loss: float | None


class Taps:
    """Hooks for a set of junctions; one `run` per variant over the same retained graph."""

    def __init__(
        self,
        junctions: Sequence[FoundJunction],
        output: torch.Tensor,
        fork_leaves: dict[int, torch.Tensor],
        measured: Sequence[int] | None = None,
    ) -> None:
        """Args:
        junctions: every junction of the graph; any of them can be stopped.
        output: the model output the loss is taken on (its gradient is the reference).
        fork_leaves: id(AccumulateGrad node) -> the input tensor it feeds, for input forks.
        measured: indices of the junctions to measure (default all); `run` reports these.
        """
        self.junctions = list(junctions)
        self.measured = list(range(len(junctions))) if measured is None else list(measured)
        self.output: torch.Tensor | None = output  # released once its hook is in place
        self.device = output.device
        self.fork_leaves = fork_leaves
        self.variant = Variant("baseline")
        self.stopping = False  # whether the variant stops any path
        self.batch = _NormBatch(_CPU_BUDGET)
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
        if any(any(self.junctions[i].shared) for i in self.measured) and not _edges_as_outputs():
            raise ModelError(
                f"a junction's path shares an operation with code outside it, which needs "
                f"torch.autograd.grad to start from a GradientEdge (torch 2.5 or later; this is "
                f"{torch.__version__}): upgrade torch, or leave that junction out with --at"
            )
        plans: dict[Any, _NodePlan] = {}
        leaf_forks: dict[int, list[int]] = {}
        for index, junction in enumerate(self.junctions):
            plans.setdefault(junction.add, _NodePlan()).junction = index
        for index in self.measured:
            junction = self.junctions[index]
            for side in (SKIP, BLOCK):
                if junction.cut == side:
                    continue  # a detached operand: no gradient passes that side
                if junction.shared[side]:
                    operand = junction.skip_operand if side == SKIP else junction.block_operand
                    plans[junction.add].through.append((index, side, operand))
                    continue
                for edge in junction.edges[side]:
                    plans.setdefault(edge.consumer, _NodePlan()).taps.append((index, side, edge.index))
            plans[junction.add].reads.append((index, 0, GRAD_OUT))
            if id(junction.fork) in self.fork_leaves:
                leaf_forks.setdefault(id(junction.fork), []).append(index)
            else:
                plans.setdefault(junction.fork, _NodePlan()).reads.append(
                    (index, junction.fork_output, GRAD_IN)
                )
        for node, plan in plans.items():
            post = bool(plan.taps) or plan.junction is not None
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

    def _read(self, plan: _NodePlan, grad_outputs: tuple[torch.Tensor | None, ...]) -> None:
        """The gradients arriving at the node's outputs: grad_out and grad_in of junctions."""
        normed: dict[int, int] = {}
        for index, output_nr, kind in plan.reads:
            grad = grad_outputs[output_nr]
            if grad is None:
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
            if plan.junction is not None and self.stopping:
                replaced = self._stop(plan.junction, grad_inputs)
                if replaced is not None:
                    grad_inputs = replaced
            if self.nested:
                return replaced
            if plan.read_late:
                self._read(plan, grad_outputs)
            for index, side, slot in plan.taps:
                grad = grad_inputs[slot]
                known = plan.stash.get(id(grad)) if grad is not None else None
                self.taps[index].contribute(side, grad, known[1] if known and known[0] is grad else None)
            plan.stash.clear()
            for index, side, operand in plan.through:
                grad = grad_inputs[operand]
                through = None if grad is None else self._through(index, operand, grad)
                self.taps[index].contribute(side, through)
            return replaced

        return hook

    def _stop(self, index: int, grad_inputs: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """Stop-gradient: the chosen operand of the add gets no gradient (a constant)."""
        junction = self.junctions[index]
        stopped = []
        if index in self.variant.stop_skip:
            stopped.append(junction.skip_operand)
        if index in self.variant.stop_block:
            stopped.append(junction.block_operand)
        if not stopped:
            return None
        return tuple(None if i in stopped else g for i, g in enumerate(grad_inputs))

    def _through(self, index: int, operand: int, grad: torch.Tensor) -> torch.Tensor | None:
        """The gradient that `grad`, arriving at operand `operand` of the junction's add, sends to
        the fork along that operand's paths alone: a backward pass of its own, from the operand
        to the fork, over the retained graph. Its nodes have not run yet in the main pass (they
        all lie below the add), and the hooks only apply stop-gradients while it runs."""
        junction = self.junctions[index]
        start = GradientEdge(*junction.add.next_functions[operand])
        fork = GradientEdge(junction.fork, junction.fork_output)
        self.nested += 1
        try:
            (through,) = torch.autograd.grad([start], [fork], [grad], retain_graph=True, allow_unused=True)
        finally:
            self.nested -= 1
        return through  # type: ignore[no-any-return]

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
        """One backward pass under `variant`; returns its numbers on the host."""
        self.variant = variant
        self.stopping = bool(variant.stop_skip or variant.stop_block)
        self.grad_output = None
        self.batch = batch = _NormBatch(_budget(self.device))
        self.taps = {i: _JunctionTap(batch, _expected(self.junctions[i])) for i in self.measured}
        grads = torch.autograd.grad(loss, list(wrt), retain_graph=retain_graph, allow_unused=True)
        for tap in self.taps.values():
            tap.finish()
        return self._collect(grads[: len(params)], params, loss)

    def _collect(
        self, grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor], loss: torch.Tensor
    ) -> Measured:
        """Move every number to the host in one transfer."""
        device = self.device
        zero = torch.zeros((), dtype=torch.float32, device=device)
        nan = torch.full((), float("nan"), dtype=torch.float32, device=device)
        norms = iter(self.batch.flush(also=[g for g in grads if g is not None]))
        taken = self.batch.values

        def value(slot: int | None) -> torch.Tensor:
            return zero if slot is None else taken[slot]  # type: ignore[return-value]

        values: list[torch.Tensor] = []
        for tap in (self.taps[i] for i in self.measured):
            skip, block = tap.norm
            values += [
                value(tap.grad_out),
                value(skip),
                value(block),
                value(tap.grad_in),
                nan if tap.dot is None else tap.dot,
            ]
        for grad, param in zip(grads, params):
            values.append(next(norms) if grad is not None else nan)
            if param.numel() == 1:
                values.append(grad.reshape(()).float() if grad is not None else nan)
        values.append(taken[self.grad_output] if self.grad_output is not None else nan)  # type: ignore[arg-type]
        values.append(loss.detach().float().reshape(()))
        host = _to_host(values, device)
        n = len(self.taps)
        per_junction = [host[5 * i : 5 * i + 5] for i in range(n)]
        rest = host[5 * n :]
        param_norms: list[float | None] = []
        param_values: list[float | None] = []
        cursor = 0
        for grad, param in zip(grads, params):
            param_norms.append(None if grad is None else rest[cursor])
            cursor += 1
            if param.numel() == 1:
                param_values.append(None if grad is None else rest[cursor])
                cursor += 1
            else:
                param_values.append(None)
        dots = [row[4] for row in per_junction]
        return Measured(
            grad_out=[row[0] for row in per_junction],
            grad_skip=[row[1] for row in per_junction],
            grad_block=[row[2] for row in per_junction],
            grad_in=[row[3] for row in per_junction],
            dot=[None if d != d else d for d in dots],
            param_norms=param_norms,
            param_values=param_values,
            grad_output=None if self.grad_output is None else rest[cursor],
            loss=rest[cursor + 1],
        )


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


def _expected(junction: FoundJunction) -> tuple[int, int]:
    """How many contributions each side of `junction` sends to its fork: one per edge, one from
    the add's hook for a shared side, none for a cut side."""
    return tuple(  # type: ignore[return-value]
        0 if junction.cut == side else 1 if junction.shared[side] else len(junction.edges[side])
        for side in (SKIP, BLOCK)
    )


def _to_host(values: list[torch.Tensor], device: torch.device) -> list[float]:
    """Zero-dim float32 tensors as floats, in one transfer."""
    if not values:
        return []
    try:
        return torch.stack(values).tolist()  # type: ignore[no-any-return]
    except RuntimeError:  # on several devices (a model split across GPUs): gather them first
        return torch.stack([v.to(device) for v in values]).tolist()  # type: ignore[no-any-return]


@contextmanager
def preserved(
    model: torch.nn.Module, devices: Sequence[Any] = (), parts: Inventory | None = None
) -> Iterator[None]:
    """Run a block and put the model back exactly as it was: modes, buffers, grads, RNG state.

    Parameters and their `.grad` are never written by the probe (gradients are taken with
    `torch.autograd.grad`); buffers such as batch-norm running statistics are restored by value
    into the original tensors, and the global RNG (CPU and the given CUDA devices) is forked.
    """
    parts = parts or Inventory.of(model)
    modes = [(m, m.training) for m in parts.unique_modules]
    slots = [
        (module, name, buf)
        for module in parts.unique_modules
        for name, buf in module._buffers.items()
        if buf is not None
    ]
    saved = _Saved([buf for _, _, buf in slots])
    flags = [(p, p.requires_grad) for _, p in parts.parameters]
    cuda = [d for d in devices if getattr(d, "type", None) == "cuda"]
    with torch.random.fork_rng(devices=cuda, enabled=True):
        try:
            yield
        finally:
            for module, training in modes:
                if module.training is not training:
                    module.__dict__["training"] = training  # skips nn.Module.__setattr__
            for module, name, original in slots:
                module._buffers[name] = original
            saved.restore()
            for param, flag in flags:
                if param.requires_grad is not flag:
                    param.requires_grad_(flag)


def seed_generators(seed: int, devices: Sequence[torch.device] = ()) -> None:
    """Seed the random generators a step on `devices` draws from: the CPU's, and each CUDA
    device's own. These are the ones `preserved` forks and gives back. `torch.manual_seed` would
    also seed every other accelerator, which nothing restores, and costs 0.13 ms on a machine
    without one, against 1 µs for the CPU generator alone."""
    torch.default_generator.manual_seed(seed)
    for device in devices:
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        elif device.type not in ("cpu", "meta"):  # meta tensors draw nothing
            torch.manual_seed(seed)  # other accelerators keep their generators behind this call


class _Saved:
    """Copies of tensors, to be written back into them by value: grouped by (device, dtype) when
    saved, so restoring is one `torch._foreach_copy_` per group (one fused kernel on CUDA, where a
    mixed list falls back to one copy per tensor). Other layouts are copied one by one."""

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self.groups: dict[Any, list[torch.Tensor]] = {}
        for t in tensors:
            key = (t.device, t.dtype) if t.layout == torch.strided else None
            self.groups.setdefault(key, []).append(t)
        with torch.no_grad():
            self.copies = {
                key: [t.clone() for t in group] if key is None else _clone_all(group)
                for key, group in self.groups.items()
            }

    def restore(self) -> None:
        with torch.no_grad():
            for key, originals in self.groups.items():
                if key is None:
                    for original, copy in zip(originals, self.copies[key]):
                        original.copy_(copy)
                else:
                    torch._foreach_copy_(originals, self.copies[key])


def _clone_all(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Copies of dense tensors of one device and dtype, value for value and stride for stride:
    one `_foreach_clone` call where torch has it (2.13 does, 2.11 does not; on ResNet-50's 159
    buffers, 0.12 ms on the CPU against 0.42 ms for views into one allocation), else an
    `empty_like` each and one `_foreach_copy_` (one fused kernel on CUDA)."""
    clone_all = getattr(torch, "_foreach_clone", None)
    if clone_all is not None:
        return list(clone_all(tensors))
    copies = [torch.empty_like(t) for t in tensors]
    torch._foreach_copy_(copies, tensors)
    return copies
