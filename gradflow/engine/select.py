"""`--at` selections: which junctions a stop-gradient (or a measurement) applies to."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from gradflow.errors import OptionError


def select(patterns: Sequence[str] | None, names: Sequence[str]) -> list[int]:
    """Indices of the junctions chosen by `patterns`; every junction when there are none.

    A pattern is a junction index (`3`), an index range with an exclusive end (`3:7`, `:4`, `10:`),
    or a glob matched against junction names (`layer3.*`). A pattern that matches nothing is an
    error that lists the junction names.
    """
    if not patterns:
        return list(range(len(names)))
    chosen: set[int] = set()
    for pattern in patterns:
        matched = _match(pattern.strip(), names)
        if not matched:
            shown = ", ".join(names[:40]) + (f", ... ({len(names)} in all)" if len(names) > 40 else "")
            raise OptionError(
                f"--at {pattern!r} matches no junction; give an index (3), a range with the end "
                f"excluded (3:7) or a glob over the names; junctions are: {shown or '(none)'}"
            )
        chosen.update(matched)
    return sorted(chosen)


def _match(pattern: str, names: Sequence[str]) -> list[int]:
    count = len(names)
    if pattern.lstrip("-").isdigit():
        index = int(pattern)
        index = index + count if index < 0 else index
        return [index] if 0 <= index < count else []
    if ":" in pattern and all(p.strip().lstrip("-").isdigit() or p.strip() == "" for p in pattern.split(":")):
        parts = pattern.split(":")
        if len(parts) != 2:
            raise OptionError(f"bad --at range {pattern!r}: write START:END, e.g. 3:7")
        start = int(parts[0]) if parts[0].strip() else None
        stop = int(parts[1]) if parts[1].strip() else None
        return list(range(count))[start:stop]
    return [i for i, name in enumerate(names) if fnmatch.fnmatchcase(name, pattern)]
