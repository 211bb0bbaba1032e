"""Models exported with torch.onnx.export, once per session, for the executor tests."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.onnx import models


@dataclass(frozen=True)
class Exported:
    """A torch model, the inputs it was exported with, and the ONNX file."""

    key: str
    path: Path
    model: nn.Module
    args: tuple[torch.Tensor, ...]
    dynamo: bool
    train: bool


def _images() -> tuple[torch.Tensor, ...]:
    return (torch.randn(2, 3, 16, 16),)


# Token ids start at 1: id 0 is BERT's padding_idx, whose embedding row torch never updates,
# something ONNX cannot express (its Gather gives that row a gradient like any other).
def _ids(vocab: int) -> Callable[[], tuple[torch.Tensor, ...]]:
    return lambda: (torch.randint(1, vocab, (2, 12)),)


def _ids_and_mask() -> tuple[torch.Tensor, ...]:
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, -3:] = 0  # right padding on the second sequence
    return torch.randint(1, 100, (2, 12)), mask


# name -> (model factory, input factory, junctions, projection shortcuts)
MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[], tuple[torch.Tensor, ...]], int, int]]
MODELS = {
    "resnet": (lambda: models.ResNet(), _images, 3, 1),
    "mobilenet": (models.MobileNetish, _images, 1, 0),
    "encoder": (lambda: models.TokenEncoder(), _ids(50), 4, 0),
    "gpt2": (models.gpt2, _ids_and_mask, 4, 0),
    "bert": (models.bert, _ids_and_mask, 4, 0),
}

# (model, exporter, mode, opset or None for the exporter's default)
CASES: list[tuple[str, str, str, int | None]] = [
    (name, exporter, mode, None)
    for name in MODELS
    for exporter in ("dynamo", "legacy")
    for mode in ("eval", "train")
] + [
    # Opset 23: the dynamo exporter emits the fused Attention operator.
    ("encoder", "dynamo", "eval", 23),
    ("gpt2", "dynamo", "eval", 23),
    ("bert", "dynamo", "eval", 23),
    # Opset 14: no LayerNormalization yet, so it is spelled out with ReduceMean, Pow, Sqrt.
    ("encoder", "legacy", "eval", 14),
    ("gpt2", "legacy", "train", 14),
    # Opset 13: BatchNormalization selects training mode by its outputs.
    ("resnet", "legacy", "train", 13),
]


def case_id(case: tuple[str, str, str, int | None]) -> str:
    name, exporter, mode, opset = case
    return f"{name}-{exporter}-{mode}" + (f"-opset{opset}" if opset else "")


def export(model: nn.Module, args: tuple[torch.Tensor, ...], path: Path, *, dynamo: bool,
           opset: int | None = None) -> None:
    """torch.onnx.export, quietly; legacy training-mode exports keep training semantics."""
    kwargs: dict[str, Any] = {"dynamo": dynamo}
    if opset is not None:
        kwargs["opset_version"] = opset
    if not dynamo and model.training:
        kwargs.update(training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), verbose=False, **kwargs)


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Exported]:
    """exported(name, exporter, mode, opset) -> Exported, exporting each case once."""
    folder = tmp_path_factory.mktemp("exported")
    cache: dict[str, Exported] = {}

    def get(name: str, exporter: str, mode: str, opset: int | None = None) -> Exported:
        key = case_id((name, exporter, mode, opset))
        if key not in cache:
            make_model, make_args, _, _ = MODELS[name]
            torch.manual_seed(0)
            model = make_model().train(mode == "train")
            args = make_args()
            path = folder / f"{key}.onnx"
            export(model, args, path, dynamo=exporter == "dynamo", opset=opset)
            cache[key] = Exported(key, path, model, args, exporter == "dynamo", mode == "train")
        return cache[key]

    return get
