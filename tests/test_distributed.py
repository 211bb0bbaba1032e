"""Data-parallel models under torchrun, on the CPU with gloo and 2 ranks: DDP and FSDP2 reports
against an independent single-process reference of the same loss (each rank's slice through the
model, the loss the mean of the slices' losses), the CLI's --shard, and faults.

Every rank is a process of its own, started as torchrun starts them (RANK, WORLD_SIZE,
MASTER_ADDR, ... in the environment), or by torchrun itself."""

from __future__ import annotations

import functools
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import gradflow
from tests.conftest import ROOT, SAMPLES
from tests.fixtures.models import Logged
from tests.reference import _cosine, _through
from tests.test_cli_inspect import _load_sample

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="needs torch.distributed with gloo",
)

WORLD = 2
HANG = 300  # seconds: a run still going after this is a hang (the collective timeout is longer)
METRICS = ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad", "cosine")
CASES = [
    (model, shard, verb)
    for model in ("prenorm_transformer", "tiny_resnet")
    for shard in ("ddp", "fsdp")
    for verb in ("inspect", "compare")
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ranks(args: list[str], world: int = WORLD, cuda: bool = False) -> list[subprocess.CompletedProcess[str]]:
    """`python ARGS` once per rank, with the environment torchrun gives its workers."""
    port = str(_free_port())
    processes = []
    for rank in range(world):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": "1",
        }
        if not cuda:
            env["CUDA_VISIBLE_DEVICES"] = ""
        processes.append(
            subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    done: list[subprocess.CompletedProcess[str]] = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=HANG)
            done.append(subprocess.CompletedProcess(args, process.returncode, out, err))
    except subprocess.TimeoutExpired:
        pytest.fail(f"rank {len(done)} hangs: still running after {HANG} s")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return done


# The independent reference: the sample models' forward passes written out with every junction's
# tensors exposed, each slice through the model, the loss the mean of the slices' losses.


def _transformer(model, idx, log, stop):  # type: ignore[no-untyped-def]
    x = model.wte(idx) + model.wpe(torch.arange(idx.size(1)))
    for block in model.h:
        for norm, branch in ((block.ln_1, block.attn), (block.ln_2, block.mlp)):
            x = _junction(log, stop, x, x, branch(norm(x)), [*norm.parameters(), *branch.parameters()])
    return model.lm_head(model.ln_f(x))


def _resnet(model, images, log, stop):  # type: ignore[no-untyped-def]
    x = torch.relu(model.bn1(model.conv1(images)))
    for stage in (model.layer1, model.layer2, model.layer3):
        for b in stage:
            out = b.bn2(b.conv2(torch.relu(b.bn1(b.conv1(x)))))
            skip = x if b.downsample is None else b.downsample(x)
            params = [*b.conv1.parameters(), *b.bn1.parameters(), *b.conv2.parameters(), *b.bn2.parameters()]
            x = torch.relu(_junction(log, stop, x, skip, out, params))
    return model.fc(torch.flatten(model.avgpool(x), 1))


FORWARD = {"prenorm_transformer": _transformer, "tiny_resnet": _resnet}


def _junction(log, stop, x, skip, block, params):  # type: ignore[no-untyped-def]
    skip = skip.detach() if stop == "sg-skip" else skip
    block = block.detach() if stop == "sg-block" else block
    y = skip + block
    log.append(Logged(x, skip, block, y, params))
    return y


@functools.cache
def _reference(name: str, stop: str | None, ranks: int = WORLD) -> dict[str, Any]:
    """Per junction, every metric of L = mean over slices of mse(model(slice)), by autograd."""
    model = _load_sample(name).build().train()
    batch = _batch(name)
    logs: list[list[Logged]] = [[] for _ in range(ranks)]
    outputs = [FORWARD[name](model, part, log, stop) for part, log in zip(batch.chunk(ranks), logs)]
    loss = sum(out.float().pow(2).mean() for out in outputs) / ranks
    tensors = [t for per_slice in zip(*logs) for rec in per_slice for t in (rec.y, rec.x)]
    params = list(model.parameters())
    taken = torch.autograd.grad(loss, tensors + params, retain_graph=True, allow_unused=True)
    grads = iter(taken[: len(tensors)])
    param_grads = {id(p): g for p, g in zip(params, taken[len(tensors) :])}
    rows = []
    for per_slice in zip(*logs):
        total = dict.fromkeys(("grad_out", "grad_skip", "grad_block", "grad_in"), 0.0)
        skips, blocks = [], []
        for rec in per_slice:
            g_y, g_x = next(grads), next(grads)
            g_skip, g_block = _through(rec.skip, rec.x, g_y), _through(rec.block, rec.x, g_y)
            for key, g in (("grad_out", g_y), ("grad_skip", g_skip), ("grad_block", g_block), ("grad_in", g_x)):
                total[key] += g.double().pow(2).sum().item()
            skips.append(g_skip.flatten())
            blocks.append(g_block.flatten())
        row: dict[str, float | None] = {key: math.sqrt(value) for key, value in total.items()}
        block_grads = [param_grads[id(p)] for p in per_slice[0].params]
        row["param_grad"] = math.sqrt(sum(g.double().pow(2).sum().item() for g in block_grads if g is not None))
        skip, block = torch.cat(skips), torch.cat(blocks)
        row["cosine"] = _cosine(skip, block).item() if skip.any() and block.any() else None
        rows.append(row)
    return {"loss": loss.item(), "junctions": rows}


