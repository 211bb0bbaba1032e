"""What a check judges by: the rule thresholds and each rule's level, with their defaults.

The defaults (see docs/ci.md for the measurements behind them):

    survival_below   1e-2  survival (first grad_in / last grad_out); healthy models: 0.9 to 11
    vanishing_below  1e-3  a junction's grad_in / |dL/d output| (its `vanishing` status, as in
                           `gradflow inspect`)
    dead_below       1e-3  block_ratio; healthy models: 5.7e-3 (small BERT) to 1.1
    exploding_above  1e3   max(grad_in, grad_out) / |dL/d output|; healthy models: 0.03 to 36
    tolerance        4     baseline drift; a new init or probe batch moves metrics by up to 2.7x
    warmup_steps     3     Adam steps (lr 1e-2) on a copy of the model before measuring again,
                           when a junction is dead or vanishing at initialisation and no gate
                           explains it (gradflow.gate.warmup); 0 turns the warm-up off
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gradflow.engine.verdicts import Thresholds
from gradflow.errors import OptionError
from gradflow.gate.catalog import Level, get_rule

SURVIVAL_BELOW = 1e-2
VANISHING_BELOW = Thresholds.vanishing_below
DEAD_BELOW = Thresholds.dead_below
EXPLODING_ABOVE = Thresholds.exploding_above
TOLERANCE = 4.0
WARMUP_STEPS = 3
# Adam moves every parameter whose gradient keeps its sign by about the learning rate each step,
# whatever the gradient's scale: three steps open a gate that starts at 0 to about 0.03, so the
# block behind it passes back well above the dead threshold, while a block whose gradient is
# exactly zero (dead ReLUs) gets no update at all.
WARMUP_LR = 1e-2


@dataclass(frozen=True)
class CheckSettings:
    """Thresholds and levels for one check. A rule whose level is not listed has its default
    (`gradflow.gate.catalog.Rule.level`).

    Attributes:
        survival_below: the `vanishing` rule's least survival (first grad_in / last grad_out).
        vanishing_below: a junction's least grad_in over the gradient at the output: below it,
            its status is `vanishing` (as `Thresholds.vanishing_below` in `gradflow.inspect`),
            which the warm-up then looks at again.
        dead_below: the `dead` rule's least block_ratio (and a junction's `dead` status).
        exploding_above: the `exploding` rule's largest grad_in or grad_out over the gradient
            at the output (and a junction's `exploding` status).
        tolerance: the factor a metric may move by from the baseline (`regression`).
        allow_unused: globs of parameter names the `unused` and `no-grad` rules let go.
        levels: (rule, level) pairs, the last one for a rule winning.

    Example:
        >>> from gradflow.gate import settings_from
        >>> settings = settings_from({}, dead_below=1e-2, warn=["regression"])
        >>> gradflow.check(model, x, settings=settings).passed
    """

    survival_below: float = SURVIVAL_BELOW
    vanishing_below: float = VANISHING_BELOW
    dead_below: float = DEAD_BELOW
    exploding_above: float = EXPLODING_ABOVE
    tolerance: float = TOLERANCE
    warmup_steps: int = WARMUP_STEPS
    allow_unused: tuple[str, ...] = ()
    levels: tuple[tuple[str, Level], ...] = field(default=())

    def __post_init__(self) -> None:
        for name in THRESHOLDS:
            value = getattr(self, name)
            problem = value_problem(name, value)
            if problem is not None:
                raise OptionError(f"{_flag(name)} {problem}, got {value!r}")
        problem = value_problem("warmup_steps", self.warmup_steps)
        if problem is not None:
            raise OptionError(f"--warmup-steps {problem}, got {self.warmup_steps!r}")

    def level(self, rule: str) -> Level:
        """The level the settings give `rule`, else the rule's own default (`error` for all
        but `zero-grad`, which reports)."""
        for name, level in reversed(self.levels):
            if name == rule:
                return level
        return get_rule(rule).level

    def with_levels(self, rules: Iterable[str], level: Level) -> CheckSettings:
        """A copy with `rules` at `level`; an unknown rule name is an OptionError."""
        added = tuple((get_rule(r).name, level) for r in rules)
        return replace(self, levels=self.levels + added)

    @property
    def thresholds(self) -> Thresholds:
        """The per-junction thresholds these settings give a measurement: a junction's status
        means the same in a check, a watch and `gradflow.inspect` given the same values."""
        return Thresholds(vanishing_below=self.vanishing_below,
                          exploding_above=self.exploding_above, dead_below=self.dead_below)

    def threshold(self, name: str | None) -> float | None:
        """The value of the threshold setting `name` (None for a rule without one)."""
        return None if name is None else float(getattr(self, name))


# The settings that are numbers, each checked by `value_problem`.
THRESHOLDS = ("survival_below", "vanishing_below", "dead_below", "exploding_above", "tolerance")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def value_problem(key: str, value: Any) -> str | None:
    """What is wrong with a setting's value, None if nothing: the words the flags and
    `[tool.gradflow.check]` share (each names the setting its own way)."""
    if key in ("survival_below", "vanishing_below", "dead_below"):
        return None if _number(value) and value >= 0 else "must be a number >= 0"
    if key == "exploding_above":
        return None if _number(value) and value > 0 else "must be a number > 0"
    if key == "tolerance":
        return None if _number(value) and 1 <= value < math.inf else "must be a finite factor >= 1"
    if key == "seeds":
        return None if value >= 1 else "must be at least 1"
    if key == "warmup_steps":
        whole = isinstance(value, int) and not isinstance(value, bool)
        return None if whole and value >= 0 else "must be a whole number >= 0 (0: no warm-up)"
    if key in ("warn", "disable"):
        return _unknown_rule(value)
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _unknown_rule(names: Iterable[str]) -> str | None:
    try:
        for name in names:
            get_rule(name)
    except OptionError as e:
        return str(e)
    return None


# What `[tool.gradflow.check]` may hold, with the type each key must have. `disable` and `warn`
# are lists of rule names; `baseline` and `seeds` are used by the command, not by the rules.
CONFIG_KEYS: dict[str, type] = {
    "survival_below": float,
    "dead_below": float,
    "exploding_above": float,
    "tolerance": float,
    "allow_unused": list,
    "disable": list,
    "warn": list,
    "warmup_steps": int,
    "baseline": str,
    "seeds": int,
}


# Keys of `[tool.gradflow.check]` that were renamed, old name to new. The old one is still read,
# as the new, with a FutureWarning: `vanishing_below` was the survival threshold before the flag
# `--vanishing-below` came to mean the per-junction threshold in every command.
RENAMED: dict[str, str] = {"vanishing_below": "survival_below"}


def renamed(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`values` with each renamed key under its new name, warning (FutureWarning) for each;
    `where` names the file or table in the warning. Both names set is an OptionError."""
    out = dict(values)
    for old, new in RENAMED.items():
        if old not in out:
            continue
        if new in out:
            raise OptionError(f"{where}: {_key(new)} and its old name {_key(old)} are both set: "
                              f"keep {_key(new)}")
        value = out.pop(old)
        out[new] = value
        warnings.warn(f"{where}: {_key(old)} is deprecated, use {_key(new)} "
                      f"(read as {_key(new)} = {value!r}; --{_key(old)} is now the per-junction "
                      "threshold, as in inspect)", FutureWarning, stacklevel=3)
    return out


