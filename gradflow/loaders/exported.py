"""torch.export programs (`.pt2`, from torch.export.save)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
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
        with _quiet_torch_loading():
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


# The loggers torch.export.load writes to (their children inherit the level set here).
_TORCH_EXPORT_LOGGERS = ("torch.export", "torch._export")


@contextmanager
def _quiet_torch_loading() -> Iterator[None]:
    """No warnings and no log records from torch while it reads the archive: on a corrupt file
    torch logs its own traceback before raising (and some versions warn that the archive's bytes
    are read-only), notes about torch's loading that the user cannot act on; the one-line
    SourceError says what is wrong."""
    loggers = [logging.getLogger(name) for name in _TORCH_EXPORT_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.CRITICAL + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


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
