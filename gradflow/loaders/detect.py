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
TIMM = SourceKind("timm")
HUGGINGFACE = SourceKind("huggingface")
SAFETENSORS = SourceKind("safetensors")

# Sources named by a prefix rather than a path.
_PREFIXES = {"timm:": TIMM, "hf:": HUGGINGFACE}
SAFETENSORS_INDEX = ".safetensors.index.json"
HF_CONFIG = "config.json"


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

    File sources are checked here (missing, unreadable, empty, a directory without config.json),
    and archives are recognised by content first, so a TorchScript archive saved as `.pt` is
    TorchScript. `timm:NAME` and `hf:ORG/NAME` are recognised by their prefix.

    Raises:
        SourceError: the file is missing or unreadable, or `spec` is no source form we know.
    """
    for prefix, prefixed in _PREFIXES.items():
        if spec.startswith(prefix):
            return prefixed
    if split_python_spec(spec) is not None:
        return PYTHON
    path = Path(spec).expanduser()
    if path.is_dir():
        return _directory(path, spec)
    if path.exists():
        check_file(path, spec)
        if path.name.lower().endswith(SAFETENSORS_INDEX):
            return SAFETENSORS
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


def _directory(path: Path, spec: str) -> SourceKind:
    """A Hugging Face model directory has a config.json; any other directory is refused."""
    if (path / HF_CONFIG).is_file():
        return HUGGINGFACE
    try:
        weights = sorted(
            p.name for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth")
        )
    except OSError:  # unreadable: the message stands without the hint
        weights = []
    hint = f"; it holds {weights[0]}: give that file with --arch" if weights else ""
    raise SourceError(
        f"{spec} is a directory without {HF_CONFIG}, so not a Hugging Face model directory "
        f"(save_pretrained writes one); give a model file inside it{hint}"
    )
