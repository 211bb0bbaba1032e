"""Junction names, and the modules each path runs: what a reader needs to find a junction in
the model's code. The module that ran the add names it, with #k where one module runs several.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from gradflow.engine.junctions import BLOCK, SKIP, FoundJunction
from gradflow.engine.recorder import ForwardRecorder


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


@dataclass(frozen=True)
class Naming:
    name: str
    module: str
    location: str | None
    block_modules: tuple[str, ...]
    skip_modules: tuple[str, ...]


def name_junctions(
    found: Sequence[FoundJunction], recorder: ForwardRecorder, param_names: dict[int, str]
) -> list[Naming]:
    """Name junctions after the innermost module that ran the add, with #k where one runs several.

    An add that no wrapper saw (one inside torch's own code, such as the mask an attention kernel
    adds) is named after the innermost module holding every module its branches pass through."""
    sites = [recorder.sites.get(junction.add) for junction in found]
    branches = [
        (_branch_modules(j, BLOCK, recorder, param_names), _branch_modules(j, SKIP, recorder, param_names))
        for j in found
    ]
    modules = [
        site.module if site else _enclosing(block + skip) for site, (block, skip) in zip(sites, branches)
    ]
    return [
        Naming(name, module, site.location if site else None, block, skip)
        for site, (block, skip), module, name in zip(sites, branches, modules, junction_names(modules))
    ]


def _enclosing(modules: Sequence[str]) -> str:
    """The innermost module that holds all of `modules` (dotted names); "" for the root."""
    parents = [name.rpartition(".")[0].split(".") for name in modules if name]
    if not parents:
        return ""
    common = parents[0]
    for parts in parents[1:]:
        n = 0
        while n < min(len(common), len(parts)) and common[n] == parts[n]:
            n += 1
        common = common[:n]
    return ".".join(common)


def _branch_modules(
    junction: FoundJunction, side: int, recorder: ForwardRecorder, param_names: dict[int, str]
) -> tuple[str, ...]:
    """The outermost modules a branch passes through, in forward order."""
    listed: list[str] = []
    for node in sorted(junction.nodes[side], key=lambda n: n._sequence_nr()):
        for name in reversed(recorder.module_outputs.get(node, [])):
            if name and name not in listed:
                listed.append(name)
    for param in junction.params[side]:
        owner = param_names.get(id(param), "").rpartition(".")[0]
        if owner and owner not in listed:
            listed.append(owner)
    return tuple(n for n in listed if not any(n.startswith(m + ".") for m in listed if m != n))
