"""`[tool.gradflow.check]`: found in the nearest pyproject.toml, or read from `--config FILE`.

Keys are the long flag names with `_` or `-` (`dead_below`, `allow-unused`); unknown keys and
wrong types are errors that name the key, so a typo cannot silently switch a rule off. The old
key `vanishing_below` is read as `survival_below`, with a FutureWarning (see `RENAMED` in
`gradflow.gate.settings`); the per-junction `--vanishing-below` has no key here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradflow.errors import OptionError
from gradflow.gate.settings import CONFIG_KEYS, RENAMED, renamed, value_problem

TABLE = ("tool", "gradflow", "check")


@dataclass(frozen=True)
class Config:
    """The check table's values (keys normalised to `_`), and the file they came from."""

    values: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None


def find_pyproject(start: Path) -> Path | None:
    """The first pyproject.toml in `start` or one of its parents."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(explicit: Path | None = None, cwd: Path | None = None) -> Config:
    """The configuration from `explicit` (which must exist), else from the pyproject.toml found
    from `cwd` (default: the working directory); an empty Config when there is none.

    An explicit file holds either a `[tool.gradflow.check]` table or the keys at its top level.
    """
    if explicit is not None:
        if not explicit.is_file():
            raise OptionError(f"--config {explicit}: no such file")
        document = _read(explicit)
        table = _table(document, explicit)
        if table is None:
            return Config(_validated(document, explicit, str(explicit)), explicit)
        return Config(_validated(table, explicit, _section(explicit)), explicit)
    found = find_pyproject(cwd or Path.cwd())
    if found is None:
        return Config()
    table = _table(_read(found), found)
    return Config({}, None) if table is None else Config(_validated(table, found, _section(found)), found)


def _read(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise OptionError(f"reading {path} needs Python 3.11 or `pip install tomli`") from None
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise OptionError(f"cannot read {path}: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise OptionError(f"{path} is not valid TOML: {e}") from e


def _table(document: Mapping[str, Any], path: Path) -> Mapping[str, Any] | None:
    node: Any = document
    for key in TABLE:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    if not isinstance(node, Mapping):
        raise OptionError(f"{path}: [tool.gradflow.check] must be a table")
    return node


def _section(path: Path) -> str:
    return f"{path} [{'.'.join(TABLE)}]"


def _validated(table: Mapping[str, Any], path: Path, where: str) -> dict[str, Any]:
    """The table's values, typed; `where` names the file (and table) in the error for a bad value,
    e.g. `pyproject.toml [tool.gradflow.check] seeds = 0: must be at least 1`."""
    values: dict[str, Any] = {}
    for raw, given in table.items():
        key = raw.replace("-", "_")
        if key not in CONFIG_KEYS and key not in RENAMED:
            known = ", ".join(k.replace("_", "-") for k in CONFIG_KEYS)
            raise OptionError(
                f"{path}: unknown key {raw!r} in [tool.gradflow.check] (known: {known})"
            )
        value = _typed(raw, given, CONFIG_KEYS[RENAMED.get(key, key)], path)
        problem = value_problem(key, value)
        if problem is not None:
            raise OptionError(f"{where} {raw} = {_as_written(given)}: {problem}")
        if key == "baseline":
            value = str((path.parent / value).resolve()) if not Path(value).is_absolute() else value
        values[key] = value
    return renamed(values, where)


def _typed(raw: str, value: Any, want: type, path: Path) -> Any:
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want is list and isinstance(value, str):
        value = [value]
    if not isinstance(value, want) or isinstance(value, bool):
        raise OptionError(f"{path}: {raw} must be a {_kind(want)}, got {value!r}")
    if isinstance(value, list) and not all(isinstance(v, str) for v in value):
        raise OptionError(f"{path}: {raw} must be a list of strings, got {value!r}")
    return value


def _as_written(value: Any) -> str:
    """A TOML value as it reads in the file: "a", ["a", "b"], 0, 1e-3, nan."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (str, list)):
        return json.dumps(value)
    return repr(value)


def _kind(want: type) -> str:
    return {float: "number", int: "whole number", list: "list of strings", str: "string"}[want]
