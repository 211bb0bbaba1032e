"""Markdown for a pull-request comment: the verdict, the rules, and the violations."""

from __future__ import annotations

from gradflow.gate.result import CheckResult
from gradflow.gate.settings import Level
from gradflow.render.check import check_nested_sentence, holder_of, limit_text, value_text, worst_text
from gradflow.render.numbers import num
from gradflow.render.table import NESTED

ICON = {"passed": "✅", "failed": "❌", "warning": "⚠️", "off": "➖", "n/a": "➖"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def check_markdown(result: CheckResult, rows: int = 50) -> str:
    icon = "✅" if result.passed else "❌"
    lines = [
        f"### {icon} gradflow check · `{result.report.model.source}`",
        "",
        f"**{result.verdict()}**",
        "",
        "| rule | result | worst measured | limit |",
        "|---|---|---|---|",
    ]
    for o in result.outcomes:
        status = o.status + (f" ({len(o.violations)})" if o.violations else "")
        limit = limit_text(o) if o.level is not Level.OFF else "–"
        worst = _cell(worst_text(o, len(result.dormant)))
        lines.append(f"| `{o.rule}` | {ICON[o.status]} {status} | {worst} | {limit} |")
    nested = check_nested_sentence(result)
    if nested:
        lines += ["", nested]
    shown = result.violations[:rows]
    if shown:
        lines += ["", "| rule | junction / parameter | value | threshold | seed | detail |",
                  "|---|---|--:|--:|--:|---|"]
        for v in shown:
            level = "" if result.level(v) is Level.ERROR else " (warning)"
            holder = holder_of(result, v)
            subject = f"`{_cell(v.subject)}`" + (
                "" if holder is None else f" (nested in `{_cell(holder)}`)")
            lines.append(f"| `{v.rule}`{level} | {'' if holder is None else NESTED}{subject} | "
                         f"{value_text(v)} | "
                         f"{num(v.threshold)} | {v.seed} | {_cell(v.message)} |")
        if len(result.violations) > rows:
            lines.append(f"\n… and {len(result.violations) - rows} more (see `--format json`).")
    return "\n".join(lines) + "\n"
