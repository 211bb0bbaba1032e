"""What `gradflow.watch` costs a training loop.

- loop: chunks of training steps (forward, backward, SGD step) of a model with and without a
  `watch(every=100)`, interleaved in one process (`benchmarks.timing.interleaved`); each watched
  chunk holds its share of measured steps. The figure is the median ratio of the chunks' times
  (target: at most 1.01).
- step: one measured training step (`watch(every=1)`: every step measured, the junction search
  replayed after the first) against one plain step, per model (target: at most 1.10).

The two models of a pair are copies, trained side by side on the same batch.

    python -m benchmarks.watch [--models deep_mlp,resnet50,gpt2] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import gradflow
from benchmarks.models import build
from benchmarks.timing import interleaved
from gradflow.probe import as_probe, select_output


def _trainer(model: torch.nn.Module, inputs: Any) -> Callable[[], None]:
    """One training step of `model` on `inputs`: forward, an mse loss on the output, backward,
    an SGD step (lr 1e-4, so many steps keep the model's numbers in range)."""
    probe = as_probe(inputs)
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        out = select_output(model(*probe.args, **probe.kwargs))
        out.float().pow(2).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _chunk(step: Callable[[], None], steps: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(steps):
            step()

    return run


def loop_figure(name: str, quick: bool, every: int, steps: int, pairs: int) -> dict[str, Any]:
    model, inputs = build(name, quick=quick)
    watched = copy.deepcopy(model)
    bare = _chunk(_trainer(model, inputs), steps)
    w = gradflow.watch(watched, every=every, on_flag=lambda record, rule: None)
    try:
        tool = _chunk(_trainer(watched, inputs), steps)
        result = interleaved(bare, tool, pairs=pairs, warmup=1).summary()
    finally:
        w.close()
    measured = len({r.step for r in w.records})
    return {**result, "model": name, "every": every, "steps_per_chunk": steps,
            "steps_watched": w.steps, "steps_measured": measured}


def step_figure(name: str, quick: bool, pairs: int) -> dict[str, Any]:
    model, inputs = build(name, quick=quick)
    watched = copy.deepcopy(model)
    bare = _trainer(model, inputs)
    w = gradflow.watch(watched, every=1, on_flag=lambda record, rule: None)
    try:
        tool = _trainer(watched, inputs)
        tool()  # the first measured step searches the graph; the later ones replay that search
        result = interleaved(bare, tool, pairs=pairs, warmup=1).summary()
    finally:
        w.close()
    return {**result, "model": name, "junctions": len(w.junctions)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="deep_mlp,resnet50,gpt2", help="models for the step figure")
    parser.add_argument("--loop-model", default="deep_mlp", help="the model of the loop figure")
    parser.add_argument("--quick", action="store_true", help="small inputs (resnet50 64x64, gpt2 32 tokens)")
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--steps", type=int, default=200, help="training steps per timed chunk of the loop")
    parser.add_argument("--loop-pairs", type=int, default=11)
    parser.add_argument("--step-pairs", type=int, default=21)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results: dict[str, Any] = {
        "settings": {**{k: v for k, v in vars(args).items() if k != "json"},
                     "torch": torch.__version__, "gradflow": gradflow.__version__,
                     "threads": torch.get_num_threads(), "machine": platform.machine(),
                     "python": platform.python_version(),
                     "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    loop = loop_figure(args.loop_model, args.quick, args.every, args.steps, args.loop_pairs)
    results["loop"] = loop
    print(f"loop  {args.loop_model}: watch(every={args.every}) / plain = {loop['ratio_median']:.4f}x "
          f"(median of {loop['pairs']} chunks of {args.steps} steps, "
          f"{loop['steps_measured']} steps measured; "
          f"{loop['bare_median_s'] * 1e3 / args.steps:.3f} ms per plain step)")
    results["step"] = {}
    for name in [m for m in args.models.split(",") if m]:
        row = step_figure(name, args.quick, args.step_pairs)
        results["step"][name] = row
        print(f"step  {name}: measured step / plain step = {row['ratio_median']:.3f}x "
              f"({row['junctions']} junctions; plain {row['bare_median_s'] * 1e3:.2f} ms, "
              f"measured {row['tool_median_s'] * 1e3:.2f} ms)")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