def _close(got: float | None, want: float | None, rel: float) -> bool:
    if got is None or want is None:
        return got is want
    return math.isclose(got, want, rel_tol=rel, abs_tol=1e-9)


def _assert_matches(report: dict[str, Any], expected: dict[str, Any], rel: float = 1e-5) -> None:
    assert _close(report["summary"]["loss"], expected["loss"], rel)
    assert len(report["junctions"]) == len(expected["junctions"])
    for junction, want in zip(report["junctions"], expected["junctions"]):
        for metric in METRICS:
            got = junction[metric]
            assert _close(got, want[metric], rel), (junction["name"], metric, got, want[metric])


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """What each rank of tests/distributed_worker.py measured."""
    out = tmp_path_factory.mktemp("ranks")
    done = _ranks([str(ROOT / "tests" / "distributed_worker.py"), str(out)])
    for rank, result in enumerate(done):
        assert result.returncode == 0, f"rank {rank}:\n{result.stderr[-4000:]}"
    return [json.loads((out / f"rank{rank}.json").read_text()) | {"out": str(out)} for rank in range(WORLD)]


def _batch(name: str) -> torch.Tensor:
    return _load_sample(name).example_input()  # type: ignore[no-any-return]


@pytest.mark.parametrize(("name", "shard", "verb"), CASES)
def test_every_metric_equals_the_reference_of_the_ranks_loss(measured, name: str, shard: str, verb: str) -> None:
    reports = measured[0][f"{name}/{shard}/{verb}"]["reports"]
    stops = [None] if verb == "inspect" else [None, "sg-skip", "sg-block"]
    for report, stop in zip(reports, stops, strict=True):
        assert report["probe"]["ranks"] == WORLD and report["probe"]["shard"] == shard
        _assert_matches(report, _reference(name, stop))


def test_every_rank_returns_the_same_report_after_one_all_reduce(measured) -> None:
    for case, result in measured[0].items():
        if case in ("out", "disagree"):
            continue
        assert result["reduces"] == 1, case  # a compare of three variants too
        assert result.get("untouched", True), case
        other = measured[1][case]["reports"]
        for mine, theirs in zip(result["reports"], other, strict=True):
            assert {k: v for k, v in mine.items() if k != "timings_s"} == {
                k: v for k, v in theirs.items() if k != "timings_s"
            }, case


def test_ranks_that_find_different_junctions_stop_with_one_clear_error(measured) -> None:
    for rank in range(WORLD):
        more, swapped = measured[rank]["disagree"]
        assert more.startswith("the ranks found different numbers of junctions (2.5 on average)")
        assert swapped.startswith("the ranks found different junctions (names or order differ)")


@pytest.mark.parametrize("shard", ["ddp", "fsdp"])
def test_without_batch_statistics_the_report_is_one_process_on_the_whole_batch(measured, shard: str) -> None:
    name = "prenorm_transformer"
    single = gradflow.compare(_load_sample(name).build(), _batch(name), loss="mse", sg_skip=True, sg_block=True)
    reports = measured[0][f"{name}/{shard}/compare"]["reports"]
    for report, expected in zip(reports, single.variants.values(), strict=True):
        _assert_matches(report, {"loss": expected.summary.loss,
                                 "junctions": [{m: getattr(j, m) for m in METRICS} for j in expected.junctions]})
        for param, want in zip(report["parameters"], expected.parameters, strict=True):
            assert param["name"] == want.name
            assert _close(param["grad_norm"] or 0.0, want.grad_norm or 0.0, 1e-5), param["name"]


