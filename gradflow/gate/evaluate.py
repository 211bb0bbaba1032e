"""evaluate(): run every rule on every seed's report and keep the worst case. No torch."""

from __future__ import annotations

from collections.abc import Sequence

from gradflow.engine.report import Report
from gradflow.errors import OptionError
from gradflow.gate.result import CheckResult, RuleOutcome
from gradflow.gate.rules import Finding, Rule, Violation, baseline_mismatch, rules
from gradflow.gate.settings import CheckSettings, Level


def evaluate(reports: Sequence[Report], settings: CheckSettings | None = None,
             baseline: Report | None = None, baseline_name: str | None = None) -> CheckResult:
    """Judge the reports (one per probe seed) by every registered rule.

    A rule fails if it fails on any seed. For each rule and subject (junction, parameter), the
    violation kept is the worst over the seeds (the lowest survival or block ratio, the highest
    growth, the largest drift); the rule's worst value is taken the same way.

    Args:
        reports: at least one Report, e.g. from `gradflow.inspect` with seeds 0, 1, 2.
        settings: thresholds and levels (default: CheckSettings()).
        baseline: a Report to compare against (the `regression` rule); it must have been measured
            with the same probe inputs, precision (--dtype), loss, mode and
            stop-gradient.
    Returns:
        A CheckResult; `result.passed` and `result.exit_code` say whether the check passed.
    Raises:
        OptionError: no report, or a baseline that cannot be compared with these reports.
    """
    if not reports:
        raise OptionError("nothing to check: no report")
    settings = settings or CheckSettings()
    if baseline is not None:
        problem = baseline_mismatch(baseline, reports[0])
        if problem:
            raise OptionError(problem)
    outcomes = []
    for rule in rules():
        level = settings.level(rule.name)
        findings = [] if level is Level.OFF else [rule.run(r, settings, baseline) for r in reports]
        outcomes.append(_merge(rule, level, settings, findings, [r.probe.seed for r in reports]))
    return CheckResult(tuple(reports), tuple(outcomes), settings, baseline_name)


def _merge(rule: Rule, level: Level, settings: CheckSettings, findings: Sequence[Finding],
           seeds: Sequence[int]) -> RuleOutcome:
    worst: tuple[float | None, str | None, int | None] = (None, None, None)
    kept: dict[tuple[str, str], Violation] = {}
    for finding, seed in zip(findings, seeds):
        if finding.worst is not None and (
            worst[0] is None or rule.badness(finding.worst) > rule.badness(worst[0])
        ):
            worst = (finding.worst, finding.worst_subject, seed)
        for v in finding.violations:
            key = (v.kind.value, v.subject)
            if key not in kept or rule.badness(v.value) > rule.badness(kept[key].value):
                kept[key] = v
    return RuleOutcome(
        rule=rule.name, title=rule.title, fires=rule.fires, level=level,
        threshold=settings.threshold(rule.threshold), worst=worst[0], worst_subject=worst[1],
        worst_seed=worst[2], violations=tuple(kept.values()),
        applicable=any(f.applicable for f in findings) if findings else True,
    )