def _key(name: str) -> str:
    return name.replace("_", "-")


def settings_from(config: Mapping[str, Any], **flags: Any) -> CheckSettings:
    """Defaults, then the configuration file, then the flags (a flag of None is not given).

    Flags: survival_below, vanishing_below, dead_below, exploding_above, tolerance,
    warmup_steps, allow_unused (replaces the configured list), and enable / warn / disable
    (lists of rule names; they set those rules' levels and leave the others as configured).
    A configuration's old key `vanishing_below` is read as `survival_below` (see `RENAMED`).
    """
    config = renamed(config, "settings")
    values: dict[str, Any] = {}
    for name in THRESHOLDS:
        chosen = flags.get(name)
        if chosen is None:
            chosen = config.get(name)
        if chosen is not None:
            values[name] = float(chosen)
    steps = flags.get("warmup_steps")
    if steps is None:
        steps = config.get("warmup_steps")
    if steps is not None:
        values["warmup_steps"] = steps
    allow = flags.get("allow_unused")
    if not allow:
        allow = config.get("allow_unused", ())
    values["allow_unused"] = tuple(str(p) for p in allow)
    settings = CheckSettings(**values)
    settings = settings.with_levels(config.get("warn", ()), Level.WARNING)
    settings = settings.with_levels(config.get("disable", ()), Level.OFF)
    for key, level in (("enable", Level.ERROR), ("warn", Level.WARNING), ("disable", Level.OFF)):
        settings = settings.with_levels(flags.get(key) or (), level)
    enable, warn, disable = (set(flags.get(k) or ()) for k in ("enable", "warn", "disable"))
    clash = (enable & disable) | (warn & (enable | disable))
    if clash:
        raise OptionError(f"rule {sorted(clash)[0]!r} is given two levels on the command line "
                          "(--enable, --warn, --disable): give it one")
    return settings
