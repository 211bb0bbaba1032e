"""Turn what the user typed into an nn.Module.

Sources:
    path/to/file.py[:NAME]   NAME (default `build`): an nn.Module subclass, a function returning
                             a module, or a module instance; the file may define example_input()
    package.module:NAME      the same, from an importable module
    model.pt / model.pth     torch.save checkpoint: a state dict (needs `arch`) or a pickled
                             module (needs `trust`)
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
from gradflow.loaders import python_source, import_path  # noqa: F401
from gradflow.loaders import checkpoint, torchscript, exported, onnx  # noqa: F401

# isort: on
from gradflow.loaders.base import LoadedModel, LoadOptions
from gradflow.loaders.detect import IMPORT, PYTHON, detect
from gradflow.loaders.registry import SourceKind, get_loader, register

__all__ = ["LoadedModel", "SourceKind", "load_module", "load_source", "register"]


def load_source(
    spec: str,
    *,
    arch: str | None = None,
    trust: bool = False,
    meta: bool = False,
    seed: int | None = None,
) -> LoadedModel:
    """Load the model that `spec` names.

    Args:
        spec: a source in any accepted form (see the module docstring).
        arch: code that builds the model (`file.py[:NAME]` or `package.module:NAME`), needed
            when `spec` is a state-dict checkpoint, and refused for every other kind.
        trust: allow unpickling a checkpoint that holds Python objects; this runs code from
            the file.
        meta: build the model on the meta device (no memory for weights): for code sources,
            and for a state dict with `arch` (whose weights are then not needed).
        seed: seed torch's global RNG with this right before code builds the model (a code
            source, or `arch`), so that code which does not seed itself builds the same weights
            every run; None leaves the RNG alone.

    Returns:
        The LoadedModel, its module on CPU.

    Raises:
        SourceError: the source cannot be found, read or turned into an nn.Module.
        OptionError: `arch` was given for a source that is not a state dict.

    Example:
        >>> load_source("torch.nn:Identity").format
        'import'
    """
    kind = detect(spec)
    loader = get_loader(kind)
    if meta:
        return _on_meta(spec, kind, arch, seed)
    if arch is not None and not loader.takes_arch:
        raise OptionError(
            f"--arch applies only to state-dict checkpoints; {spec} is a {kind.name} source"
        )
    loaded = loader.load(spec, LoadOptions(arch=arch, trust=trust, seed=seed))
    loaded.module = _on_cpu(loaded.module, spec)
    return loaded


def load_module(spec: str, *, seed: int | None = None) -> LoadedModel:
    """Build a model from code only: `file.py[:NAME]` or `package.module:NAME` (used for --arch),
    with torch's global RNG seeded with `seed` (if given) right before it is built.

    Raises:
        SourceError: `spec` is not a code source, or the code cannot build a module.
    """
    kind = detect(spec)
    if kind not in (PYTHON, IMPORT):
        raise SourceError(
            f"{spec} is a {kind.name} source, not code: give the code that builds the model "
            "as file.py[:NAME] or package.module:NAME"
        )
    loaded = get_loader(kind).load(spec, LoadOptions(seed=seed))
    loaded.module = _on_cpu(loaded.module, spec)
    return loaded


def _on_meta(spec: str, kind: SourceKind, arch: str | None, seed: int | None) -> LoadedModel:
    """Build from code under `torch.device("meta")`: structure without storage."""
    import torch

    code = spec if kind in (PYTHON, IMPORT) else arch
    if code is None:
        raise OptionError(
            f"--device meta builds the model from code without weights: {spec} is a "
            f"{get_loader(kind).form}; give the code with --arch, or use --device cpu"
        )
    with torch.device("meta"):
        loaded = get_loader(detect(code)).load(code, LoadOptions(seed=seed))
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
