"""The catalog of check rules: what a rule is, and the registry each rule in `gradflow.gate.rules`
registers itself in. The settings (`gradflow.gate.settings`) read a rule's default level and
check rule names here, below the rules, which read the settings: no import goes both ways.
`gradflow.gate` imports the rules, so importing anything in it registers every rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from gradflow.choices import Choice
from gradflow.errors import OptionError
from gradflow.registry import Registry

if TYPE_CHECKING:
    from gradflow.engine.report import Report
    from gradflow.gate.rules import Finding
    from gradflow.gate.settings import CheckSettings


class Level(Choice):
    """What a rule's violations do: fail the check, only warn, or nothing (the rule is off)."""

    ERROR = "error"
    WARNING = "warning"
    OFF = "off"


RuleFn = Callable[["Report", "CheckSettings", "Report | None"], "Finding"]


class RuleKey(NamedTuple):
    """A rule's id as written on the command line, in configuration and in every output."""

    name: str


@dataclass(frozen=True)
class Rule:
    key: RuleKey
    title: str
    fires: str  # one line: what makes it fail, with its threshold setting
    threshold: str | None  # the CheckSettings field holding its threshold
    badness: Callable[[float | None], float]  # larger is worse: how seeds are merged
    run: RuleFn
    level: Level = Level.ERROR  # what its violations do unless the settings say otherwise

    @property
    def name(self) -> str:
        return self.key.name


RULES: Registry[RuleKey, Rule] = Registry("rule", error=OptionError, name=lambda key: key.name)


def register(name: str, *, title: str, fires: str, threshold: str | None = None,
             badness: Callable[[float | None], float] | None = None,
             level: Level = Level.ERROR) -> Callable[[RuleFn], RuleFn]:
    """Register the decorated function as the rule `RuleKey(name)`; `level` is what its
    violations do by default (`error` fails the check, `warning` reports them).

    Raises:
        ValueError: a rule of that name is already registered.
    """
    key = RuleKey(name)
    return RULES.register(
        key, lambda run: Rule(key, title, fires, threshold, badness or _higher, run, level)
    )


def get_rule(name: str) -> Rule:
    """The rule registered as `name`; an OptionError naming it and the known rules otherwise."""
    return RULES.get(RuleKey(name))


def rules() -> tuple[Rule, ...]:
    """Every registered rule, in registration (and report) order."""
    return tuple(RULES.values())


def rule_names() -> tuple[str, ...]:
    return tuple(k.name for k in RULES)


def _higher(value: float | None) -> float:
    if value is None or value != value:
        return math.inf
    return value


