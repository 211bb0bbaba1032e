"""Turning a namespace (an imported file or module) plus a NAME into an nn.Module.

Shared by the python-file and import-path loaders, and used for --arch.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from gradflow.errors import SourceError
from gradflow.loaders._text import failure, shorten
from gradflow.loaders.call import call_text

DEFAULT_NAME = "build"
EXAMPLE_INPUT = "example_input"


def build_module(
    namespace: ModuleType,
    name: str,
    label: str,
    *,
    user_code: Path | None,
    defaulted: bool,
    seed: int | None = None,
    arguments: Mapping[str, Any] | None = None,
) -> Any:
    """Build the module that `name` in `namespace` stands for.

    `name` may be an nn.Module subclass (instantiated with `arguments`, by default none), a
    function returning a module (called so), or a module instance (which takes no arguments).
    `label` names the source in messages ("model.py:Net"); `user_code` is the folder whose
    frames locate errors; `defaulted` says `name` was not typed but is the default `build`;
    `seed`, if given, seeds torch's global RNG right before the class or function is called
    (see `seed_rng`).

    Raises:
        SourceError: `name` is missing, is not module-like, fails to build, or builds something
            that is not an nn.Module.
    """
    import torch

    obj: Any = namespace
    for part in name.split("."):
        if not hasattr(obj, part):
            raise SourceError(_not_found(namespace, name, label, defaulted))
        obj = getattr(obj, part)

    if isinstance(obj, torch.nn.Module):
        if arguments is not None:
            raise SourceError(
                f"{label} is a module instance, already built: it takes no constructor arguments"
            )
        return obj
    if isinstance(obj, type) and not issubclass(obj, torch.nn.Module):
        raise SourceError(f"{label} is a class but not a torch.nn.Module subclass")
    if not callable(obj):
        raise SourceError(
            f"{label} is of type {type(obj).__name__}, not an nn.Module class or a function "
            "returning one"
        )
    called = label + (call_text(dict(arguments)) if arguments is not None else "()")
    seed_rng(seed)
    try:
        module = obj(**(arguments or {}))
    except (Exception, SystemExit) as e:
        hint = ""
        if isinstance(e, TypeError) and "argument" in str(e) and not arguments:
            hint = (
                "; it is called with no arguments: give them as NAME(key=value, ...), or wrap "
                "it in a function that passes them"
            )
        raise SourceError(f"building {called} failed: {failure(e, user_code)}{hint}") from e
    if not isinstance(module, torch.nn.Module):
        raise SourceError(f"{called} returned {type(module).__name__}, not a torch.nn.Module")
    return module


def seed_rng(seed: int | None) -> None:
    """Seed torch's global RNG (every device) with `seed`; nothing for None.

    Code that builds a model without seeding draws its weights from the global RNG, so without
    this each run would measure another model. Code that seeds itself overrides it. The RNG is
    not restored: the probe seeds it again, inside a fork, before it runs."""
    if seed is not None:
        import torch

        torch.manual_seed(seed)


def example_input_of(namespace: ModuleType, label: str) -> Callable[[], Any] | None:
    """The namespace's `example_input` function, if it defines one."""
    fn = getattr(namespace, EXAMPLE_INPUT, None)
    if fn is None:
        return None
    if not callable(fn):
        raise SourceError(
            f"{label}: example_input is of type {type(fn).__name__}; it must be a function "
            "returning the probe input (a tensor, a tuple of args or a dict of kwargs)"
        )
    return fn


def module_like_names(namespace: ModuleType) -> list[str]:
    """Public names in `namespace` that could be loaded: nn.Module subclasses and instances,
    and functions; those defined in the namespace itself first."""
    import torch

    own: list[str] = []
    imported: list[str] = []
    for attr, obj in vars(namespace).items():
        if attr.startswith("_") or attr == EXAMPLE_INPUT:
            continue
        is_class = isinstance(obj, type) and issubclass(obj, torch.nn.Module)
        if not (is_class or isinstance(obj, torch.nn.Module) or inspect.isfunction(obj)):
            continue
        defined_here = getattr(obj, "__module__", None) == namespace.__name__
        (own if defined_here or isinstance(obj, torch.nn.Module) else imported).append(attr)
    # Functions imported from elsewhere (helpers, `from torch import ...`) are noise.
    imported = [a for a in imported if not inspect.isfunction(vars(namespace)[a])]
    return sorted(own) + sorted(imported)


def _not_found(namespace: ModuleType, name: str, label: str, defaulted: bool) -> str:
    where = label.rpartition(":")[0]
    names = module_like_names(namespace)
    if defaulted:
        message = f"{where} defines no {DEFAULT_NAME}(); name what to load as {where}:NAME"
    else:
        message = f"{name!r} not found in {where}"
    close = difflib.get_close_matches(name, names, n=1)
    if close and not defaulted:
        message += f"; did you mean {close[0]!r}?"
    if names:
        message += f" (it defines: {shorten(names, 10)})"
    else:
        message += " (it defines no nn.Module class or function)"
    return message


def import_failure(exc: BaseException, what: str, user_code: Path | None) -> SourceError:
    """The SourceError for code that raised while being imported."""
    if isinstance(exc, SystemExit):
        return SourceError(f"importing {what} called sys.exit({exc.code!r})")
    return SourceError(f"importing {what} failed: {failure(exc, user_code)}")
