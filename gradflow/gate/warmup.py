"""What `gradflow check` makes of its warm-up: a junction dead only when it stays dead.

At initialisation some blocks pass nothing back on purpose. Where a gate explains it, the report
already says `dormant` (`gradflow.engine.gates`). What no gate explains (a zero-initialised
classifier head starves every block, for one) the check decides by measuring again after a few
optimizer steps (`gradflow.track.warmup`): a junction dead or vanishing at initialisation that is
alive after them is `dormant` with the reason `warm-up`; one still dead stays dead, and the rules
say so. Pure functions of reports; nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import replace

from gradflow.engine.report import WARM_UP, Flag, Report, Status, Warmup
from gradflow.gate.settings import CheckSettings

STARVED = (Status.DEAD, Status.VANISHING)  # what a warm-up can show to be a start, not a fault
ALIVE = (Status.OK, Status.DORMANT)


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.3g}"


def survival_fails(report: Report, settings: CheckSettings) -> bool:
    """Whether the `vanishing` rule fails on `report`'s own numbers: the survival is below the
    threshold, or no gradient at all arrives at the last junction."""
    if not report.junctions:
        return False
    survival = report.summary.survival
    if survival is None:
        return report.junctions[-1].grad_out == 0
    return math.isfinite(survival) and survival < settings.survival_below


# A survival that grows this many times over the warm-up is opening (a stage behind a layer scale
# of 1e-5 whose gate has grown a thousandfold), not vanishing: a broken path does not change by
# orders of magnitude in a few small steps.
OPENING = 100.0


def opened(report: Report, settings: CheckSettings) -> bool:
    """Whether the survival that fails at initialisation in `report` is alive after its warm-up:
    it passes the threshold there, or it was nonzero and grew at least OPENING times."""
    if report.warmup is None:
        return False
    after = report.warmup.report
    if not survival_fails(after, settings) and after.summary.survival is not None:
        return True
    before, later = report.summary.survival, after.summary.survival
    if before is None or later is None or not (math.isfinite(before) and math.isfinite(later)):
        return False
    return before > 0 and later >= OPENING * before


def needs_warmup(report: Report, settings: CheckSettings) -> bool:
    """Whether the check must measure again after a warm-up: a junction is dead or vanishing at
    initialisation with no gate to explain it, or the gradient does not survive the depth."""
    if settings.warmup_steps < 1:
        return False
    return any(j.status in STARVED for j in report.junctions) or survival_fails(report, settings)


def after_warmup(report: Report, warmed: Report, steps: int, optimizer: str, lr: float) -> Report:
    """`report` (at initialisation) judged with `warmed` (the same probe after the warm-up): each
    junction dead or vanishing in `report` and alive in `warmed` becomes dormant, for the reason
    `warm-up`; `report.warmup` keeps `warmed`."""
    after = {j.name: j for j in warmed.junctions}
    junctions = tuple(
        replace(j, status=Status.DORMANT, dormant_reason=WARM_UP)
        if j.status in STARVED and j.name in after and after[j.name].status in ALIVE
        else j
        for j in report.junctions
    )
    starved = sum(j.status in STARVED for j in report.junctions)
    woke = sum(j.dormant_reason == WARM_UP for j in junctions)
    seen = [f"survival {_number(report.summary.survival)} at initialisation, "
            f"{_number(warmed.summary.survival)} after"]
    if starved:
        seen.append(f"{woke} of {starved} junction(s) dead or vanishing at initialisation pass "
                    "gradient after them")
    note = (f"warm-up: measured again after {steps} {optimizer} steps (lr {lr:g}) on a copy of the "
            f"model with the probe batch; " + "; ".join(seen))
    summary = replace(
        report.summary,
        flagged=tuple(Flag(j.name, j.status) for j in junctions
                      if j.status not in (Status.OK, Status.DORMANT)),
        notes=report.summary.notes + (note,),
    )
    return replace(report, junctions=junctions, summary=summary,
                   warmup=Warmup(steps, optimizer, lr, warmed))
