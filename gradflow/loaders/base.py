"""The loader's result: the module plus what we know about where it came from."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported lazily everywhere in gradflow.loaders
    import torch


@dataclass
class LoadedModel:
    """An nn.Module built from what the user typed.

    Attributes:
        module: the model, on CPU, exactly as built or loaded (mode, grads, hooks untouched).
        source: the source as the user typed it.
        format: "python" | "import" | "timm" | "huggingface" | "state_dict" | "pickle"
            | "torchscript" | "torch.export" | "onnx".
        example_input: a zero-argument function returning the probe input (a tensor, a tuple of
            positional args or a dict of kwargs): the source's `example_input()` if it defines
            one, or the sample inputs stored in a torch.export program.
        input_specs: ONNX only: the graph's input specs, as the executor reports them.
    """

    module: torch.nn.Module
    source: str
    format: str
    example_input: Callable[[], Any] | None = None
    input_specs: list | None = None


@dataclass(frozen=True)
class LoadOptions:
    """What the user said besides the source.

    Attributes:
        arch: code that builds the model for a state dict.
        trust: allow what runs code from the source: unpickling, a Hugging Face config's custom
            code.
        seed: torch's global RNG is seeded with it right before code builds the model, so that a
            build() that does not seed itself gives the same weights every run; None leaves the
            RNG alone.
        arguments: the keyword arguments of a call `NAME(key=literal, ...)` (code sources only);
            None when the source is no call.
        pretrained: timm:NAME only: build with its pretrained weights.
        meta: build the structure only (the loader runs under `torch.device("meta")`); a loader
            that reads weights skips them.
    """

    arch: str | None = None
    trust: bool = False
    seed: int | None = None
    arguments: Mapping[str, Any] | None = None
    pretrained: bool = False
    meta: bool = False
