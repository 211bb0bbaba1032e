"""`timm:NAME[(key=value, ...)]`: `timm.create_model(NAME, pretrained=False, **arguments)`.

`--pretrained` asks timm for its pretrained weights, which come from the Hugging Face Hub (or
its local cache).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from gradflow.errors import SourceError
from gradflow.loaders._code import seed_rng
from gradflow.loaders._quiet import quiet_libraries
from gradflow.loaders._text import describe
from gradflow.loaders.base import LoadedModel, LoadOptions
from gradflow.loaders.call import call_text
from gradflow.loaders.registry import register

PREFIX = "timm:"
# An architecture name with an optional pretrained tag: resnet50, vit_base_patch16_224.augreg_in21k
_NAME = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?")


@register("timm", form="timm:NAME", is_code=True)
def load_timm(spec: str, options: LoadOptions) -> LoadedModel:
    """Build a timm model by name; with `pretrained`, with timm's pretrained weights."""
    name = spec[len(PREFIX) :]
    if not _NAME.fullmatch(name):
        raise SourceError(f"{spec}: {name!r} is not a timm model name (e.g. timm:resnet50)")
    try:
        import timm
    except ImportError as e:
        raise SourceError(f"{spec} needs the timm package: pip install timm") from e
    if not timm.is_model(name):
        raise SourceError(_unknown(name, timm.list_models()))
    arguments: dict[str, Any] = dict(options.arguments or {})
    label = f"{spec}{call_text(arguments) if options.arguments is not None else ''}"
    seed_rng(options.seed)
    try:
        with quiet_libraries():
            module = timm.create_model(name, pretrained=options.pretrained, **arguments)
    except Exception as e:
        if options.pretrained and _not_downloadable(e):
            raise SourceError(
                f"{label} --pretrained: its pretrained weights are not in the local Hugging Face "
                "cache and cannot be downloaded (no network, or HF_HUB_OFFLINE is set); get them "
                "once with network, or drop --pretrained"
            ) from e
        raise SourceError(f"building {label} failed: {describe(e)}") from e
    return LoadedModel(module=module, source=spec, format="timm")


def _not_downloadable(error: Exception) -> bool:
    """Whether the Hub could not be reached and the cache had no copy."""
    try:
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
    except ImportError:
        return False
    return isinstance(error, LocalEntryNotFoundError | OfflineModeIsEnabled)


def _unknown(name: str, known: list[str]) -> str:
    message = f"unknown timm model {name!r}"
    close = difflib.get_close_matches(name, known, n=3)
    if close:
        message += f"; did you mean {', '.join(close)}?"
    return message + " (timm.list_models() lists them all)"
