"""A CheckResult as HTML (a notebook's `_repr_html_`): the rules table, the violations, the
verdict, in the words of the terminal table (`gradflow.render.check`)."""

from __future__ import annotations

from html import escape

from gradflow.gate.result import CheckResult
from gradflow.gate.rules import Violation
from gradflow.gate.settings import Level
from gradflow.render.check import (
    ROWS_PER_RULE,
    check_nested_sentence,
    holder_of,
    limit_text,
    value_text,
    worst_text,
)
from gradflow.render.html import fragment
from gradflow.render.numbers import num
from gradflow.render.table import NESTED, probe_line

GLOSSARY = ("Each rule judges the worst value over the seeds; a failed rule makes the check fail, "
            "a warning does not.")


def check_fragment(result: CheckResult) -> str:
    report = result.report
    seeds = ("seeds " if len(result.seeds) > 1 else "seed ") + ", ".join(map(str, result.seeds))
    rules = "".join(
        f"<tr><td class=name>{escape(o.rule)}</td>"
        f"<td class='left {_status_class(o.status)}'>{escape(o.status)}"
        f"{f' ({len(o.violations)})' if o.violations else ''}</td>"
        f"<td class=left>{escape(worst_text(o))}</td>"
        f"<td class=left>{escape(limit_text(o)) if o.level is not Level.OFF else '–'}</td></tr>"
        for o in result.outcomes
    )
    body = (
        f"<h1>gradflow check · {escape(report.model.source)} · {seeds}</h1>"
        f"<p class=meta>{escape(probe_line(report))}</p>"
        "<table class=rules><tr><th class=name>rule</th><th class=left>result</th>"
        f"<th class=left>worst measured</th><th class=left>limit</th></tr>{rules}</table>"
        + (_violations(result) if result.violations else "")
        + (f"<p class=dim>{escape(nested)}</p>" if (nested := check_nested_sentence(result)) else "")
        + "".join(f"<p class=dim>{escape(note)}</p>" for note in report.summary.notes)
        + f"<p class='verdict {'passed' if result.passed else 'failed'}'>"
        f"{'✓' if result.passed else '✗'} gradflow check {escape(result.verdict())}</p>"
    )
    return fragment(body, report.gradflow_version, report.torch_version, GLOSSARY)


def _violations(result: CheckResult, rows_per_rule: int = ROWS_PER_RULE) -> str:
    several = len(result.seeds) > 1
    head = ("<tr><th class=name>rule</th><th class=name>junction / parameter</th><th>value</th>"
            f"<th>threshold</th>{'<th>seed</th>' if several else ''}<th class=left>detail</th></tr>")
    rows = []
    for o in result.outcomes:
        if o.level is Level.OFF or not o.violations:
            continue
        css = "failed" if o.level is Level.ERROR else "warning"
        label = escape(o.rule if o.level is Level.ERROR else f"{o.rule} (warning)")
        for v in o.violations[:rows_per_rule]:
            rows.append(
                f"<tr><td class='name {css}'>{label}</td>{_subject_cell(result, v)}"
                f"<td>{value_text(v)}</td><td>{num(v.threshold)}</td>"
                + (f"<td>{v.seed}</td>" if several else "")
                + f"<td class=left>{escape(v.message)}</td></tr>"
            )
        hidden = len(o.violations) - rows_per_rule
        if hidden > 0:
            span = 4 + several
            rows.append(f"<tr><td class='name {css}'>{label}</td>"
                        f"<td class='left dim' colspan={span}>… {hidden} more (see "
                        "<code>result.violations</code>)</td></tr>")
    return f"<h2>violations</h2><table class=violations>{head}{''.join(rows)}</table>"


def _subject_cell(result: CheckResult, v: Violation) -> str:
    """A nested junction is marked and names the junction that holds it, as in the table."""
    holder = holder_of(result, v)
    if holder is None:
        return f"<td class=name>{escape(v.subject)}</td>"
    return (f"<td class=name><span class=nested>{NESTED.strip()}</span> {escape(v.subject)} "
            f"<span class=nested>(nested in {escape(holder)})</span></td>")


def _status_class(status: str) -> str:
    return {"passed": "passed", "failed": "failed", "warning": "warning"}.get(status, "dim")
