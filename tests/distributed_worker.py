"""One rank of the data-parallel tests (`tests/test_distributed.py`): started once per rank with
torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, ...), it measures the sample models
wrapped in DDP and sharded with FSDP2 through the Python API, each rank on its slice of the
batch, and writes what it got to OUT/rank<R>.json (reports, and how many all-reduces each
measurement made) and, on rank 0, the gathered weights of the model the CLI shards to
OUT/weights.pt.

    python tests/distributed_worker.py OUT [cuda]
"""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

import gradflow
from gradflow.cli.options import Shard
from gradflow.cli.torchrun import split, wrapped
from gradflow.errors import ModelError
from gradflow.probe import as_probe
from tests.conftest import SAMPLES

MODELS = ("prenorm_transformer", "tiny_resnet")


def _load_sample(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"sample_{name}", SAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def main(out: Path, device: str) -> None:
    dist.init_process_group("nccl" if device == "cuda" else "gloo", timeout=timedelta(seconds=60))
    rank, size = dist.get_rank(), dist.get_world_size()
    if device == "cuda":
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
        # TF32 would make the ranks and the reference round differently: full float32.
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    calls: list[int] = []
    all_reduce = dist.all_reduce

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return all_reduce(*args, **kwargs)

    dist.all_reduce = counted  # type: ignore[assignment]
    results: dict[str, object] = {}
    for name in MODELS:
        sample = _load_sample(name)
        batch = split(as_probe(sample.example_input()), rank, size).to(torch.device(device))
        for shard in Shard:
            model = wrapped(sample.build().to(device), shard, batch, "train", 0).eval()
            before = _state(model)
            calls.clear()
            report = gradflow.inspect(model, batch, loss="mse")
            results[f"{name}/{shard.value}/inspect"] = {
                "reduces": len(calls), "reports": [report.to_dict()], "untouched": _state(model) == before,
            }
            calls.clear()
            comparison = gradflow.compare(model, batch, loss="mse", sg_skip=True, sg_block=True)
            reports = [r.to_dict() for r in comparison.variants.values()]
            results[f"{name}/{shard.value}/compare"] = {"reduces": len(calls), "reports": reports}
    results["disagree"] = _disagreements(rank)
    (out / f"rank{rank}.json").write_text(json.dumps(results))
    if device == "cpu":
        _gathered_weights(out, rank, size)
    dist.destroy_process_group()


def _state(model: torch.nn.Module) -> list[object]:
    """What a measurement must leave as it was: modes, weights, gradients (the same tensors with
    the same values), buffers. The gradients are set here first, as a training step leaves them."""
    for k, param in enumerate(model.parameters()):
        if param.grad is None:
            param.grad = torch.full_like(param, float(k))
    return [
        *[(m.training, id(m)) for m in model.modules()],
        *[(id(p.grad), p.grad.detach().clone().to_local().tolist() if hasattr(p.grad, "to_local")
           else p.grad.tolist()) for p in model.parameters()],
        *[(p.detach().clone().to_local() if hasattr(p, "to_local") else p.detach()).tolist()
          for p in model.parameters()],
        *[b.tolist() for b in model.buffers()],
    ]


class Ragged(torch.nn.Module):
    """Rank 1 runs another junction than rank 0: one more (`extra`), or its blocks swapped."""

    def __init__(self, extra: bool) -> None:
        super().__init__()
        self.a = torch.nn.Linear(4, 4)
        self.b = torch.nn.Linear(4, 4)
        self.extra = extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = (self.a, self.b) if dist.get_rank() == 0 or self.extra else (self.b, self.a)
        x = x + first(x)
        if self.extra and dist.get_rank() == 1:
            x = x + first(x)
        return x + second(x)


def _disagreements(rank: int) -> list[str]:
    """The errors of measurements whose ranks found different junctions."""
    from torch.nn.parallel import DistributedDataParallel

    errors = []
    for extra in (True, False):
        model = DistributedDataParallel(Ragged(extra))
        try:
            gradflow.inspect(model, torch.randn(2, 4), loss="mse")
            errors.append("")
        except ModelError as e:
            errors.append(str(e))
    return errors


def _gathered_weights(out: Path, rank: int, size: int) -> None:
    """The CLI's build of tiny_resnet, sharded as the CLI shards it, gathered back whole."""
    from gradflow.loaders import load_source

    loaded = load_source(str(SAMPLES / "tiny_resnet.py"), seed=0)
    assert loaded.example_input is not None
    batch = split(as_probe(loaded.example_input()), rank, size)
    model = wrapped(loaded.module, Shard.FSDP, batch, "train", 0)
    full = {name: param.full_tensor() for name, param in model.named_parameters()}  # type: ignore[operator]
    if rank == 0:
        torch.save(full, out / "weights.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "cpu")