def test_the_ranks_build_and_shard_the_weights_of_one_process(measured) -> None:
    from gradflow.loaders import load_source

    gathered = torch.load(Path(measured[0]["out"]) / "weights.pt", weights_only=True)
    single = dict(load_source(str(SAMPLES / "tiny_resnet.py"), seed=0).module.named_parameters())
    assert gathered.keys() == single.keys()
    for name, weight in single.items():
        assert torch.equal(gathered[name], weight.detach()), name


def test_inspect_under_torchrun_prints_the_one_process_report_on_rank_0(gradflow_cli) -> None:
    sample = str(SAMPLES / "prenorm_transformer.py")
    done = _ranks(["-m", "gradflow", "inspect", sample, "--shard", "fsdp", "-f", "json"])
    assert [r.returncode for r in done] == [0, 0], done[0].stderr[-2000:]
    assert done[1].stdout == ""
    report = json.loads(done[0].stdout)
    single = json.loads(gradflow_cli("inspect", sample, "-f", "json").stdout)
    assert report["probe"]["loss"] == single["probe"]["loss"] == "ce"  # each rank's labels: its slice of the batch's
    _assert_matches(report, {"loss": single["summary"]["loss"], "junctions": single["junctions"]})


def test_check_under_torchrun_exits_with_the_same_code_on_every_rank() -> None:
    dead = f"{ROOT / 'tests' / 'fixtures' / 'shapes.py'}:build_dead_relu"  # a block behind dead ReLUs
    done = _ranks(["-m", "gradflow", "check", dead, "--shard", "ddp"])
    assert [r.returncode for r in done] == [1, 1], done[0].stderr[-2000:]
    assert "dead" in done[0].stdout and done[1].stdout == ""


FAILING = '''
import torch
import torch.distributed as dist
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)

    def forward(self, x):
        if dist.get_rank() == 1:
            raise RuntimeError("no forward on this rank")
        return x + self.b(torch.tanh(self.a(x)))


def build():
    return Net()
'''


@pytest.fixture
def failing(tmp_path: Path) -> Path:
    path = tmp_path / "failing.py"
    path.write_text(FAILING)
    return path


def test_a_rank_that_fails_stops_every_rank_with_one_line_from_rank_0(failing: Path) -> None:
    # DDP's reducer keeps the failed rank's connections open: rank 0 would wait in its all-reduce
    # for the whole collective timeout, longer than HANG, if the failure did not stop it.
    done = _ranks(["-m", "gradflow", "inspect", str(failing), "--shard", "ddp", "--input-shape", "4,8",
                   "--collective-timeout", str(4 * HANG)])
    assert [r.returncode for r in done] == [2, 2]
    lines = [line for line in done[0].stderr.splitlines() if line.startswith("gradflow")]
    assert len(lines) == 1 and lines[0].startswith("gradflow: error: rank 1: "), done[0].stderr[-2000:]
    assert "RuntimeError: no forward on this rank" in lines[0]
    assert "gradflow" not in done[1].stderr and done[1].stdout == done[0].stdout == ""


def test_under_torchrun_a_failing_rank_makes_the_launcher_fail(failing: Path) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(WORLD),
               "-m", "gradflow", "inspect", str(failing), "--shard", "fsdp", "--input-shape", "4,8",
               "--collective-timeout", str(4 * HANG)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=HANG)
    assert result.returncode != 0
    assert "gradflow: error: rank 1: " in result.stderr


def test_shard_without_torchrun_is_one_line(gradflow_cli, monkeypatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    result = gradflow_cli("inspect", SAMPLES / "tiny_resnet.py", "--shard", "fsdp")
    assert result.exit_code == 2
    assert result.stderr.startswith("gradflow: error: --shard fsdp runs one process per rank, started by torchrun")
    assert "torchrun --nproc-per-node N -m gradflow" in result.stderr


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_on_cuda_with_nccl_equal_the_reference(tmp_path: Path) -> None:
    """As the CPU tests, with NCCL: one rank per GPU (a single GPU makes a job of one rank)."""
    world = min(WORLD, torch.cuda.device_count())
    done = _ranks([str(ROOT / "tests" / "distributed_worker.py"), str(tmp_path), "cuda"], world=world, cuda=True)
    for rank, result in enumerate(done):
        assert result.returncode == 0, f"rank {rank}:\n{result.stderr[-4000:]}"
    measured = json.loads((tmp_path / "rank0.json").read_text())
    for name, shard, verb in CASES:
        result = measured[f"{name}/{shard}/{verb}"]
        assert result["reduces"] == 1
        stops = [None] if verb == "inspect" else [None, "sg-skip", "sg-block"]
        for report, stop in zip(result["reports"], stops, strict=True):
            _assert_matches(report, _reference(name, stop, world), rel=1e-4)
