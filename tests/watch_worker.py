"""One rank of the distributed watch test (`tests/test_watch_distributed.py`): started once per
rank with torchrun's environment, it trains the test ResMLP sharded with FSDP2 (`fully_shard`,
gloo), then wrapped in DDP, for three steps each under `gradflow.watch(every=1)`, each rank on its
half of every batch, and writes the records to OUT/<shard>-rank<R>.json.

    python tests/watch_worker.py OUT
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

import gradflow
from tests.test_watch import ResMLP, batches, ce

STEPS = 3
SHARDS = ("fsdp", "ddp")


def main(out: Path) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    for shard in SHARDS:
        _train(out, shard)
    dist.destroy_process_group()


def _train(out: Path, shard: str) -> None:
    rank, size = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model: torch.nn.Module = ResMLP()
    if shard == "fsdp":
        for block in model.blocks:
            fully_shard(block)
        fully_shard(model)
    else:
        model = DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = len(model._forward_pre_hooks), len(model._forward_hooks)  # the wrapper's own
    with gradflow.watch(model, every=1) as w:
        for (x, y), in batches(STEPS):
            loss = ce(model(x.chunk(size)[rank]), y.chunk(size)[rank])
            loss.backward()
            opt.step()
            opt.zero_grad()
            w.step()
    hooks = (len(model._forward_pre_hooks), len(model._forward_hooks)) == before
    (out / f"{shard}-rank{rank}.json").write_text(json.dumps({
        "junctions": list(w.junctions),
        "records": [r.to_dict() for r in w.records],
        "ranks": w.last_report.probe.ranks if w.last_report else None,
        "shard": w.last_report.probe.shard if w.last_report else None,
        "hooks": hooks,
    }))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
