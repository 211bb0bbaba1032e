"""The verdict on one junction from its numbers: a pure function of plain floats, shared by
`build_report` and the check rules, so a status and a rule cannot disagree. Nothing here imports
torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gradflow.choices import Choice


class Status(Choice):
    """Verdict on one junction, most severe first. A Status equals its string value.

    Example:
        >>> [j.name for j in report.junctions if j.status is not Status.OK]
        >>> report.junctions[0].status == "ok"
        True
    """

    NONFINITE = "nonfinite"
    CUT = "cut"
    EXPLODING = "exploding"
    VANISHING = "vanishing"
    DEAD = "dead"
    DORMANT = "dormant"  # passes nothing back yet, held closed on purpose: see Junction
    OK = "ok"


@dataclass(frozen=True)
class Thresholds:
    """When a junction is flagged. Ratios are taken against the gradient at the model output.

    vanishing: grad_in / grad_output below `vanishing_below`, at a junction on the stream; one
        nested inside another junction (Junction.nested_in) only when its grad_in is 0.
    exploding: grad_in or grad_out / grad_output above `exploding_above`.
    dead: the block passes (almost) nothing back: its block_ratio (grad_block / grad_skip) is
        below `dead_below`, and so is what it sends to its context over grad_skip (see
        Junction.grad_context; a cross-attention block, which reaches its fork only weakly at
        initialisation but passes gradient to the encoder side, is not dead).

    Example:
        >>> gradflow.inspect(model, x, thresholds=Thresholds(dead_below=1e-2))
    """

    vanishing_below: float = 1e-3
    exploding_above: float = 1e3
    dead_below: float = 1e-3


# A gate holds its block closed only when every element is this small: layer scales start at 1e-4
# to 1e-6 and zero-initialised scales and gains at 0, while a block's ordinary weights are
# orders of magnitude larger and no sign of a block closed on purpose.
GATE_AT_MOST = 1e-3


def closing_gate(
    block_ratio: float | None,
    candidates: Sequence[tuple[str, float, float | None]],
    dead_below: float,
) -> str | None:
    """The gate that holds a dead-looking block closed on purpose, or None.

    Args:
        block_ratio: the junction's grad_block / grad_skip.
        candidates: the parameters that scale the block's path, as (name, max |value|, norm of
            its gradient or None).
        dead_below: the dead threshold.
    Returns:
        The name of the most closed candidate that qualifies: every element at most
        GATE_AT_MOST; its own gradient nonzero and finite, so the first optimizer step moves it;
        and, when not exactly 0, a block that passes enough through it once it is open:
        block_ratio / max |gate| at least `dead_below` (a block behind a gate at exactly 0 cannot
        be seen, and is trusted).
    """
    best: tuple[str, float] | None = None
    for name, magnitude, grad in candidates:
        if grad is None or not (grad > 0 and math.isfinite(grad)) or not magnitude <= GATE_AT_MOST:
            continue
        if magnitude > 0 and (block_ratio or 0.0) / magnitude < dead_below:
            continue
        if best is None or magnitude < best[1]:
            best = (name, magnitude)
    return None if best is None else best[0]


def junction_status(
    numbers: tuple[float | None, ...],
    block_ratio: float | None,
    grad_output: float | None,
    t: Thresholds,
    cut: bool = False,
    context: float | None = None,
    nested: bool = False,
) -> Status:
    """The verdict on a junction from (grad_out, grad_skip, grad_block, grad_in, param_grad), and
    whether one of its paths is cut (a detached copy), which outranks every verdict but nonfinite.
    `context` is the junction's grad_context, which can keep a weakly reaching block from `dead`.
    A `nested` junction (inside another junction) is not judged against the gradient at the
    output: what reaches it is what the path holding it passes, small by design in places (scores
    inside an attention block); it is vanishing only when nothing reaches its fork at all."""
    if any(v is None or not math.isfinite(v) for v in numbers):
        return Status.NONFINITE
    if context is not None and not math.isfinite(context):
        return Status.NONFINITE
    if cut:
        return Status.CUT
    grad_out, grad_skip, _, grad_in, _ = numbers
    assert grad_in is not None and grad_out is not None
    if grad_output and math.isfinite(grad_output):
        if max(grad_in, grad_out) / grad_output > t.exploding_above:
            return Status.EXPLODING
        starved = grad_in == 0 if nested else grad_in / grad_output < t.vanishing_below
        if starved:
            return Status.VANISHING
    if is_dead(block_ratio, over(context, grad_skip), t.dead_below):
        return Status.DEAD
    return Status.OK


def is_dead(block_ratio: float | None, context_ratio: float | None, dead_below: float) -> bool:
    """Whether a block passes (almost) nothing back: below `dead_below` of what the skip passes,
    to its fork (block_ratio) and to its context (context_ratio, when it reads one). Undecided
    (False) without a block ratio: no gradient reached the skip to compare with."""
    if block_ratio is None or block_ratio >= dead_below:
        return False
    return context_ratio is None or context_ratio < dead_below


def reaches_weakly(block_ratio: float | None, context_ratio: float | None, dead_below: float) -> bool:
    """A block below `dead_below` at its fork that still passes gradient back to its context:
    alive, as a cross-attention sub-layer is at initialisation."""
    return block_ratio is not None and block_ratio < dead_below and not is_dead(
        block_ratio, context_ratio, dead_below
    )


def over(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference or not math.isfinite(reference):
        return None
    return value / reference
