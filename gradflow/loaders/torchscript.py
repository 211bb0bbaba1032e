"""TorchScript archives from torch.jit.save, whatever their extension (.pt, .ts, .jit)."""

from __future__ import annotations

from pathlib import Path

from gradflow.errors import SourceError
from gradflow.loaders._text import describe
from gradflow.loaders.base import LoadedModel, LoadOptions
from gradflow.loaders.registry import register


@register("torchscript", form="TorchScript archive (.pt/.ts/.jit)", extensions=(".ts", ".jit"))
def load_torchscript(spec: str, options: LoadOptions) -> LoadedModel:
    """`torch.jit.load` onto the CPU."""
    import torch

    try:
        module = torch.jit.load(str(Path(spec).expanduser()), map_location="cpu")
    except Exception as e:
        raise SourceError(
            f"cannot load TorchScript archive {spec}: truncated, corrupt or not saved by "
            f"torch.jit.save ({describe(e)})"
        ) from e
    return LoadedModel(module=module, source=spec, format="torchscript")
