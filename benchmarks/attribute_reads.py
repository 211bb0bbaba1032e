"""What noting parameter reads costs: the forward recorder wraps `nn.Module.__getattr__` so that
a parameter read and then cut off (`.detach()`, `no_grad`, `.data`) is told from one never used.

For each benchmark model: how many `__getattr__` calls one forward pass makes, the time of one
lookup with and without the wrapper, and what that adds to a forward pass. The lookup times are
medians over many runs of a tight loop, which is steadier on a shared machine than the difference
of two whole forward passes.

    python -m benchmarks.attribute_reads [--models resnet50,gpt2,deep_mlp]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,gpt2,deep_mlp")
    args = parser.parse_args()
    layer = torch.nn.Linear(2, 2)
    bare, wrapped = lookup_seconds(layer, "weight", False), lookup_seconds(layer, "weight", True)
    print(f"one parameter lookup: {bare * 1e6:.3f} us bare, {wrapped * 1e6:.3f} us wrapped")
    for name in args.models.split(","):
        model, inputs = build(name, quick=True)
        inputs = inputs if isinstance(inputs, tuple) else (inputs,)
        calls = lookups_per_forward(model, inputs)
        print(f"{name}: {calls} __getattr__ calls per forward pass, "
              f"{calls * (wrapped - bare) * 1e3:.3f} ms added")


if __name__ == "__main__":
    main()
