# Overhead of the ONNX executor against eager PyTorch, forward + backward, on CPU.
#
#   python -m tests.onnx.bench_executor [--repeats 30]     (from the repository root)
#
# For each model: export it (legacy and dynamo exporters), load the file with the executor,
# then time eager and executor forward+backward alternately (interleaved, same process, same
# inputs) and print the medians and their ratio. Not collected by pytest; no thresholds here.

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from gradflow.onnx import load_onnx_model
from tests.onnx.models import ResNet, TokenEncoder


def fwd_bwd(model: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
    for p in model.parameters():
        p.grad = None
    out = model(*args)
    out = out[0] if isinstance(out, tuple) else out
    out.float().square().mean().backward()


def export(model: nn.Module, args: tuple[torch.Tensor, ...], path: Path, dynamo: bool) -> None:
    kwargs: dict[str, object] = {"dynamo": dynamo}
    if not dynamo and model.training:
        kwargs.update(training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), verbose=False, **kwargs)


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


def cases() -> list[tuple[str, nn.Module, tuple[torch.Tensor, ...], bool]]:
    torch.manual_seed(0)
    resnet = ResNet(width=32, blocks=(2, 2, 2))
    images = (torch.randn(8, 3, 32, 32),)
    encoder = TokenEncoder(vocab=1000, dim=128, heads=4, layers=4, max_len=64, dropout=0.0)
    tokens = (torch.randint(0, 1000, (8, 64)),)
    return [
        ("resnet train  legacy", resnet, images, True),
        ("resnet eval   legacy", resnet, images, False),
        ("resnet eval   dynamo", resnet, images, False),
        ("encoder eval  legacy", encoder, tokens, False),
        ("encoder eval  dynamo", encoder, tokens, False),
        ("encoder train dynamo", encoder, tokens, True),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    options = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print(f"{'model / mode / exporter':24s} {'eager ms':>9s} {'executor ms':>12s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, model, args, train in cases():
            model.train(train)
            path = Path(tmp) / "model.onnx"
            export(model, args, path, dynamo=label.endswith("dynamo"))
            executor = load_onnx_model(path)
            medians = interleaved(
                {
                    "eager": lambda m=model, a=args: fwd_bwd(m, a),
                    "executor": lambda m=executor, a=args: fwd_bwd(m, a),
                },
                options.repeats,
            )
            eager, ours = medians["eager"] * 1e3, medians["executor"] * 1e3
            print(f"{label:24s} {eager:9.2f} {ours:12.2f} {ours / eager:6.2f}")


if __name__ == "__main__":
    main()
