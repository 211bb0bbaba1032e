"""gradflow check: rules that turn a Report into violations, for CI gates and test suites.

Rules are pure functions Report -> violations in a small registry (`gradflow.gate.rules`);
`evaluate` runs them over one report per probe seed and keeps the worst case; renderers in
`gradflow.render` turn the CheckResult into a table, JSON, JUnit XML, GitHub annotations or
Markdown. Importing this package does not import torch.

    >>> from gradflow.gate import evaluate
    >>> result = evaluate([gradflow.inspect(model, x, seed=s) for s in range(3)])
    >>> result.passed, [v.subject for v in result.violations]
"""

from __future__ import annotations

from gradflow.gate.evaluate import evaluate
from gradflow.gate.result import CHECK_SCHEMA, CheckResult, RuleOutcome
from gradflow.gate.rules import Subject, Violation, get_rule, rule_names, rules
from gradflow.gate.settings import CheckSettings, Level, settings_from

__all__ = [
    "CHECK_SCHEMA",
    "CheckResult",
    "CheckSettings",
    "Level",
    "RuleOutcome",
    "Subject",
    "Violation",
    "evaluate",
    "get_rule",
    "rule_names",
    "rules",
    "settings_from",
]
