"""torch.export programs (`.pt2`, from torch.export.save)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from gradflow.errors import SourceError
from gradflow.loaders._text import describe
from gradflow.loaders.base import LoadedModel, LoadOptions
from gradflow.loaders.registry import register


@register("torch.export", form="torch.export program (.pt2)", extensions=(".pt2",))
def load_exported(spec: str, options: LoadOptions) -> LoadedModel:
    """`torch.export.load(path).module()`. The program's stored sample inputs, when it has
    them, become the example input."""
    import torch

    try:
        with warnings.catch_warnings():
            # Some torch versions (2.11) warn, while reading the archive, that its bytes are
            # read-only: a note about torch's own loading that the user cannot act on.
            warnings.filterwarnings("ignore", message="The given buffer is not writable")
            program = torch.export.load(str(Path(spec).expanduser()))
        module = program.module()
    except Exception as e:
        raise SourceError(
            f"cannot load torch.export program {spec}: truncated, corrupt or not saved by "
            f"torch.export.save ({describe(e)})"
        ) from e
    return LoadedModel(
        module=module,
        source=spec,
        format="torch.export",
        example_input=_stored_example(getattr(program, "example_inputs", None)),
    )


def _stored_example(example: Any) -> Any:
    """A function returning fresh copies of the program's (args, kwargs) sample inputs, in the
    probe's shapes: the args tuple, or the kwargs dict when there are no args."""
    if not (isinstance(example, tuple) and len(example) == 2):
        return None
    args, kwargs = example
    if args and kwargs or not (args or kwargs):
        return None  # mixed args and kwargs have no probe-input form
    stored = tuple(args) if args else dict(kwargs)

    def example_input() -> Any:
        return _copy(stored)

    return example_input


def _copy(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple | list):
        return type(value)(_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value
