"""`.pt` / `.pth` / `.ckpt` / `.bin` checkpoints from torch.save: a state dict (needs --arch) or
a pickled module (needs --trust, because unpickling runs code from the file). A Lightning
checkpoint is a state dict under `state_dict`, its keys prefixed with the attribute that holds
the model (see gradflow.loaders.state_dict)."""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradflow.errors import OptionError, SourceError
from gradflow.loaders._text import describe, shorten
from gradflow.loaders.base import LoadedModel, LoadOptions
from gradflow.loaders.lightning import lightning_section
from gradflow.loaders.registry import register
from gradflow.loaders.state_dict import load_into_arch

# Where training scripts commonly nest the state dict inside the saved dict.
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")

_GLOBAL = re.compile(r"GLOBAL (\S+?)(?:\s|$)")

# How a torch.save file begins: a zip archive, or (the legacy format) a pickle of protocol 2 to 5.
_TORCH_SAVE_HEAD = re.compile(rb"PK\x03\x04|\x80[\x02-\x05]")


@register(
    "checkpoint",
    form=".pt/.pth/.ckpt checkpoint (state dict with --arch, or pickled module with --trust)",
    extensions=(".pt", ".pth", ".ckpt", ".bin"),
    takes_arch=True,
)
def load_checkpoint(spec: str, options: LoadOptions) -> LoadedModel:
    """Load a torch.save file safely (weights only); fall back to full unpickling only with
    `trust`. A state dict is loaded strictly into the module that `arch` builds."""
    path = Path(spec).expanduser()
    obj = _load(path, spec, options.trust)
    module = _as_module(obj)
    if module is not None:
        if options.arch is not None:
            raise OptionError(
                f"{spec} holds a whole pickled module; --arch applies only to state dicts"
            )
        return LoadedModel(module=module, source=spec, format="pickle")
    state_dict = _find_state_dict(obj)
    if state_dict is None:
        raise SourceError(f"{spec} holds {_what(obj)}, not a state dict or an nn.Module")
    if options.arch is None:
        raise SourceError(
            f"{spec} is a state dict ({len(state_dict)} tensors) and holds no code: pass --arch "
            "with the code that builds the model (file.py[:NAME] or package.module:NAME)"
        )
    return load_into_arch(state_dict, spec, options.arch, options.seed, format="state_dict")


def _load(path: Path, spec: str, trust: bool) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise _corrupt(spec, e) from e
        refused = e
    except Exception as e:
        raise _corrupt(spec, e) from e
    if not _looks_pickled(path, refused):
        raise SourceError(
            f"{spec} is not a PyTorch file: its bytes are neither a torch.save archive nor a "
            "pickle (corrupt, or another format under this name); save the model again with torch.save"
        ) from refused

    found = _GLOBAL.search(str(refused))
    what = f"pickled Python objects ({found[1]})" if found else "pickled Python objects"
    if not trust:
        section = lightning_section(path, found[1] if found else None)
        if section is not None:
            raise SourceError(
                f"{spec} is a Lightning checkpoint whose {section} hold {what}, not just "
                "tensors: unpickling them runs code from the file; pass --trust to load it if "
                "you trust where it came from"
            ) from refused
        raise SourceError(
            f"{spec} holds {what}, not just tensors: unpickling it runs code from the file; "
            "pass --trust to load it if you trust where it came from"
        ) from refused
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (ModuleNotFoundError, AttributeError) as e:
        raise SourceError(
            f"unpickling {spec} needs the code of the classes it holds ({describe(e)}); make "
            "that code importable (PYTHONPATH) or save a state dict and use --arch"
        ) from e
    except Exception as e:
        raise _corrupt(spec, e) from e


def _looks_pickled(path: Path, refused: BaseException) -> bool:
    """Whether weights_only refused a real pickle (one naming a global it may not load, or a
    torch.save file), rather than bytes that are no pickle at all: only then may --trust help."""
    if _GLOBAL.search(str(refused)):
        return True
    with open(path, "rb") as f:
        return _TORCH_SAVE_HEAD.match(f.read(4)) is not None


def _corrupt(spec: str, e: BaseException) -> SourceError:
    return SourceError(
        f"cannot read checkpoint {spec}: the file is truncated or corrupt, or not a torch.save "
        f"file ({describe(e)})"
    )


def _as_module(obj: Any) -> Any:
    """The nn.Module `obj` is, or holds under a wrapper key (only possible with --trust)."""
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), torch.nn.Module):
                return obj[key]
    return None


def _is_state_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, Mapping) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _find_state_dict(obj: Any) -> Mapping[str, Any] | None:
    """`obj` itself if it maps names to tensors, else such a mapping under a wrapper key."""
    if _is_state_dict(obj):
        return obj
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if _is_state_dict(obj.get(key)):
                return obj[key]
    return None


def _what(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = [repr(k) for k in list(obj)[:50]]
        return f"a dict with keys {shorten(keys)}" if keys else "an empty dict"
    return f"a {type(obj).__module__}.{type(obj).__qualname__}"
