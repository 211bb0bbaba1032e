"""A model trained data-parallel under torchrun: what a measurement needs to know about its wrapper.

Two wrappers are understood: `DistributedDataParallel` (every rank holds the whole model and DDP
all-reduces the gradients in the backward pass) and FSDP2's `fully_shard` (each rank holds one
shard of every parameter, a DTensor; the forward and backward passes all-gather the layers they
run, and the backward pass reduce-scatters the gradients). Both average the gradients over the
ranks, so the loss they optimise is the mean over ranks of each rank's loss on its slice of the
batch; `gradflow.engine.reduce` forms every number of that loss from the ranks' local ones.

Each rank finds the junctions on its own autograd graph. Under FSDP2 that graph's parameter
leaves are the unsharded parameters FSDP2 all-gathers, not the sharded ones the model lists, so
`graph_params` maps the one to the other; parameter gradients are read from the sharded
parameters after FSDP2 reduce-scattered them (`local_grads`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gradflow.errors import ModelError

DDP = "ddp"
FSDP = "fsdp"


@dataclass(frozen=True)
class DataParallel:
    """A data-parallel wrapper and the ranks it spans.

    kind: "ddp" or "fsdp". wrapper: what the forward pass calls. module: the model inside, whose
    modules and parameters name the junctions (DDP's `.module`; an FSDP2 root is both). group:
    the process group the batch is split over; rank and size: this rank's place in it.
    """

    kind: str
    wrapper: torch.nn.Module
    module: torch.nn.Module
    group: Any
    rank: int
    size: int

    @classmethod
    def of(cls, model: torch.nn.Module) -> DataParallel | None:
        """The wrapper `model` is trained under, or None for a model on one process."""
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            return None
        from torch.nn.parallel import DistributedDataParallel

        if isinstance(model, DistributedDataParallel):
            group = model.process_group
            return cls(DDP, model, model.module, group, dist.get_rank(group), dist.get_world_size(group))
        if _fsdp_modules(model):
            group = _fsdp_group(model)
            return cls(FSDP, model, model, group, dist.get_rank(group), dist.get_world_size(group))
        return None

    def graph_params(self, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """`params` as the autograd graph of the last forward pass holds them: FSDP2's unsharded
        parameters for its sharded ones, in the same order; DDP's are the model's own."""
        if self.kind != FSDP:
            return list(params)
        by_id = _fsdp_params(self.wrapper)
        out = []
        for param in params:
            managed = by_id.get(id(param))
            unsharded = getattr(managed, "_unsharded_param", None) if managed is not None else None
            if unsharded is None:
                raise ModelError(
                    "a trainable parameter is not sharded by fully_shard (or was not all-gathered in "
                    "the forward pass): call fully_shard on the root module too"
                )
            out.append(unsharded)
        return out

    def local_grads(self, params: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
        """This rank's part of each parameter's gradient after the wrapper reduced it: the local
        shard of a DTensor gradient, the whole gradient otherwise (None: no gradient)."""
        return [None if p.grad is None else _local(p.grad) for p in params]

    def counted(self, params: Sequence[torch.Tensor]) -> list[bool]:
        """Whether this rank's part of each parameter's gradient adds to the whole: shards are
        disjoint and each counts, a replicated placement counts on one rank only."""
        from torch.distributed.tensor import DTensor

        out = []
        for param in params:
            if not isinstance(param, DTensor):
                out.append(self.rank == 0)  # DDP: every rank holds the same reduced gradient
                continue
            coordinate = tuple(param.device_mesh.get_coordinate() or ())
            counted = True
            for dim, placement in enumerate(param.placements):
                if placement.is_partial():
                    raise ModelError(
                        f"a parameter has a Partial placement ({param.placements}): gradflow measures "
                        "parameters sharded or replicated over the ranks"
                    )
                if placement.is_replicate() and coordinate[dim] != 0:
                    counted = False
            out.append(counted)
        return out

    def device(self, model_device: torch.device) -> torch.device:
        """Where the all-reduce's tensor lives: on the model's CUDA device (NCCL takes no host
        tensors), else on the host."""
        return model_device if model_device.type == "cuda" else torch.device("cpu")


def _local(tensor: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def _fsdp_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def _fsdp_params(model: torch.nn.Module) -> dict[int, Any]:
    """id(sharded parameter) -> FSDP2's record of it, which holds the unsharded parameter."""
    found: dict[int, Any] = {}
    for module in _fsdp_modules(model):
        state = module._get_fsdp_state()  # type: ignore[operator]
        for group in getattr(state, "_fsdp_param_groups", None) or []:
            for managed in group.fsdp_params:
                found[id(managed.sharded_param)] = managed
    return found


def _fsdp_group(model: torch.nn.Module) -> Any:
    """The process group the batch is split over: the mesh's, for a one-dimensional mesh; the
    whole world for a mesh of replicas of shards (HSDP) that spans it."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    for param in model.parameters():
        if isinstance(param, DTensor):
            mesh = param.device_mesh
            if mesh.ndim == 1:
                return mesh.get_group()
            if mesh.size() == dist.get_world_size():
                return dist.group.WORLD
            raise ModelError(
                f"the model is sharded over a {mesh.ndim}-dimensional mesh of {mesh.size()} of the "
                f"{dist.get_world_size()} ranks: gradflow measures data parallelism over all ranks"
            )
    return dist.group.WORLD
