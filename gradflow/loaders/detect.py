"""Which kind of source the user typed: a code path, an import path, or a file of some format."""

from __future__ import annotations

import re
from pathlib import Path

from gradflow.errors import SourceError
from gradflow.loaders._files import archive_kind, check_file
from gradflow.loaders.registry import SourceKind, accepted_forms, kind_for_extension

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
DOTTED_NAME = re.compile(_DOTTED)
IMPORT_PATH = re.compile(rf"(?P<module>{_DOTTED}):(?P<name>{_DOTTED})")

PYTHON = SourceKind("python")
IMPORT = SourceKind("import")


def split_python_spec(spec: str) -> tuple[str, str | None] | None:
    """`("dir/model.py", "Net")` for "dir/model.py:Net", `("dir/model.py", None)` for
    "dir/model.py", None when `spec` is not a Python file source."""
    if spec.endswith(".py"):
        return spec, None
    path, sep, name = spec.rpartition(":")
    if sep and path.endswith(".py"):
        return path, name
    return None


def detect(spec: str) -> SourceKind:
    """The kind of source `spec` names.

    File sources are checked here (missing, directory, unreadable, empty), and archives are
    recognised by content first, so a TorchScript archive saved as `.pt` is TorchScript.

    Raises:
        SourceError: the file is missing or unreadable, or `spec` is no source form we know.
    """
    if split_python_spec(spec) is not None:
        return PYTHON
    path = Path(spec).expanduser()
    if path.exists():
        check_file(path, spec)
        sniffed = archive_kind(path)
        if sniffed is not None:
            return SourceKind(sniffed)
        kind = kind_for_extension(path.suffix)
        if kind is None or kind in (PYTHON, IMPORT):
            what = f"extension {path.suffix!r}" if path.suffix else "no extension"
            raise SourceError(
                f"{spec}: unknown model file ({what}); accepted sources: {accepted_forms()}"
            )
        return kind
    if IMPORT_PATH.fullmatch(spec):
        return IMPORT
    if "/" in spec or "\\" in spec or kind_for_extension(path.suffix) is not None:
        raise SourceError(f"file not found: {spec}")
    if "." in spec and DOTTED_NAME.fullmatch(spec):
        raise SourceError(
            f"unknown source {spec!r}: an import path needs the object after a colon "
            f"({spec}:NAME), and no file {spec} exists; accepted sources: {accepted_forms()}"
        )
    raise SourceError(f"unknown source {spec!r}; accepted sources: {accepted_forms()}")
