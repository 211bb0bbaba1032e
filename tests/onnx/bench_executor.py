# Overhead of the ONNX executor against eager PyTorch, forward + backward, on CPU.
#
#   python -m tests.onnx.bench_executor [--repeats 40] [--threads 1]   (from the repository root)
#
# For each model and mode: export it (legacy or dynamo exporter), load the file with the
# executor, then time eager and executor forward+backward alternately (interleaved, same
# process, same inputs) and print the medians and their ratio. One intra-op thread by default,
# so that other load on the machine disturbs both sides alike. Not collected by pytest; no
# thresholds here.

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from gradflow.onnx import load_onnx_model
from tests.onnx.conftest import export
from tests.onnx.models import ResNet, TokenEncoder, gpt2


def fwd_bwd(model: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
    for p in model.parameters():
        p.grad = None
    out = model(*args)
    out = out[0] if isinstance(out, tuple) else out
    out.float().square().mean().backward()


def interleaved(
    runs: dict[str, Callable[[], None]], repeats: int, warmup: int = 5
) -> dict[str, float]:
    for run in runs.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


Case = tuple[str, Callable[[], nn.Module], Callable[[], tuple[torch.Tensor, ...]], bool, bool]


def cases() -> list[Case]:
    def resnet() -> nn.Module:
        return ResNet(width=32, blocks=(2, 2, 2))

    def encoder() -> nn.Module:
        return TokenEncoder(vocab=1000, dim=128, heads=4, layers=4, max_len=64, dropout=0.0)

    def images() -> tuple[torch.Tensor, ...]:
        return (torch.randn(8, 3, 32, 32),)

    def tokens() -> tuple[torch.Tensor, ...]:
        return (torch.randint(0, 1000, (8, 64)),)

    def gpt2_inputs() -> tuple[torch.Tensor, ...]:
        return torch.randint(1, 100, (4, 32)), torch.ones(4, 32, dtype=torch.long)

    # The tiny test models, where per-operator Python overhead weighs most.
    def small_images() -> tuple[torch.Tensor, ...]:
        return (torch.randn(2, 3, 16, 16),)

    def small_tokens() -> tuple[torch.Tensor, ...]:
        return (torch.randint(0, 50, (2, 12)),)

    # (label, model, inputs, train mode, dynamo exporter)
    return [
        ("resnet   train legacy", resnet, images, True, False),
        ("resnet   eval  legacy", resnet, images, False, False),
        ("resnet   eval  dynamo", resnet, images, False, True),
        ("encoder  train legacy", encoder, tokens, True, False),
        ("encoder  eval  legacy", encoder, tokens, False, False),
        ("encoder  eval  dynamo", encoder, tokens, False, True),
        ("gpt2-2L  train legacy", gpt2, gpt2_inputs, True, False),
        ("gpt2-2L  eval  dynamo", gpt2, gpt2_inputs, False, True),
        ("tiny-cnn train legacy", ResNet, small_images, True, False),
        ("tiny-enc eval  legacy", TokenEncoder, small_tokens, False, False),
        ("tiny-enc eval  dynamo", TokenEncoder, small_tokens, False, True),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU, "
          f"median of {options.repeats} interleaved runs")
    print(f"{'model    mode  exporter':24s} {'eager ms':>9s} {'executor ms':>12s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, make_model, make_args, train, dynamo in cases():
            torch.manual_seed(0)
            model = make_model().train(train)
            args = make_args()
            path = Path(tmp) / "model.onnx"
            export(model, args, path, dynamo=dynamo)
            executor = load_onnx_model(path)

            def eager_run(m: nn.Module = model, a: tuple[torch.Tensor, ...] = args) -> None:
                fwd_bwd(m, a)

            def executor_run(m: nn.Module = executor, a: tuple[torch.Tensor, ...] = args) -> None:
                fwd_bwd(m, a)

            medians = interleaved({"eager": eager_run, "executor": executor_run},
                                  options.repeats)
            eager, ours = medians["eager"] * 1e3, medians["executor"] * 1e3
            print(f"{label:24s} {eager:9.2f} {ours:12.2f} {ours / eager:6.2f}")


if __name__ == "__main__":
    main()
