"""Rendering of a CheckResult for people: a rules table, a violations table, a one-line verdict.

The same tables as plain text make the AssertionError message of `gradflow.testing`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from gradflow.gate.result import CheckResult, RuleOutcome
from gradflow.gate.rules import Subject, Violation
from gradflow.gate.settings import Level
from gradflow.render.json import dumps
from gradflow.render.numbers import num, ratio
from gradflow.render.table import (
    NESTED,
    console,
    dormant_words,
    nested_sentence,
    nesting_depths,
    probe_line,
)

ROWS_PER_RULE = 10  # the table shows this many violations per rule; JSON, JUnit, GitHub show all

STATUS_STYLE = {"passed": "green", "failed": "bold red", "warning": "yellow", "off": "dim",
                "n/a": "dim"}


def worst_text(o: RuleOutcome, dormant: int = 0) -> str:
    """The worst value a rule measured, in its own words: `survival 0.94`, `0 parameters`;
    `dormant` junctions are counted beside the dead rule's."""
    text = _worst(o)
    if o.rule == "dead" and dormant and o.level is not Level.OFF:
        text = ("" if o.worst is None else text + " · ") + f"{dormant} dormant"
    return text


def _worst(o: RuleOutcome) -> str:
    describe: dict[str, Callable[[RuleOutcome], str]] = {
        "nonfinite": lambda o: f"{int(o.worst or 0)} non-finite",
        "unused": lambda o: f"{int(o.worst or 0)} unused",
        "no-grad": lambda o: f"{int(o.worst or 0)} without gradient",
        "zero-grad": _zero_grad,
        "cut": lambda o: f"{int(o.worst or 0)} cut",
        "vanishing": lambda o: f"survival {ratio(o.worst)}",
        "dead": lambda o: f"least passed back {ratio(o.worst)}",
        "exploding": lambda o: f"max {ratio(o.worst)} the output gradient",
        "regression": lambda o: f"largest drift {ratio(o.worst)}",
    }
    if o.level is Level.OFF:
        return "off"
    if o.worst is None:
        return "no baseline" if o.rule == "regression" else "nothing to judge"
    text = describe.get(o.rule, lambda o: num(o.worst))(o)
    return text + (f" at {o.worst_subject}" if o.worst_subject else "")


def _zero_grad(o: RuleOutcome) -> str:
    total, listed = int(o.worst or 0), len(o.violations)
    if total == 0 or listed == total:
        return f"{total} with a zero gradient"
    explained = "all" if listed == 0 else f"{total - listed}"
    return f"{total} with a zero gradient, {explained} explained by dormant junctions"


def limit_text(o: RuleOutcome) -> str:
    if o.rule == "zero-grad":
        return "reported"
    if o.threshold is None:
        return "none allowed"
    return {
        "vanishing": f"≥ {num(o.threshold)}",
        "dead": f"≥ {num(o.threshold)}",
        "exploding": f"≤ {num(o.threshold)}",
        "regression": f"within {num(o.threshold)}×",
    }.get(o.rule, num(o.threshold))


def value_text(v: Violation) -> str:
    if v.value is None:
        return "none" if v.rule in ("unused", "no-grad") else "–"
    return num(v.value)


def holder_of(result: CheckResult, v: Violation) -> str | None:
    """The junction that holds the junction `v` is about, when that one is nested
    (Junction.nested_in): every check output marks it, as the inspect table does."""
    if v.kind is not Subject.JUNCTION:
        return None
    return next((j.nested_in for j in result.report.junctions if j.name == v.subject), None)


def subject_text(result: CheckResult, v: Violation) -> str:
    """A violation's `junction / parameter` cell: `↳ name (nested in holder)` for a nested one."""
    holder = holder_of(result, v)
    return v.subject if holder is None else f"{NESTED}{v.subject} (nested in {holder})"


def check_nested_sentence(result: CheckResult) -> str:
    """The inspect summary's words on nested junctions, for the first seed's report."""
    return nested_sentence(nesting_depths([(j.name, j.nested_in) for j in result.report.junctions]))


