"""`package.module:NAME`: import a module the usual way and build NAME from it."""

from __future__ import annotations

import importlib
from pathlib import Path

from gradflow.errors import SourceError
from gradflow.loaders._code import build_module, example_input_of, import_failure, seed_rng
from gradflow.loaders.base import LoadedModel, LoadOptions
from gradflow.loaders.detect import IMPORT_PATH
from gradflow.loaders.registry import register


@register("import", form="package.module:NAME", is_code=True)
def load_import_path(spec: str, options: LoadOptions) -> LoadedModel:
    """Import `package.module` and build NAME from it, like a Python file source."""
    match = IMPORT_PATH.fullmatch(spec)
    if match is None:  # detect() only routes package.module:NAME here
        raise SourceError(f"not an import path: {spec!r} (expected package.module:NAME)")
    module_name, name = match["module"], match["name"]
    seed_rng(options.seed)  # for a module instance made on a first import
    try:
        namespace = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name + ".").startswith(e.name + "."):
            raise SourceError(
                f"cannot import {module_name!r}: no module named {e.name!r} "
                "(is it installed, or did you mean a file path?)"
            ) from e
        raise import_failure(e, module_name, None) from e
    except (Exception, SystemExit) as e:
        raise import_failure(e, module_name, None) from e
    file = getattr(namespace, "__file__", None)
    user_code = Path(file).parent if file else None
    module = build_module(
        namespace,
        name,
        spec,
        user_code=user_code,
        defaulted=False,
        seed=options.seed,
        arguments=options.arguments,
    )
    return LoadedModel(
        module=module,
        source=spec,
        format="import",
        example_input=example_input_of(namespace, spec),
    )
