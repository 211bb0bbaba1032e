"""The cost of gradflow's one all-reduce under torchrun, against the single-process run.

    torchrun --standalone --nproc-per-node 2 -m benchmarks.distributed [--models deep_mlp,resnet50,gpt2]
             [--shard fsdp|ddp] [--repeats N] [--quick] [--json FILE]

Each rank builds the benchmark model with the same seed, wraps it as `gradflow inspect --shard`
does and measures its slice of the probe batch with `gradflow.inspect`, N times after one warm-up;
the report's `timings_s["reduce"]` is the all-reduce with its packing and unpacking, `total` the
whole measurement; beside it, the wrapped model's own step (forward, loss, backward, with the
wrapper's collectives) without gradflow. Rank 0 then measures the unwrapped model on the whole
batch alone, N times, while the other ranks wait at a barrier. Medians are printed by rank 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/distributed.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.distributed as dist

import gradflow
from benchmarks.models import build
from gradflow.cli.options import Shard
from gradflow.cli.torchrun import split, wrapped
from gradflow.probe import Probe, as_probe, probe_loss, select_output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="deep_mlp,resnet50,gpt2")
    parser.add_argument("--shard", choices=[s.value for s in Shard], default="fsdp")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="the benchmark models' small inputs")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    dist.init_process_group("gloo", timeout=timedelta(seconds=600))
    rank, size = dist.get_rank(), dist.get_world_size()
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model, inputs = build(name, quick=args.quick)
        batch = as_probe(inputs)
        part = split(batch, rank, size)
        sharded = wrapped(model, Shard(args.shard), part, "train", 0)
        params = sum(1 for p in sharded.parameters() if p.requires_grad)
        reduce_s, ranks_s, bare_s = [], [], []
        for k in range(args.repeats + 1):
            dist.barrier()
            tick = time.perf_counter()
            _bare_step(sharded, part)
            bare = time.perf_counter() - tick
            dist.barrier()
            tick = time.perf_counter()
            report = gradflow.inspect(sharded, part)
            if k:
                ranks_s.append(time.perf_counter() - tick)
                reduce_s.append(report.timings_s["reduce"])
                bare_s.append(bare)
        dist.barrier()
        single_s = []
        if rank == 0:
            alone, _ = build(name, quick=args.quick)
            for k in range(args.repeats + 1):
                tick = time.perf_counter()
                gradflow.inspect(alone, batch)
                if k:
                    single_s.append(time.perf_counter() - tick)
        dist.barrier()
        if rank == 0:
            rows.append({
                "model": name,
                "shard": args.shard,
                "ranks": size,
                "junctions": len(report.junctions),
                "floats_reduced": 13 + 8 * params,  # one variant (gradflow.engine.reduce)
                "reduce_ms": 1e3 * statistics.median(reduce_s),
                "ranks_ms": 1e3 * statistics.median(ranks_s),
                "bare_ranks_ms": 1e3 * statistics.median(bare_s),
                "single_ms": 1e3 * statistics.median(single_s),
            })
    if rank == 0:
        print(f"{'model':<10} {'shard':<5} {'ranks':>5} {'junctions':>9} {'floats':>7} {'all-reduce':>11} "
              f"{'share':>6} {'inspect, ranks':>15} {'bare step, ranks':>17} {'inspect, 1 process':>19}")
        for r in rows:
            print(f"{r['model']:<10} {r['shard']:<5} {r['ranks']:>5} {r['junctions']:>9} "
                  f"{r['floats_reduced']:>7} "
                  f"{r['reduce_ms']:>8.2f} ms {100 * r['reduce_ms'] / r['ranks_ms']:>5.1f}% "
                  f"{r['ranks_ms']:>12.1f} ms {r['bare_ranks_ms']:>14.1f} ms {r['single_ms']:>16.1f} ms")
        print(f"torch {torch.__version__} · gloo on the CPU · {args.repeats} runs each, medians")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
    dist.destroy_process_group()


def _bare_step(model: torch.nn.Module, part: Probe) -> None:
    """The wrapped model's own training step on this rank's slice, without gradflow: forward, the
    probe's loss, backward (the wrapper's collectives included), gradients dropped."""
    share = (dist.get_rank(), dist.get_world_size())
    loss = probe_loss(select_output(model(*part.args, **part.kwargs)), "auto", 0, share)
    loss.backward()
    for param in model.parameters():
        param.grad = None


if __name__ == "__main__":
    main()
