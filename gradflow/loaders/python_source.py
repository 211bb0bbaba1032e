"""`path/to/file.py[:NAME]`: import a Python file and build NAME (default `build`) from it."""

from __future__ import annotations

import importlib.util
import itertools
import re
import sys
from pathlib import Path
from types import ModuleType

from gradflow.errors import SourceError
from gradflow.loaders._code import (
    DEFAULT_NAME,
    build_module,
    example_input_of,
    import_failure,
    seed_rng,
)
from gradflow.loaders._files import check_file
from gradflow.loaders.base import LoadedModel, LoadOptions
from gradflow.loaders.detect import DOTTED_NAME, split_python_spec
from gradflow.loaders.registry import register

_serial = itertools.count()


@register("python", form="file.py[:NAME]", extensions=(".py",), is_code=True)
def load_python_file(spec: str, options: LoadOptions) -> LoadedModel:
    """Import the file and build NAME: an nn.Module subclass, a function returning a module, or
    a module instance. The file's `example_input()`, if any, becomes the probe input."""
    split = split_python_spec(spec)
    if split is None:  # detect() only routes file.py[:NAME] here
        raise SourceError(f"not a Python file source: {spec!r} (expected file.py[:NAME])")
    file, name = split
    if name is not None and not DOTTED_NAME.fullmatch(name):
        raise SourceError(f"{spec}: {name!r} is not a Python name (expected file.py:NAME)")
    path = Path(file).expanduser()
    check_file(path, file)
    seed_rng(options.seed)  # for a module instance the file makes when imported
    namespace = import_file(path, file)
    label = f"{file}:{name or DEFAULT_NAME}"
    module = build_module(
        namespace,
        name or DEFAULT_NAME,
        label,
        user_code=path.parent,
        defaulted=name is None,
        seed=options.seed,
        arguments=options.arguments,
    )
    return LoadedModel(
        module=module,
        source=spec,
        format="python",
        example_input=example_input_of(namespace, label),
    )


def import_file(path: Path, shown: str) -> ModuleType:
    """Import `path` as a fresh module with a unique name.

    The file's folder is first on sys.path while it runs, so it can import its siblings; it is
    removed again afterwards. The module stays in sys.modules so that its classes can be found
    by name (dataclasses, pickling) later.
    """
    stem = re.sub(r"\W", "_", path.stem)
    name = f"gradflow_source_{next(_serial)}_{stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise SourceError(f"cannot import {shown} as Python source")
    module = importlib.util.module_from_spec(module_spec)
    folder = str(path.parent.resolve())
    sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:
        sys.modules.pop(name, None)
        raise import_failure(e, shown, path.parent) from e
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:  # the file removed it itself
            pass
    return module
