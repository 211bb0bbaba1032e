"""What the gate's finer judgement costs a measurement, model by model.

- Noting parameter reads: the forward recorder wraps `nn.Module.__getattr__`, so that a parameter
  read and then cut off (`.detach()`, `no_grad`, `.data`) is told from one never used. Reported:
  how many `__getattr__` calls one forward pass makes, the time of one lookup with and without the
  wrapper (medians over many runs of a tight loop, steadier on a shared machine than the
  difference of two whole forward passes), and what that adds to a forward pass.
- Finding each block's context (what it reads besides its fork, `gradflow.engine.context`): one
  pass over the edges of every measured block, timed on the junctions of one forward pass.

    python -m benchmarks.gate_costs [--models resnet50,gpt2,deep_mlp,junctions1000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.models import build
from gradflow.engine import sites
from gradflow.engine.recorder import ForwardRecorder, _parameter_reads_noted


def lookups_per_forward(model: torch.nn.Module, inputs: tuple) -> int:  # type: ignore[type-arg]
    original = torch.nn.Module.__getattr__
    calls = [0]

    def counting(module: torch.nn.Module, name: str):  # type: ignore[no-untyped-def]
        calls[0] += 1
        return original(module, name)

    torch.nn.Module.__getattr__ = counting  # type: ignore[method-assign]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        torch.nn.Module.__getattr__ = original  # type: ignore[method-assign]
    return calls[0]


def lookup_seconds(module: torch.nn.Module, name: str, wrapped: bool, n: int = 100_000) -> float:
    samples = []
    for _ in range(15):
        if wrapped:
            with sites.recording(), _parameter_reads_noted(ForwardRecorder(module)):
                tick = time.perf_counter()
                for _ in range(n):
                    getattr(module, name)
                samples.append((time.perf_counter() - tick) / n)
        else:
            tick = time.perf_counter()
            for _ in range(n):
                getattr(module, name)
            samples.append((time.perf_counter() - tick) / n)
    return statistics.median(samples)


def context_seconds(model: torch.nn.Module, inputs: tuple, runs: int = 20) -> tuple[int, float]:  # type: ignore[type-arg]
    """(junctions, median seconds of `contexts_of` over all of them)."""
    from gradflow.engine.context import contexts_of
    from gradflow.engine.junctions import all_nodes, find_junctions

    params = [p for p in model.parameters() if p.requires_grad]
    leaves = [t.detach().requires_grad_(True) for t in inputs if t.is_floating_point()]
    args = iter(leaves)
    out = model(*(next(args) if t.is_floating_point() else t for t in inputs))
    loss = (out[0] if isinstance(out, tuple) else out).float().sum()
    uses: dict = {}  # type: ignore[type-arg]
    nodes = all_nodes([loss.grad_fn], uses)
    found = find_junctions([loss.grad_fn], params, leaves, nodes=nodes, uses=uses)
    samples = []
    for _ in range(runs):
        tick = time.perf_counter()
        contexts_of(found, range(len(found)), params)
        samples.append(time.perf_counter() - tick)
    return len(found), statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,gpt2,deep_mlp,junctions1000")
    args = parser.parse_args()
    layer = torch.nn.Linear(2, 2)
    bare, wrapped = lookup_seconds(layer, "weight", False), lookup_seconds(layer, "weight", True)
    print(f"one parameter lookup: {bare * 1e6:.3f} us bare, {wrapped * 1e6:.3f} us wrapped")
    for name in args.models.split(","):
        model, inputs = build(name, quick=True)
        inputs = inputs if isinstance(inputs, tuple) else (inputs,)
        calls = lookups_per_forward(model, inputs)
        junctions, seconds = context_seconds(model, inputs)
        print(f"{name}: {calls} __getattr__ calls per forward pass, "
              f"{calls * (wrapped - bare) * 1e3:.3f} ms added; "
              f"contexts of {junctions} junctions: {seconds * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
