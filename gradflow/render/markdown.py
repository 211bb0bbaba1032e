"""Markdown for pull-request comments."""

from __future__ import annotations

from gradflow.engine.report import Report
from gradflow.render.numbers import num, ratio
from gradflow.render.table import NESTED, nested_sentence, nesting_depths

ICON = {"ok": "✅", "dormant": "💤"}


def report_markdown(report: Report) -> str:
    lines = [
        f"### gradflow · `{report.model.source}`",
        "",
        "| # | junction | skip | grad_out | grad_skip | grad_block | grad_in | block/skip "
        "| param_grad | status |",
        "|--:|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    depths = nesting_depths([(j.name, j.nested_in) for j in report.junctions])
    for j, depth in zip(report.junctions, depths):
        lines.append(
            f"| {j.index} | {junction_cell(j.name, depth)} | {j.skip} | {num(j.grad_out)} | "
            f"{num(j.grad_skip)} | {num(j.grad_block)} | {num(j.grad_in)} | {ratio(j.block_ratio)} | "
            f"{num(j.param_grad)} | "
            f"{ICON.get(j.status, '⚠️')} {j.status}"
            f"{f' ({j.dormant_reason})' if j.dormant_reason else ''} |"
        )
    s = report.summary
    nested = nested_sentence(depths)
    lines += [
        "",
        f"{s.junctions} junctions · survival {ratio(s.survival)}{f' · {nested}' if nested else ''} · "
        f"flagged: {len(s.flagged) or 'none'}",
    ]
    lines += [f"- note: {note}" for note in s.notes]
    return "\n".join(lines) + "\n"


def junction_cell(name: str, depth: int) -> str:
    """A `junction` cell: a junction nested `depth` junctions deep is marked and indented once
    per enclosing junction, as the terminal table marks it (a table cell drops leading spaces, so
    the indent is non-breaking)."""
    if not depth:
        return f"`{name}`"
    return "&emsp;" * (depth - 1) + f"{NESTED}`{name}`"
