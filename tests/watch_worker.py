"""One rank of the distributed watch test (`tests/test_watch_distributed.py`): started once per
rank with torchrun's environment, it trains the test ResMLP sharded with FSDP2 (`fully_shard`,
gloo) for three steps under `gradflow.watch(every=1)`, each rank on its half of every batch, and
writes the records to OUT/rank<R>.json.

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

import gradflow
from tests.test_watch import ResMLP, batches, ce

STEPS = 3


def main(out: Path) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank, size = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = ResMLP()
    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = len(model._forward_pre_hooks), len(model._forward_hooks)  # FSDP2's own
    with gradflow.watch(model, every=1) as w:
        for (x, y), in batches(STEPS):
            loss = ce(model(x.chunk(size)[rank]), y.chunk(size)[rank])
            loss.backward()
            opt.step()
            opt.zero_grad()
            w.step()
    hooks = (len(model._forward_pre_hooks), len(model._forward_hooks)) == before
    (out / f"rank{rank}.json").write_text(json.dumps({
        "junctions": list(w.junctions),
        "records": [r.to_dict() for r in w.records],
        "ranks": w.last_report.probe.ranks if w.last_report else None,
        "shard": w.last_report.probe.shard if w.last_report else None,
        "hooks": hooks,
    }))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
