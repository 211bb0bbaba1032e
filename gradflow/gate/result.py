"""The outcome of a check: every rule's worst value and violations over the seeds, and the
reports they came from. `to_dict()` is the `gradflow/check@2` JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gradflow.engine.report import Report
from gradflow.gate.rules import Subject, Violation
from gradflow.gate.settings import CheckSettings, Level

if TYPE_CHECKING:
    from rich.console import RenderableType

CHECK_SCHEMA = "gradflow/check@2"
READABLE_CHECK_SCHEMAS = ("gradflow/check@1", CHECK_SCHEMA)  # baselines may be either


@dataclass(frozen=True)
class RuleOutcome:
    """One rule over every seed.

    worst: the most extreme value the rule measured on any seed (failing or not), at
    `worst_subject` on seed `worst_seed`; None when it had nothing to measure.
    applicable: False when the rule had nothing to judge (no junctions; no baseline).
    """

    rule: str
    title: str
    fires: str
    level: Level
    threshold: float | None
    worst: float | None
    worst_subject: str | None
    worst_seed: int | None
    violations: tuple[Violation, ...]
    applicable: bool = True

    @property
    def failed(self) -> bool:
        """True when the rule is at level error and has a violation."""
        return self.level is Level.ERROR and bool(self.violations)

    @property
    def status(self) -> str:
        """passed | failed | warning | off | n/a"""
        if self.level is Level.OFF:
            return "off"
        if self.violations:
            return "failed" if self.level is Level.ERROR else "warning"
        return "passed" if self.applicable else "n/a"


@dataclass(frozen=True)
class CheckResult:
    """What `gradflow check` and `gradflow.testing` decide on: what `gradflow.check` returns.
    `to_dict()` is the `gradflow/check@1` JSON.

    In a notebook a CheckResult shows the tables `gradflow check` prints (through Rich) or the
    same as HTML; `repr` is one line with the verdict.

    Attributes:
        reports: one per seed, in seed order; the first is the one `--write-baseline` writes.
        outcomes: one per registered rule, in registry order (rules that are off included).
        settings: the thresholds and rule levels the reports were judged by.
        baseline: where the baseline report came from, None without one.

    Example:
        >>> result = gradflow.check(model, torch.randn(8, 3, 32, 32), seeds=3)
        >>> result
        CheckResult(passed: 6 rules · 6 junctions · 3 seeds)
        >>> result.passed, [v.subject for v in result.violations]
    """

    reports: tuple[Report, ...]
    outcomes: tuple[RuleOutcome, ...]
    settings: CheckSettings
    baseline: str | None = None

    def __repr__(self) -> str:
        from gradflow.render.short import check_repr
        return check_repr(self)

    def __rich__(self) -> RenderableType:
        from gradflow.render.check import check_rich
        return check_rich(self)

    def _repr_html_(self) -> str:
        from gradflow.render.check_html import check_fragment
        return check_fragment(self)

    @property
    def report(self) -> Report:
        """The first seed's report."""
        return self.reports[0]

    @property
    def seeds(self) -> tuple[int, ...]:
        """The probe seeds, one per report."""
        return tuple(r.probe.seed for r in self.reports)

    @property
    def violations(self) -> tuple[Violation, ...]:
        """Every violation of a rule that is on, errors and warnings, in rule order."""
        return tuple(v for o in self.outcomes if o.level is not Level.OFF for v in o.violations)

    @property
    def errors(self) -> tuple[Violation, ...]:
        """The violations of rules at level error: those that fail the check."""
        return tuple(v for o in self.outcomes if o.level is Level.ERROR for v in o.violations)

    @property
    def warnings(self) -> tuple[Violation, ...]:
        """The violations of rules at level warning: shown, but the check passes."""
        return tuple(v for o in self.outcomes if o.level is Level.WARNING for v in o.violations)

    @property
    def passed(self) -> bool:
        """True when no rule at level error has a violation."""
        return not any(o.failed for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        """0 when every rule that is on passes, 1 when one fails."""
        return 0 if self.passed else 1

    @property
    def dormant(self) -> tuple[tuple[str, str], ...]:
        """(junction, dormant_reason) of each junction dormant on some seed, in forward order:
        passing, and shown so that the reason is seen."""
        seen: dict[str, str] = {}
        for report in self.reports:
            for j in report.junctions:
                if j.dormant_reason is not None:
                    seen.setdefault(j.name, j.dormant_reason)
        order = [j.name for r in self.reports for j in r.junctions]
        return tuple(sorted(seen.items(), key=lambda item: order.index(item[0])))

    def outcome(self, rule: str) -> RuleOutcome:
        """The outcome of the rule named `rule`; KeyError when there is no such rule."""
        for o in self.outcomes:
            if o.rule == rule:
                return o
        raise KeyError(rule)

    def level(self, violation: Violation) -> Level:
        """The level of the rule `violation` broke."""
        return self.outcome(violation.rule).level

    def verdict(self) -> str:
        """One line: passed or failed, how many violations of which rules, over what."""
        on = [o for o in self.outcomes if o.level is not Level.OFF]
        judged = [o for o in on if o.applicable]
        seeds = len(self.reports)
        scope = " · ".join((_count(len(judged), "rule"),
                            _count(self.report.summary.junctions, "junction"),
                            _count(seeds, "seed")))
        if not self.passed:
            failed = [o for o in on if o.failed]
            count = sum(len(o.violations) for o in failed)
            names = ", ".join(f"{o.rule} ({len(o.violations)})" for o in failed)
            line = f"FAILED: {_count(count, 'violation')} of {names} · {scope}"
        else:
            line = f"passed: {scope}"
        if self.warnings:
            line += " · " + _count(len(self.warnings), "warning")
        return line

    def to_dict(self) -> dict[str, Any]:
        """The `gradflow/check@1` JSON document (`gradflow/schemas/check.schema.json`)."""
        return {
            "schema": CHECK_SCHEMA,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "verdict": self.verdict(),
            "source": self.report.model.source,
            "seeds": list(self.seeds),
            "baseline": self.baseline,
            "rules": [
                {
                    "rule": o.rule, "title": o.title, "level": o.level.value, "status": o.status,
                    "threshold": _number(o.threshold), "worst": _number(o.worst),
                    "worst_subject": o.worst_subject, "worst_seed": o.worst_seed,
                    "violations": len(o.violations),
                }
                for o in self.outcomes
            ],
            "violations": [
                {
                    "rule": v.rule, "level": self.level(v).value, "kind": str(v.kind),
                    "subject": v.subject, "value": _number(v.value), "value_text": _text(v.value),
                    "threshold": _number(v.threshold), "message": v.message, "seed": v.seed,
                    "location": v.location,
                }
                for v in self.violations
            ],
            "dormant": [{"junction": name, "reason": reason} for name, reason in self.dormant],
            "report": self.report.to_dict(),
        }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _text(value: float | None) -> str | None:
    if value is None:
        return None
    if value != value:
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}"


__all__ = ["CHECK_SCHEMA", "CheckResult", "RuleOutcome", "Subject", "Violation"]
