"""Junction names, and the modules each path runs: what a reader needs to find a junction in
the model's code. The module that ran the add names it, with #k where one module runs several.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from gradflow.engine.junctions import BLOCK, SKIP, FoundJunction
from gradflow.engine.recorder import ForwardRecorder, ModuleCall


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
    adds) is named after the innermost module whose call created its autograd node."""
    index = ModuleIndex(recorder.calls)
    sites = [recorder.sites.get(junction.add) for junction in found]
    branches = [
        (_path_modules(j, BLOCK, index, param_names), _path_modules(j, SKIP, index, param_names))
        for j in found
    ]
    modules = [
        site.module if site else index.name_of(j.add._sequence_nr()) for site, j in zip(sites, found)
    ]
    return [
        Naming(name, module, site.location if site else None, block, skip)
        for site, (block, skip), module, name in zip(sites, branches, modules, junction_names(modules))
    ]


class ModuleIndex:
    """Which of the model's module calls created an autograd node, from the range of sequence
    numbers each call used (`ModuleCall`). Calls nest, so the innermost call holding a number is
    the latest call started before it, or one of that call's parents."""

    def __init__(self, calls: Sequence[ModuleCall]) -> None:
        self.calls = calls
        self.starts = [call.start for call in calls]  # calls are listed in the order they started

    def innermost(self, sequence_nr: int) -> int:
        """The index of the innermost call that created node number `sequence_nr`; -1 if none."""
        return self.innermost_with_end(sequence_nr)[0]

    def innermost_with_end(self, sequence_nr: int) -> tuple[int, int]:
        """`innermost(sequence_nr)`, and the number up to which (excluded) that call stays the
        innermost: its end, or the start of the next call, whichever comes first."""
        later = bisect_right(self.starts, sequence_nr)
        until = self.starts[later] if later < len(self.starts) else sequence_nr + 1
        index = later - 1
        while index >= 0:
            call = self.calls[index]
            if call.start <= sequence_nr < call.end:
                return index, min(until, call.end)
            index = call.parent
        return -1, until

    def name_of(self, sequence_nr: int) -> str:
        index = self.innermost(sequence_nr)
        return self.calls[index].name if index >= 0 else ""


def _path_modules(
    junction: FoundJunction, side: int, index: ModuleIndex, param_names: dict[int, str]
) -> tuple[str, ...]:
    """The modules a path runs, in forward order: the minimal set of non-nested modules such that
    every operation on the path ran inside one of them. Each operation's innermost module is
    listed whole (a module whose own forward runs a path operation, such as an MLP multiplying its
    gate, cannot be split); a module whose every operation lies on the path stands for its
    children (a Sequential block). The root module is never listed. The module of a parameter an
    operation takes directly, outside the modules listed, is listed too (`_owners_outside`); a
    path without operations, whose operand is a parameter itself, lists that parameter's module."""
    nodes = junction.nodes[side]
    if not nodes:
        owners = (param_names.get(id(p), "").rpartition(".")[0] for p in junction.params[side])
        return tuple(dict.fromkeys(owner for owner in owners if owner))
    numbers = sorted(node._sequence_nr() for node in nodes)
    calls = index.calls

    def only_path(call: ModuleCall) -> bool:
        """Every node the call created lies on the path (and it created at least one)."""
        inside = bisect_left(numbers, call.end) - bisect_left(numbers, call.start)
        return inside > 0 and inside == call.end - call.start

    chosen: set[int] = set()
    climbed: set[int] = set()  # innermost calls already seen
    same_until = -1  # numbers below this one have the innermost call of the previous number
    for number in numbers:
        if number < same_until:
            continue
        innermost, same_until = index.innermost_with_end(number)
        if innermost < 0 or innermost in climbed or not calls[innermost].name:
            continue
        climbed.add(innermost)
        at = innermost
        while calls[at].parent >= 0 and calls[calls[at].parent].name and only_path(calls[calls[at].parent]):
            at = calls[at].parent
        chosen.add(at)
    listed = [(calls[at].start, calls[at].name) for at in chosen if not _inside_any(at, chosen, calls)]
    listed += _owners_outside(junction, side, [name for _, name in listed], param_names)
    return tuple(dict.fromkeys(name for _, name in sorted(listed)))


def _owners_outside(
    junction: FoundJunction, side: int, listed: Sequence[str], param_names: dict[int, str]
) -> list[tuple[int, str]]:
    """(sequence number, module) for the modules of the path's parameters that no listed module
    holds, where an operation takes the weight itself rather than calling its module (DeBERTa's
    relative embeddings): each placed at the first operation that uses it. An owner holding a
    listed module is left out: it would stand for more than the path."""

    def related(owner: str, name: str) -> bool:
        return owner == name or owner.startswith(name + ".") or name.startswith(owner + ".")

    outside: dict[int, str] = {}
    held = set(listed)
    for param in junction.params[side]:
        owner = param_names.get(id(param), "").rpartition(".")[0]
        if owner and owner not in held and not any(related(owner, name) for name in listed):
            outside[id(param)] = owner
    if not outside:
        return []
    first: dict[str, int] = {}
    for node in junction.nodes[side]:
        for child, _ in node.next_functions:
            if type(child).__name__ != "AccumulateGrad" or id(child.variable) not in outside:
                continue
            module, number = outside[id(child.variable)], node._sequence_nr()
            first[module] = min(first.get(module, number), number)
    return [(number, module) for module, number in first.items()]


def _inside_any(at: int, chosen: set[int], calls: Sequence[ModuleCall]) -> bool:
    parent = calls[at].parent
    while parent >= 0:
        if parent in chosen:
            return True
        parent = calls[parent].parent
    return False
