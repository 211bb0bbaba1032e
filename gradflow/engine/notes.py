"""The notes under a report: what the measurement could not show in its table, said plainly.

Each function returns a tuple of one-line notes (empty when there is nothing to say);
`graph_notes` also refuses a graph that autograd.grad cannot differentiate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gradflow.engine.junctions import BLOCK, SKIP, FoundJunction, subtractions_shaped_like_junctions
from gradflow.errors import ModelError


def graph_notes(
    nodes: Sequence[Any],
    params: Sequence[Any],
    leaves: Sequence[Any],
    uses: dict[Any, int],
) -> tuple[str, ...]:
    """What the autograd graph hides from junction detection, said plainly (or refused):
    subtractions shaped like junctions. One pass over the graph's node types."""
    hidden = 0
    subtractions = []
    for node in nodes:
        kind = type(node).__name__
        if kind == "CheckpointFunctionBackward":
            hidden += 1
        elif kind == "SubBackward0":
            subtractions.append(node)
    if hidden:
        raise ModelError(
            f"the model runs {hidden} torch.utils.checkpoint segment(s) with use_reentrant=True: "
            "they build no autograd graph inside and cannot be differentiated with "
            "torch.autograd.grad; use checkpoint(..., use_reentrant=False) to inspect it"
        )
    return _subtraction_note(subtractions, params, leaves, uses)


def _subtraction_note(
    subtractions: Sequence[Any], params: Sequence[Any], leaves: Sequence[Any], uses: dict[Any, int]
) -> tuple[str, ...]:
    count = subtractions_shaped_like_junctions(subtractions, params, leaves, uses)
    if not count:
        return ()
    return (
        f"{count} subtraction(s) have the shape of a junction (y = x - f(x)) and are not measured: "
        "gradflow measures adds; write x + (-f(x)) to measure one",
    )


def path_notes(found: Sequence[FoundJunction], names: Sequence[str]) -> tuple[str, ...]:
    """What the table cannot show about the measured junctions' paths: which are cut (a detached
    operand) and which took an extra backward pass (a shared side, see gradflow.engine.junctions)."""
    notes = []
    for side, what in ((SKIP, "skip"), (BLOCK, "block")):
        cut = [name for junction, name in zip(found, names) if junction.cut == side]
        if cut:
            example = "x.detach() + f(x)" if side == SKIP else "x + f(x).detach()"
            notes.append(
                f"{_listed(cut)}: the {what} is a detached copy ({example}): no gradient passes it"
            )
    shared = [name for junction, name in zip(found, names) if any(junction.shared)]
    if shared:
        notes.append(
            f"{_listed(shared)}: a path shares an operation with code outside it (for example a norm "
            "whose output also feeds another branch, or a split), so its gradient at the fork was "
            "taken by a backward pass of its own"
        )
    return tuple(notes)


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")



def subset_note(kept: int, total: int, only: Sequence[str] | None, limit: int | None) -> tuple[str, ...]:
    if kept == total:
        return ()
    how = " and ".join(w for w, on in (("--at", only), ("--max-junctions", limit)) if on)
    return (f"measured {kept} of {total} junctions ({how})",)