def rules_table(result: CheckResult) -> Table:
    report = result.report
    seeds = ("seeds " if len(result.seeds) > 1 else "seed ") + ", ".join(map(str, result.seeds))
    table = Table(title=f"gradflow check · {report.model.source} · {seeds}",
                  caption=probe_line(report), title_justify="left", caption_justify="left",
                  header_style="bold", pad_edge=False)
    table.add_column("rule")
    table.add_column("result")
    table.add_column("worst measured", overflow="fold", max_width=70)
    table.add_column("limit")
    for o in result.outcomes:
        status = o.status + (f" ({len(o.violations)})" if o.violations else "")
        table.add_row(o.rule, Text(status, style=STATUS_STYLE[o.status]),
                      worst_text(o, len(result.dormant)),
                      limit_text(o) if o.level is not Level.OFF else "–")
    return table


def violations_table(result: CheckResult, rows_per_rule: int = ROWS_PER_RULE) -> Table:
    several = len(result.seeds) > 1
    table = Table(title="violations", title_justify="left", header_style="bold", pad_edge=False)
    table.add_column("rule")
    table.add_column("junction / parameter", overflow="fold", max_width=44)
    table.add_column("value", justify="right")
    table.add_column("threshold", justify="right")
    if several:
        table.add_column("seed", justify="right")
    table.add_column("detail", overflow="fold", max_width=80)
    for o in result.outcomes:
        if o.level is Level.OFF or not o.violations:
            continue
        style = "red" if o.level is Level.ERROR else "yellow"
        label = o.rule if o.level is Level.ERROR else f"{o.rule} (warning)"
        previous = None
        for v in o.violations[:rows_per_rule]:
            cells: list[Text | str] = [Text(label, style=style), subject_text(result, v), value_text(v),
                                       num(v.threshold)]
            if several:
                cells.append(str(v.seed))
            # a run of rows with the same detail shows it once
            cells.append(Text("〃", style="dim") if v.message == previous else v.message)
            previous = v.message
            table.add_row(*cells)
        hidden = len(o.violations) - rows_per_rule
        if hidden > 0:
            table.add_row(Text(label, style=style), Text(f"… {hidden} more", style="dim"), "", "",
                          *([""] if several else []), Text("see --format json", style="dim"))
    return table


def dormant_text(result: CheckResult) -> Text:
    """The dormant junctions and why, one line: they pass, and the user sees the reason."""
    shown = ", ".join(f"{name} ({dormant_words(reason)})" for name, reason in result.dormant[:6])
    shown += f", … ({len(result.dormant)})" if len(result.dormant) > 6 else ""
    return Text(f"dormant at initialisation, alive once training starts: {shown}", style="cyan")


def verdict_text(result: CheckResult) -> Text:
    if result.passed:
        return Text("✓ gradflow check " + result.verdict(), style="bold green")
    return Text("✗ gradflow check " + result.verdict(), style="bold red")


def render_check(result: CheckResult) -> Group:
    parts: list = [rules_table(result)]
    if result.violations:
        parts.append(violations_table(result))
    if result.dormant:
        parts.append(dormant_text(result))
    nested = check_nested_sentence(result)
    if nested:
        parts.append(Text(nested, style="dim"))
    parts.extend(Text(note, style="dim") for note in result.report.summary.notes)
    parts.append(verdict_text(result))
    return Group(*parts)


def check_rich(result: CheckResult) -> Group:
    """What `CheckResult.__rich__` shows: the tables and verdict `gradflow check` prints."""
    return render_check(result)


def print_check(result: CheckResult, file: IO[str] | None = None) -> None:
    console(file).print(check_rich(result))


def check_text(result: CheckResult, width: int = 120) -> str:
    """The human output as plain text (no colour): the AssertionError message in tests."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, highlight=False, soft_wrap=False,
            force_terminal=False).print(render_check(result))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def check_json(result: CheckResult) -> str:
    return dumps(result.to_dict())
