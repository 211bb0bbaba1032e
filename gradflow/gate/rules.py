"""The check rules: pure functions from a measured Report (and a baseline) to violations.

Each rule is registered once under a `RuleKey` (`gradflow.gate.catalog`); `evaluate` runs every
enabled rule on every seed's report and keeps the worst case. Nothing here imports torch.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterator
from dataclasses import dataclass

from gradflow.choices import Choice
from gradflow.engine.report import Gradient, Junction, Report, Status
from gradflow.engine.verdicts import is_dead
from gradflow.gate.catalog import Rule as Rule
from gradflow.gate.catalog import RuleKey as RuleKey
from gradflow.gate.catalog import get_rule as get_rule
from gradflow.gate.catalog import register
from gradflow.gate.catalog import rule_names as rule_names
from gradflow.gate.catalog import rules as rules
from gradflow.gate.settings import CheckSettings, Level
from gradflow.gate.warmup import opened, survival_fails


class Subject(Choice):
    """What a violation is about."""

    MODEL = "model"
    JUNCTION = "junction"
    PARAMETER = "parameter"


@dataclass(frozen=True)
class Violation:
    """One rule broken by one junction, parameter or model-wide number.

    value: the measured number (None where there is none, e.g. a junction missing from the
        baseline); threshold: the limit it crossed (None for rules without one).
    seed: the probe seed that gave this (worst) value.
    location: `file:line` of the junction's add, when known.
    """

    rule: str
    subject: str
    kind: Subject
    value: float | None
    threshold: float | None
    message: str
    seed: int = 0
    location: str | None = None


@dataclass(frozen=True)
class Finding:
    """What one rule saw on one report: the worst value it measured and its violations.

    worst / worst_subject: the most extreme value the rule looked at, failing or not (None when
    the rule had nothing to look at, e.g. no junctions, or no baseline for `regression`).
    """

    worst: float | None
    worst_subject: str | None
    violations: tuple[Violation, ...]
    applicable: bool = True


def _lower(value: float | None) -> float:
    if value is None or value != value:
        return math.inf
    return -value


def _farther(value: float | None) -> float:
    """How far a ratio is from 1, in either direction (0 and inf are infinitely far)."""
    if value is None or value != value or value <= 0 or math.isinf(value):
        return math.inf
    return abs(math.log(value))


def num(value: float | None) -> str:
    """A number for a message: 3 significant digits, or nan / inf / none."""
    if value is None:
        return "none"
    if not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    return "0" if value == 0 else f"{value:.3g}"


def ratio(value: float | None) -> str:
    return num(value) + "×"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


# --- non-finite -------------------------------------------------------------------------------


@register("nonfinite", title="Non-finite values",
          fires="any NaN or Inf in the loss, the output gradient, a junction metric or a "
                "parameter gradient")
def nonfinite(report: Report, settings: CheckSettings, baseline: Report | None) -> Finding:
    found: list[Violation] = []
    s = report.summary
    for subject, value in (("loss", s.loss), ("|dL/d output|", s.grad_output)):
        if value is not None and not math.isfinite(value):
            found.append(Violation("nonfinite", subject, Subject.MODEL, value, None,
                                   f"the {subject} is {num(value)}", report.probe.seed))
    for j in report.junctions:
        bad = [(m, v) for m, v in _junction_numbers(j) if v is not None and not math.isfinite(v)]
        if bad:
            shown = ", ".join(f"{m} {num(v)}" for m, v in bad)
            found.append(Violation("nonfinite", j.name, Subject.JUNCTION, bad[0][1], None,
                                   shown, report.probe.seed, j.location))
    grads = {p.name: p for p in report.parameters}
    for name in s.params_nonfinite:
        value = grads[name].grad_norm if name in grads else math.nan
        found.append(Violation("nonfinite", name, Subject.PARAMETER, value, None,
                               f"gradient norm {num(value)}", report.probe.seed))
    return Finding(float(len(found)), None, tuple(found))


def _junction_numbers(j: Junction) -> Iterator[tuple[str, float | None]]:
    for metric in ("grad_out", "grad_skip", "grad_block", "grad_in", "block_ratio", "cosine",
                   "param_grad"):
        yield metric, j.metric(metric)
    yield "grad_context", j.grad_context


# --- parameters: unused, without gradient, zero gradient ---------------------------------------


@register("unused", title="Unused parameters",
          fires="a trainable parameter the forward pass never used (a layer built and never "
                "called), unless --allow-unused matches its name")
def unused(report: Report, settings: CheckSettings, baseline: Report | None) -> Finding:
    message = ("never used by the forward pass: a layer built and never called, or a branch the "
               "probe does not take (--allow-unused if on purpose, as for a mask token)")
    return _parameters("unused", report, Gradient.UNUSED, message, settings.allow_unused)


@register("no-grad", title="Parameters cut off from the loss",
          fires="a trainable parameter the forward pass used but no gradient reaches (a "
                ".detach(), no_grad or .data on the way), unless --allow-unused matches its name")
def no_grad(report: Report, settings: CheckSettings, baseline: Report | None) -> Finding:
    message = ("used by the forward pass, but no gradient arrives: something on the way leaves "
               "the autograd graph (a stray .detach(), no_grad, .data), or its output does not "
               "reach the loss (an output the loss ignores, such as a pooler)")
    return _parameters("no-grad", report, Gradient.NONE, message, settings.allow_unused)


@register("zero-grad", title="Parameters with a zero gradient",
          fires="a trainable parameter whose gradient is exactly 0 after the probe, outside the "
                "blocks of dormant junctions; reported, passes by default (a warning)",
          level=Level.WARNING)
def zero_grad(report: Report, settings: CheckSettings, baseline: Report | None) -> Finding:
    """Zero gradients inside a dormant junction's block are its gate's doing (the block is
    closed on purpose), and those that are nonzero after the warm-up were zero at initialisation
    only: counted in the worst value, not listed."""
    message = ("gradient exactly 0 this step: everything in front of it is zero (a "
               "zero-initialised gate or head, dead ReLUs, a bias right before a norm that "
               "removes the mean)")
    closed = tuple(m for j in report.junctions if j.status is Status.DORMANT
                   for m in j.block_modules)
    if report.warmup is not None:  # zero at initialisation only, as under a zero head
        closed += tuple(p.name for p in report.warmup.report.parameters
                        if p.gradient is Gradient.OK)
    listed = _parameters("zero-grad", report, Gradient.ZERO, message, closed)
    total = sum(p.gradient is Gradient.ZERO for p in report.parameters)
    return Finding(float(total), None, listed.violations)


def _parameters(rule: str, report: Report, kind: Gradient, message: str,
                allowed_names: tuple[str, ...]) -> Finding:
    """A violation for each parameter whose gradient is `kind`, unless its name is allowed."""
    found = tuple(
        Violation(rule, p.name, Subject.PARAMETER, p.grad_norm, None, message, report.probe.seed)
        for p in report.parameters
        if p.gradient is kind and not allowed(p.name, allowed_names)
    )
    return Finding(float(len(found)), None, found)


def allowed(name: str, patterns: tuple[str, ...]) -> bool:
    """A glob on the parameter name (`pooler.*`, `*.alpha`) or a module prefix (`pooler`)."""
    return any(
        fnmatch.fnmatchcase(name, p) or name.startswith(p.rstrip(".") + ".") for p in patterns
    )


# --- cut paths --------------------------------------------------------------------------------


@register("cut", title="Cut paths",
          fires="a junction's skip or block operand is a detached copy of its path "
                "(x.detach() + f(x), x + f(x).detach()): no gradient passes it")
def cut(report: Report, settings: CheckSettings, baseline: Report | None) -> Finding:
    found = []
    for j in report.junctions:
        if j.cut is None:
            continue
        if j.cut == "skip":
            message = ("the skip is a detached copy of the fork: the gradient reaches it only "
                       "through the block (a stray .detach() on the residual)")
        else:
            message = ("the block's output is detached before the add: the block gets no "
                       "gradient from this junction (a stray .detach(); where meant, as in a "
                       "straight-through estimator, --warn cut)")
        found.append(Violation("cut", j.name, Subject.JUNCTION, None, None, message,
                               report.probe.seed, j.location))
    return Finding(float(len(found)), None, tuple(found), applicable=bool(report.junctions))


# --- vanishing with depth ---------------------------------------------------------------------


@register("vanishing", title="Vanishing with depth",
          fires="grad_in at the first junction / grad_out at the last is below --survival-below "
                "at initialisation, and after the warm-up it neither passes nor has grown 100 times",
          threshold="survival_below", badness=_lower)
def vanishing(report: Report, settings: CheckSettings, baseline: Report | None) -> Finding:
    if not report.junctions:
        return Finding(None, None, (), applicable=False)
    first, last = report.junctions[0], report.junctions[-1]
    subject = first.name if first is last else f"{first.name} … {last.name}"
    survival = report.summary.survival
    after = report.warmup
    if after is not None and survival_fails(report, settings) and opened(report, settings):
        # Starved at initialisation only (a zero-initialised head, a stage behind a 1e-5 layer
        # scale): judged by the gradient after the warm-up.
        before = "no gradient" if survival is None else ratio(survival)
        return Finding(after.report.summary.survival,
                       f"{subject} after the warm-up, up from {before}", ())
    later = ("" if after is None else
             f"; after {after.steps} warm-up steps: survival {ratio(after.report.summary.survival)}")
    if survival is None:
        if last.grad_out == 0:
            message = f"no gradient arrives at the last junction ({last.name}){later}"
            return Finding(0.0, subject, (Violation(
                "vanishing", subject, Subject.MODEL, 0.0, settings.survival_below, message,
                report.probe.seed, first.location),))
        return Finding(None, subject, ())
    if not math.isfinite(survival) or survival >= settings.survival_below:
        return Finding(survival, subject, ())
    message = (f"grad_in at the first junction ({first.name}) is {ratio(survival)} the grad_out "
               f"at the last ({last.name}): the gradient fades with depth (broken or scaled "
               f"skips, a plain stack without residual paths){later}")
    return Finding(survival, subject, (Violation(
        "vanishing", subject, Subject.MODEL, survival, settings.survival_below, message,
        report.probe.seed, first.location),))


# --- dead blocks ------------------------------------------------------------------------------


@register("dead", title="Dead blocks",
          fires="a junction's block passes back below --dead-below of what its skip does, both to "
                "its fork (block_ratio) and to anything else it reads (grad_context / grad_skip), "
                "unless it is dormant (held closed by a gate, or alive after the warm-up)",
          threshold="dead_below", badness=_lower)
def dead(report: Report, settings: CheckSettings, baseline: Report | None) -> Finding:
    # A cut junction has its own rule; a dormant one is closed on purpose (Junction.dormant_reason).
    measured = [j for j in report.junctions
                if _finite(j.block_ratio) and j.cut is None and j.status is not Status.DORMANT]
    if not measured:
        return Finding(None, None, (), applicable=bool(report.junctions))
    worst = min(measured, key=passed_back)
    found = []
    for j in measured:
        if not is_dead(j.block_ratio, j.context_ratio, settings.dead_below):
            continue
        if j.block_ratio == 0:
            message = ("the block passes back exactly 0 (dead ReLUs, a .detach() or no_grad "
                       "inside the block, a constant 0 scale)")
        else:
            message = (f"the block passes back {ratio(j.block_ratio)} of what the skip does: it "
                       "barely trains (a tiny constant scale, saturated activations)")
        message += _still(report, j.name)
        found.append(Violation("dead", j.name, Subject.JUNCTION, j.block_ratio,
                               settings.dead_below, message, report.probe.seed, j.location))
    return Finding(passed_back(worst), worst.name, tuple(found))


def _still(report: Report, name: str) -> str:
    """What the warm-up saw at junction `name`, when it ran."""
    if report.warmup is None:
        return ""
    after = {j.name: j for j in report.warmup.report.junctions}.get(name)
    shown = "" if after is None else f" (block_ratio {ratio(after.block_ratio)})"
    return f"; still dead after {report.warmup.steps} warm-up steps{shown}"


def passed_back(junction: Junction) -> float:
    """What a block passes back against its skip, to its fork or to its context, the larger."""
    return max(junction.block_ratio or 0.0, junction.context_ratio or 0.0)


# --- exploding --------------------------------------------------------------------------------


@register("exploding", title="Exploding",
          fires="a junction's grad_out or grad_in / |dL/d output| is above --exploding-above",
          threshold="exploding_above")
def exploding(report: Report, settings: CheckSettings, baseline: Report | None) -> Finding:
    reference = report.summary.grad_output
    if not report.junctions:
        return Finding(None, None, (), applicable=False)
    if not reference or not math.isfinite(reference):
        return Finding(None, None, ())  # nothing to scale by; `nonfinite` reports a bad one
    rows = []
    for j in report.junctions:
        values = [v for v in (j.grad_out, j.grad_in) if v is not None and math.isfinite(v)]
        if values:
            rows.append((max(values) / reference, j))
    if not rows:
        return Finding(None, None, ())
    worst_value, worst = max(rows, key=lambda r: r[0])
    found = tuple(
        Violation("exploding", j.name, Subject.JUNCTION, value, settings.exploding_above,
                  f"the gradient here is {ratio(value)} the gradient at the output (a block scaled "
                  "up, a missing normalisation, a too-large init)", report.probe.seed, j.location)
        for value, j in rows if value > settings.exploding_above
    )
    return Finding(worst_value, worst.name, found)


# --- regression against a baseline ------------------------------------------------------------

COMPARED = ("grad_out", "grad_skip", "grad_block", "grad_in", "block_ratio", "param_grad")


@register("regression", title="Regression against the baseline",
          fires="with --baseline: a junction missing or new, or a metric that moved by more than "
                "--tolerance times in either direction",
          threshold="tolerance", badness=_farther)
def regression(report: Report, settings: CheckSettings, baseline: Report | None) -> Finding:
    if baseline is None:
        return Finding(None, None, (), applicable=False)
    seed = report.probe.seed
    found: list[Violation] = []
    worst: tuple[float, float | None, str] | None = None  # (distance, moved, subject)
    current = {j.name: j for j in report.junctions}
    before = {j.name: j for j in baseline.junctions}
    for name, j in before.items():
        if name not in current:
            found.append(Violation("regression", name, Subject.JUNCTION, None, None,
                                   "missing: the baseline has this junction, the model no longer "
                                   "does", seed, j.location))
    for name, j in current.items():
        if name not in before:
            found.append(Violation("regression", name, Subject.JUNCTION, None, None,
                                   "new: the model has a junction the baseline lacks (refresh the "
                                   "baseline if intended)", seed, j.location))
            continue
        moves = [(m, *_move(before[name].metric(m), j.metric(m))) for m in COMPARED]
        moves = [mv for mv in moves if mv[1] is not None]
        if not moves:
            continue
        metric, moved, old, new = max(moves, key=lambda mv: _farther(mv[1]))
        if worst is None or _farther(moved) > worst[0]:
            worst = (_farther(moved), moved, name)
        over = [mv for mv in moves if _farther(mv[1]) > math.log(settings.tolerance)]
        if over:
            shown = "; ".join(f"{m} {num(o)} → {num(n)} ({ratio(v)})" for m, v, o, n in over)
            found.append(Violation("regression", name, Subject.JUNCTION, moved, settings.tolerance,
                                   f"moved more than {settings.tolerance:g}×: {shown}", seed,
                                   j.location))
    moved_survival = _move(baseline.summary.survival, report.summary.survival)
    if moved_survival[0] is not None:
        value, old, new = moved_survival
        if worst is None or _farther(value) > worst[0]:
            worst = (_farther(value), value, "survival")
        if _farther(value) > math.log(settings.tolerance):
            found.append(Violation("regression", "survival", Subject.MODEL, value,
                                   settings.tolerance,
                                   f"survival (first grad_in / last grad_out) moved "
                                   f"{num(old)} → {num(new)} ({ratio(value)})", seed))
    return Finding(None if worst is None else worst[1], None if worst is None else worst[2],
                   tuple(found))


def _move(old: float | None, new: float | None) -> tuple[float | None, float | None, float | None]:
    """(new / old, old, new); new / old is inf when only the baseline was 0, None when either is
    missing or non-finite, or both are 0."""
    if not _finite(old) or not _finite(new):
        return (None, old, new)
    assert old is not None and new is not None
    if old == 0:
        return (None, old, new) if new == 0 else (math.inf, old, new)
    return (new / old, old, new)


def baseline_mismatch(baseline: Report, report: Report) -> str | None:
    """Why the baseline's numbers cannot be compared with this run's, or None if they can."""
    def inputs(r: Report) -> str:
        return ", ".join("x".join(map(str, i.shape)) + f" {i.dtype}" for i in r.probe.inputs)

    def precision(r: Report) -> str:
        return f"{r.probe.autocast} (autocast)" if r.probe.autocast else "float32"

    for what, old, new in (
        ("probe inputs", inputs(baseline), inputs(report)),
        ("precision", precision(baseline), precision(report)),
        ("loss", baseline.probe.loss, report.probe.loss),
        ("mode", baseline.probe.mode, report.probe.mode),
        ("stop-gradient", str(baseline.stop_gradient), str(report.stop_gradient)),
    ):
        if old != new:
            return (f"the baseline was measured with {what} {old or 'none'}, this run uses "
                    f"{new or 'none'}: use the same probe options or rewrite it with "
                    "--write-baseline")
    return None
