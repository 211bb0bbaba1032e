"""The check rules, run live on each measured step of a watch, and what a flag does.

Each step's Report goes through the rules of `gradflow.gate` at the levels the settings give
(`regression` has no baseline in a training loop and never runs). A dead block must be dead on two
measured steps in a row before it is flagged: one step of a block that passes back nothing is
common early in training and gone by the next. A flag warns once per (subject, rule), raises
GradientFlowError, or calls the user's function with the record and the rule's name.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from gradflow.engine.report import Report
from gradflow.errors import GradientFlowError, GradientFlowWarning, OptionError
from gradflow.gate.rules import Subject, Violation, rules
from gradflow.gate.settings import CheckSettings, Level
from gradflow.watching.record import WatchRecord

OnFlag = Callable[[WatchRecord, str], Any]
WARN, RAISE = "warn", "raise"
# Rules that need what a training loop does not have.
_NOT_LIVE = frozenset({"regression"})
_TWICE = frozenset({"dead"})  # flagged only when broken on two measured steps in a row


class LiveRules:
    """The rules of one watch, with what they saw on the previous measured step."""

    def __init__(self, on_flag: str | OnFlag, settings: CheckSettings | None) -> None:
        if not callable(on_flag) and on_flag not in (WARN, RAISE):
            raise OptionError(
                f"on_flag must be 'warn', 'raise' or a function (record, rule), got {on_flag!r}"
            )
        self.on_flag = on_flag
        self.settings = settings or CheckSettings()
        self.warned: set[tuple[str, str]] = set()
        self.before: set[tuple[str, str]] = set()  # (rule, subject) broken on the last measured step

    def judge(self, step: int, report: Report, records: Sequence[WatchRecord]) -> list[Violation]:
        """The violations of this step that count as flags, in rule order."""
        broken: list[Violation] = []
        for rule in rules():
            if rule.name in _NOT_LIVE or self.settings.level(rule.name) is Level.OFF:
                continue
            broken += rule.run(report, self.settings, None).violations
        now = {(v.rule, v.subject) for v in broken}
        flags = [v for v in broken if v.rule not in _TWICE or (v.rule, v.subject) in self.before]
        self.before = now
        return flags

    def flag(self, step: int, violation: Violation, records: Sequence[WatchRecord]) -> None:
        """Do what `on_flag` says with one flag."""
        junction = violation.subject if violation.kind is Subject.JUNCTION else None
        record = next((r for r in records if r.junction == junction), records[0] if records else None)
        if callable(self.on_flag):
            if record is not None:
                self.on_flag(record, violation.rule)
            return
        message = f"gradflow.watch: step {step}: {violation.rule} at {violation.subject}: {violation.message}"
        if self.on_flag == RAISE:
            raise GradientFlowError(message, rule=violation.rule, junction=junction,
                                    subject=violation.subject, step=step)
        key = (violation.subject, violation.rule)
        if key not in self.warned:
            self.warned.add(key)
            warnings.warn(message, GradientFlowWarning, stacklevel=2)
