"""Checks on model files before any loader touches them, and content sniffing for archives."""

from __future__ import annotations

import zipfile
from pathlib import Path

from gradflow.errors import SourceError
from gradflow.loaders._text import one_line


def check_file(path: Path, spec: str) -> None:
    """Raise a one-line SourceError unless `path` is a non-empty, readable regular file."""
    if not path.exists():
        raise SourceError(f"file not found: {spec}")
    if path.is_dir():
        raise SourceError(
            f"{spec} is a directory; give a model file inside it (e.g. {spec}/model.py)"
        )
    try:
        with open(path, "rb") as f:
            f.read(1)
        size = path.stat().st_size
    except OSError as e:
        raise SourceError(f"cannot read {spec}: {one_line(e.strerror or str(e))}") from e
    if size == 0:
        raise SourceError(f"{spec} is empty (0 bytes); was it saved completely?")


def archive_kind(path: Path) -> str | None:
    """The kind, "torchscript" or "torch.export", when `path` is such a zip archive, else None.

    Both are zips with one top folder: TorchScript (torch.jit.save) has `code/` and
    `constants.pkl` in it, torch.export (torch.export.save) has `archive_format` and `models/`.
    A torch.save checkpoint has neither.
    """
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return None
    inner = {name.split("/", 2)[1] for name in names if name.count("/") >= 1}
    if "code" in inner or "constants.pkl" in inner:
        return "torchscript"
    if "archive_format" in inner or "models" in inner:
        return "torch.export"
    return None
