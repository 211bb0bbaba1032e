"""The model-state guard: a measurement changes nothing the user can see.

Every change a measurement makes to the model or to torch's global state comes in a pair, and
the undo sits in `finally`: modes, buffers, `requires_grad`, the random generators, and the
garbage collector's schedule.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from gradflow.engine.inventory import Inventory
from gradflow.engine.stages import stage


@contextmanager
def preserved(
    model: torch.nn.Module, devices: Sequence[Any] = (), parts: Inventory | None = None
) -> Iterator[None]:
    """Run a block and put the model back exactly as it was: modes, buffers, grads, RNG state.

    Parameters and their `.grad` are never written by the probe (gradients are taken with
    `torch.autograd.grad`); buffers such as batch-norm running statistics are restored by value
    into the original tensors, and the global RNG (CPU and the given CUDA devices) is forked.
    """
    with stage("state"):
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
        rng = torch.random.fork_rng(devices=cuda, enabled=True)
        rng.__enter__()
    try:
        yield
    finally:
        with stage("state"):
            try:
                for module, training in modes:
                    if module.training is not training:
                        module.__dict__["training"] = training  # skips nn.Module.__setattr__
                for module, name, original in slots:
                    module._buffers[name] = original
                saved.restore()
                for param, flag in flags:
                    if param.requires_grad is not flag:
                        param.requires_grad_(flag)
            finally:
                rng.__exit__(None, None, None)


def seed_generators(seed: int, devices: Sequence[torch.device] = ()) -> None:
    """Seed the random generators a step on `devices` draws from: the CPU's, and each CUDA
    device's own. These are the ones `preserved` forks and gives back. `torch.manual_seed` would
    also seed every other accelerator, which nothing restores, and it costs far more than seeding
    the CPU generator alone, even on a machine without one."""
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
    one `_foreach_clone` call where torch has it (2.13 does, 2.11 does not; on the CPU it beats
    views into one allocation), else an `empty_like` each and one `_foreach_copy_` (one fused
    kernel on CUDA)."""
    clone_all = getattr(torch, "_foreach_clone", None)
    if clone_all is not None:
        return list(clone_all(tensors))
    copies = [torch.empty_like(t) for t in tensors]
    torch._foreach_copy_(copies, tensors)
    return copies


@contextmanager
def grads_set_aside(params: Sequence[torch.Tensor]) -> Iterator[None]:
    """The parameters' `.grad` set aside for backward passes that write them, and put back after:
    the same tensors, with the same values. A data-parallel wrapper reduces the gradients only in
    a real backward pass (`loss.backward()`), which accumulates into `.grad`; inside the block
    every `.grad` starts as None, and DDP's gradient buckets, which a `.grad` may be a view of,
    get the values back too."""
    saved = [(param, param.grad) for param in params]
    held = [grad for _, grad in saved if grad is not None]
    values = _Saved([_local(grad) for grad in held])
    for param in params:
        param.grad = None
    try:
        yield
    finally:
        for param, grad in saved:
            param.grad = grad
        values.restore()


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor's shard on this rank (its values are what a rank holds); any other tensor itself."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if callable(to_local) else tensor


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused for one measurement, and back as it was after.

    A measurement creates many short-lived Python objects (graph walks, hooks, the report) while
    the model, its autograd graph and their wrappers are alive, so the collector's periodic passes
    kept traversing all of them, a large share of a measurement on a deep model.
    Reference counting still frees everything that is not in a cycle at once; cycles wait for
    the collector's next pass after the measurement."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
