"""Turn what the user typed into an nn.Module.

Sources:
    path/to/file.py[:NAME]   NAME (default `build`): an nn.Module subclass, a function returning
                             a module, or a module instance; the file may define example_input()
    package.module:NAME      the same, from an importable module
    timm:NAME                timm.create_model(NAME) (pretrained weights with `pretrained`)
    NAME(key=literal, ...)   after any of the three above: constructor arguments, each value
                             parsed with ast.literal_eval
    path/to/dir              a Hugging Face model directory (config.json, as save_pretrained
    hf:ORG/NAME              writes it), or a Hub id, built with from_pretrained
    model.pt / .pth / .ckpt  torch.save checkpoint: a state dict (needs `arch`; DDP, compile and
                             Lightning key prefixes are matched) or a pickled module (needs `trust`)
    model.safetensors        a state dict (needs `arch`), or its shards' .safetensors.index.json
    model.pt / .ts / .jit    TorchScript archive (recognised by content, whatever the extension)
    model.pt2                torch.export program
    model.onnx               ONNX model, run by gradflow.onnx

Every failure the user can cause raises a SourceError (or an OptionError for an option that
does not apply) with a one-line message. torch is imported only when something is loaded.

Example:
    >>> loaded = load_source("sample_models/tiny_resnet.py")
    >>> loaded.format, type(loaded.module).__name__
    ('python', 'TinyResNet')
"""

from __future__ import annotations

import itertools
from typing import Any

from gradflow.errors import OptionError, SourceError

# Importing a loader registers it; the order here is the order messages list the forms in.
# isort: off
from gradflow.loaders import python_source, import_path, timm_models  # noqa: F401
from gradflow.loaders import huggingface, checkpoint, safetensors_file  # noqa: F401
from gradflow.loaders import torchscript, exported, onnx  # noqa: F401

# isort: on
from gradflow.loaders.base import LoadedModel, LoadOptions
from gradflow.loaders.call import split_call
from gradflow.loaders.detect import detect
from gradflow.loaders.registry import Loader, SourceKind, get_loader, register

__all__ = ["LoadedModel", "SourceKind", "load_module", "load_source", "register"]


def load_source(
    spec: str,
    *,
    arch: str | None = None,
    trust: bool = False,
    meta: bool = False,
    seed: int | None = None,
    pretrained: bool = False,
) -> LoadedModel:
    """Load the model that `spec` names.

    Args:
        spec: a source in any accepted form (see the module docstring).
        arch: code that builds the model (`file.py[:NAME]`, `package.module:NAME` or
            `timm:NAME`, each with optional constructor arguments), needed when `spec` is a
            state dict (.pt/.pth/.ckpt/.safetensors), and refused for every other kind.
        trust: allow what runs code from the source: unpickling a checkpoint that holds Python
            objects, a Hugging Face config's custom code (auto_map).
        meta: build the model on the meta device (no memory for weights): for code sources, a
            Hugging Face model (from its config), and a state dict with `arch` (whose weights
            are then not needed).
        seed: seed torch's global RNG with this right before code builds the model (a code
            source, `arch`, or the weights a Hugging Face directory lacks), so that code which
            does not seed itself builds the same weights every run; None leaves the RNG alone.
        pretrained: `timm:NAME` only: build it with timm's pretrained weights.

    Returns:
        The LoadedModel, its module on CPU.

    Raises:
        SourceError: the source cannot be found, read or turned into an nn.Module.
        OptionError: an option that does not apply to this kind of source.

    Example:
        >>> load_source("torch.nn:Identity").format
        'import'
        >>> load_source("torch.nn:Linear(in_features=4, out_features=2)").module.out_features
        2
    """
    target, arguments = split_call(spec)
    kind = detect(target)
    loader = get_loader(kind)
    _check_options(spec, loader, arguments, arch, pretrained, meta)
    options = LoadOptions(
        arch=arch, trust=trust, seed=seed, arguments=arguments, pretrained=pretrained, meta=meta
    )
    if meta:
        return _on_meta(spec, target, loader, options)
    loaded = loader.load(target, options)
    loaded.source = spec
    loaded.module = _on_cpu(loaded.module, spec)
    return loaded


def load_module(spec: str, *, seed: int | None = None) -> LoadedModel:
    """Build a model from code only: `file.py[:NAME]`, `package.module:NAME` or `timm:NAME`, each
    with optional constructor arguments (used for --arch), with torch's global RNG seeded with
    `seed` (if given) right before it is built.

    Raises:
        SourceError: `spec` is not a code source, or the code cannot build a module.
    """
    target, arguments = split_call(spec)
    loader = get_loader(detect(target))
    if not loader.is_code:
        raise SourceError(
            f"{spec} is a {loader.kind.name} source, not code: give the code that builds the "
            "model as file.py[:NAME], package.module:NAME or timm:NAME"
        )
    loaded = loader.load(target, LoadOptions(seed=seed, arguments=arguments))
    loaded.source = spec
    loaded.module = _on_cpu(loaded.module, spec)
    return loaded


def _check_options(
    spec: str,
    loader: Loader,
    arguments: dict[str, Any] | None,
    arch: str | None,
    pretrained: bool,
    meta: bool,
) -> None:
    """Refuse what does not apply to this kind of source, instead of ignoring it."""
    kind = loader.kind.name
    if arguments is not None and not loader.is_code:
        raise SourceError(
            f"{spec}: constructor arguments NAME(key=value, ...) apply to code (file.py:NAME, "
            f"package.module:NAME, timm:NAME); this is a {loader.form}"
        )
    if arch is not None and not loader.takes_arch:
        raise OptionError(
            f"--arch applies only to state-dict checkpoints; {spec} is a {kind} source"
        )
    if pretrained and kind != "timm":
        raise OptionError(f"--pretrained applies to timm:NAME sources; {spec} is a {kind} source")
    if pretrained and meta:
        raise OptionError(
            "--pretrained loads weights and --device meta builds the model without any: drop one"
        )


def _on_meta(spec: str, target: str, loader: Loader, options: LoadOptions) -> LoadedModel:
    """Build under `torch.device("meta")`: structure without storage. Code and a Hugging Face
    config build so themselves; for a state dict, the code in --arch builds it."""
    import torch

    if loader.builds_on_meta:
        code, code_loader = target, loader
    elif options.arch is not None:
        code, arguments = split_call(options.arch)
        code_loader = get_loader(detect(code))
        if not code_loader.is_code:
            raise SourceError(f"--arch {options.arch}: not code; give file.py[:NAME], "
                              "package.module:NAME or timm:NAME")
        options = LoadOptions(seed=options.seed, arguments=arguments, meta=True)
    else:
        raise OptionError(
            f"--device meta builds the model from code without weights: {spec} is a "
            f"{loader.form}; give the code with --arch, or use --device cpu"
        )
    with torch.device("meta"):
        loaded = code_loader.load(code, options)
    loaded.source = spec
    return loaded


def _on_cpu(module: Any, spec: str) -> Any:
    """`module` itself when all its tensors are on the CPU, else moved there."""
    tensors = itertools.chain(module.parameters(), module.buffers())
    if all(t.device.type == "cpu" for t in tensors):
        return module
    try:
        return module.to("cpu")
    except Exception as e:
        raise SourceError(f"cannot move the model from {spec} to the CPU: {e}") from e
