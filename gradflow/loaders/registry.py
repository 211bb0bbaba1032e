"""The loader registry: one loader per source kind, keyed by `SourceKind`.

Each loader module registers itself with `@register(...)` at import time; `gradflow.loaders`
imports them all. Registering a kind or a file extension twice is a programming error and fails
at import; asking for a kind nobody registered fails with a message naming it and the known ones
(`gradflow.registry`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from gradflow.errors import SourceError
from gradflow.loaders.base import LoadedModel, LoadOptions
from gradflow.registry import Registry


class SourceKind(NamedTuple):
    """What kind of source a spec names: "python", "import", "checkpoint", "torchscript", ..."""

    name: str


LoadFn = Callable[[str, LoadOptions], LoadedModel]
"""`load(spec, options) -> LoadedModel`; loaders that have no use for the options ignore them."""


@dataclass(frozen=True)
class Loader:
    kind: SourceKind
    load: LoadFn
    form: str  # how the user writes this kind of source, for messages
    extensions: tuple[str, ...] = ()  # file suffixes (lowercase, with dot) that select this kind
    takes_arch: bool = False  # whether --arch means anything for this kind
    # The source is code that builds the model: it takes constructor arguments, may serve as
    # --arch, and builds on the meta device.
    is_code: bool = False
    # Builds the structure without weights when run under torch.device("meta") with
    # LoadOptions.meta (code builds so by itself).
    builds_on_meta: bool = False


LOADERS: Registry[SourceKind, Loader] = Registry("loader", error=SourceError, name=lambda kind: kind.name)
# The file suffix (lowercase, with dot) each kind of file source is chosen by.
EXTENSIONS: Registry[str, SourceKind] = Registry("file extension", error=SourceError)


def register(
    name: str,
    *,
    form: str,
    extensions: tuple[str, ...] = (),
    takes_arch: bool = False,
    is_code: bool = False,
    builds_on_meta: bool = False,
) -> Callable[[LoadFn], LoadFn]:
    """Register the decorated function as the loader for `SourceKind(name)`.

    Raises:
        ValueError: the kind, or one of the extensions, is already registered.
    """
    kind = SourceKind(name)

    def decorator(load: LoadFn) -> LoadFn:
        for ext in extensions:  # before the kind is added: a refused loader leaves no trace
            if ext in EXTENSIONS:
                raise ValueError(f"extension {ext!r} already selects {EXTENSIONS.get(ext)!r}")
        LOADERS.add(kind, Loader(
            kind, load, form, tuple(extensions), takes_arch, is_code, builds_on_meta or is_code
        ))
        for ext in extensions:
            EXTENSIONS.add(ext, kind)
        return load

    return decorator


def get_loader(kind: SourceKind) -> Loader:
    """The loader registered for `kind`; a SourceError naming the kind and the known ones if
    there is none."""
    return LOADERS.get(kind)


def kind_for_extension(suffix: str) -> SourceKind | None:
    """The kind a file suffix selects (".pt" -> checkpoint), or None."""
    return EXTENSIONS.find(suffix.lower())


def accepted_forms() -> str:
    """The accepted source forms, in registration order, for error messages."""
    return ", ".join(loader.form for loader in LOADERS.values())
