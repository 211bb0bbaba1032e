"""Junction names: the module that ran the add, with #k where one module runs several."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def junction_names(modules: Sequence[str]) -> list[str]:
    """Unique names for junctions in forward order, given the module that ran each add.

    A module that runs one junction names it; one that runs several (a transformer layer's
    attention and MLP residuals, or the root module "") gives `module#0`, `module#1`, ...

    Example:
        >>> junction_names(["h.0", "h.0", "ln", ""])
        ['h.0#0', 'h.0#1', 'ln', '#0']
    """
    counts = Counter(modules)
    seen: Counter[str] = Counter()
    names = []
    for module in modules:
        k = seen[module]
        seen[module] += 1
        names.append(module if module and counts[module] == 1 else f"{module}#{k}")
    return names
