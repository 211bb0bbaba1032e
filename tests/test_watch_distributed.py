"""`gradflow.watch` on a model sharded with FSDP2, and on one wrapped in DDP, under torchrun (gloo,
2 ranks on the CPU): three
training steps, every one measured, give on every rank the records of a single-process watch of
the same training on the whole batches (the loss each rank optimises is the mean over the ranks
of their halves' losses, which is the whole batch's mean loss)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch

import gradflow
from tests.conftest import ROOT
from tests.test_distributed import WORLD, _ranks
from tests.test_watch import ResMLP, batches, ce
from tests.watch_worker import SHARDS, STEPS

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="needs torch.distributed with gloo",
)
NUMBERS = ("grad_out", "grad_skip", "grad_block", "grad_in", "block_ratio", "cosine", "param_grad")


def _single_process() -> gradflow.Watch:
    torch.manual_seed(0)
    model = ResMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradflow.watch(model, every=1) as w:
        for (x, y), in batches(STEPS):
            ce(model(x), y).backward()
            opt.step()
            opt.zero_grad()
            w.step()
    return w


def test_a_data_parallel_watch_equals_the_single_process_watch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = _ranks([str(ROOT / "tests" / "watch_worker.py"), str(tmp_path)])
    for rank, result in enumerate(done):
        assert result.returncode == 0, f"rank {rank}:\n{result.stderr[-4000:]}"
    expected = _single_process()
    assert len(expected.records) == STEPS * 3
    for shard in SHARDS:
        for rank in range(WORLD):
            _assert_same(json.loads((tmp_path / f"{shard}-rank{rank}.json").read_text()), expected, shard)


def _assert_same(got: dict[str, Any], expected: gradflow.Watch, shard: str) -> None:
    assert got["junctions"] == list(expected.junctions)
    assert (got["ranks"], got["shard"], got["hooks"]) == (WORLD, shard, True)
    assert len(got["records"]) == len(expected.records)
    for row, record in zip(got["records"], expected.records):
        assert (row["step"], row["junction"], row["status"]) == (record.step, record.junction, record.status)
        for name in NUMBERS:
            want = record.metric(name)
            assert want is not None and math.isclose(row[name], want, rel_tol=1e-5), (shard, row, name)
