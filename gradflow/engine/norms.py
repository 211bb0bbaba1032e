"""Norms of gradients without a host sync: every value stays a 0-dim float32 tensor on the
device until `to_host` moves them all in one transfer. Norms accumulate in float32 whatever the
gradient's dtype (float64 keeps its own precision)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gradflow.engine.stages import stage

DOT_FROM = 1 << 16  # elements; below this a norm costs its call, not its arithmetic
TO_FLOAT32 = (torch.float32, torch.bfloat16, torch.float16)  # norms accumulate in float32


def by_dot(tensor: torch.Tensor) -> bool:
    return tensor.is_cpu and tensor.dtype is torch.float32 and tensor.is_contiguous()


def norm_of(tensor: torch.Tensor) -> torch.Tensor:
    """The 2-norm as a float32 zero-dim tensor on the tensor's device, without a sync.

    For dense float32 tensors on the CPU, `sqrt(dot(x, x))`: the BLAS dot product is faster there
    than `linalg.vector_norm`, and closer to the float64 norm."""
    if by_dot(tensor):
        flat = tensor.view(-1)
        return torch.dot(flat, flat).sqrt()
    if tensor.dtype in TO_FLOAT32:
        return torch.linalg.vector_norm(tensor, dtype=torch.float32)
    return torch.linalg.vector_norm(tensor).float()  # float64 keeps its own precision


def norms_of(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """`norm_of` each: large dense float32 CPU tensors and float64 ones one by one, the rest
    through one `_foreach_norm` call per dtype (one fused kernel on CUDA, one C++ loop on the CPU,
    both far cheaper than a Python call per tensor)."""
    out: list[torch.Tensor | None] = [None] * len(tensors)
    rest = []
    for i, t in enumerate(tensors):
        if normed_alone(t):
            out[i] = norm_of(t)
        else:
            rest.append(i)
    for i, value in zip(rest, foreach_norms([tensors[i] for i in rest])):
        out[i] = value
    return out  # type: ignore[return-value]


def foreach_norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Float32 norms of `tensors`, one `_foreach_norm` call per dtype."""
    out: list[torch.Tensor | None] = [None] * len(tensors)
    by_dtype: dict[torch.dtype, list[int]] = {}
    for i, t in enumerate(tensors):
        by_dtype.setdefault(t.dtype, []).append(i)
    for indices in by_dtype.values():
        values = torch._foreach_norm([tensors[i] for i in indices], 2, dtype=torch.float32)
        for i, value in zip(indices, values):
            out[i] = value
    return out  # type: ignore[return-value]


def normed_alone(tensor: torch.Tensor) -> bool:
    """Normed on its own: what the arithmetic dominates (a large dense float32 CPU tensor, by dot
    product) and float64, which keeps its own precision. Called for every gradient a backward
    pass norms, so the cheapest tests come first (`is_cpu` is cheaper than `device.type`)."""
    dtype = tensor.dtype
    if dtype not in TO_FLOAT32:
        return True
    return (
        dtype is torch.float32 and tensor.numel() >= DOT_FROM and tensor.is_cpu and tensor.is_contiguous()
    )


CPU_BUDGET = 4 << 20  # bytes of gradients a backward pass on the CPU holds for `NormBatch`
MIN_BUDGET = 1 << 20


def budget(device: torch.device) -> int:
    """How many bytes of gradients `NormBatch` may hold: 2 % of the device memory in use when the
    backward pass starts (the saved activations and more), so holding them adds at most that to
    the step's peak memory. On the CPU only small tensors are held (see `normed_alone`)."""
    if device.type == "cuda":
        return max(MIN_BUDGET, torch.cuda.memory_allocated(device) // 50)
    if device.type == "mps":
        return max(MIN_BUDGET, torch.mps.current_allocated_memory() // 50)
    return CPU_BUDGET


class NormBatch:
    """Norms of one backward pass, taken together rather than one operator call each.

    A hook hands a gradient to `norm` and gets a slot; the gradient is held, and every `flush`
    takes all held norms in one `_foreach_norm` call per dtype. On a GPU fed small batches the
    host's cost of one call per norm was most of what the hooks cost. Held gradients stay alive
    until the flush, so the batch flushes whenever they exceed `budget` bytes; tensors that
    `normed_alone` picks are normed at once. Values stay on the device.

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
        if normed_alone(tensor):
            self.values.append(norm_of(tensor))
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
        with stage("norms"):
            values = norms_of([t for _, t in self.held] + list(also))
        for (slot, _), value in zip(self.held, values):
            self.values[slot] = value
        taken = len(self.held)
        self.held.clear()
        self.held_bytes = 0
        return values[taken:]


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a · b as a float32 zero-dim tensor: float64 in its own precision, the rest in float32."""
    if a.dtype == b.dtype and a.dtype in (torch.float32, torch.float64):
        return torch.dot(a.reshape(-1), b.reshape(-1)).float()
    return torch.dot(a.reshape(-1).float(), b.reshape(-1).float())


def to_host(values: list[torch.Tensor], device: torch.device) -> list[float]:
    """Zero-dim or 1-D float32 tensors as one list of floats, in one transfer."""
    if not values:
        return []
    with stage("norms"):
        flat = [v.reshape(-1) for v in values]
        try:
            return torch.cat(flat).tolist()  # type: ignore[no-any-return]
        except RuntimeError:  # on several devices (a model split across GPUs): gather them first
            return torch.cat([v.to(device) for v in flat]).tolist()  # type: ignore[no-any-return]
