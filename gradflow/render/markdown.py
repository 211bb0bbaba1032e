"""Markdown for pull-request comments."""

from __future__ import annotations

from gradflow.engine.report import Report
from gradflow.render.numbers import num, ratio

ICON = {"ok": "✅", "dormant": "💤"}


def report_markdown(report: Report) -> str:
    lines = [
        f"### gradflow · `{report.model.source}`",
        "",
        "| # | junction | skip | grad_out | grad_skip | grad_block | grad_in | block/skip "
        "| param_grad | status |",
        "|--:|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for j in report.junctions:
        lines.append(
            f"| {j.index} | `{j.name}` | {j.skip} | {num(j.grad_out)} | {num(j.grad_skip)} | "
            f"{num(j.grad_block)} | {num(j.grad_in)} | {ratio(j.block_ratio)} | {num(j.param_grad)} | "
            f"{ICON.get(j.status, '⚠️')} {j.status}"
            f"{f' ({j.dormant_reason})' if j.dormant_reason else ''} |"
        )
    s = report.summary
    lines += [
        "",
        f"{s.junctions} junctions · survival {ratio(s.survival)} · flagged: {len(s.flagged) or 'none'}",
    ]
    lines += [f"- note: {note}" for note in s.notes]
    return "\n".join(lines) + "\n"
