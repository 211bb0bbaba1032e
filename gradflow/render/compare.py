"""Rendering of a Comparison: a table with each variant's metric and its ratio to the baseline."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text

from gradflow.drivers.compare import Comparison, Row, describe
from gradflow.render.markdown import junction_cell
from gradflow.render.numbers import num, ratio
from gradflow.render.table import console, nested_name, nested_sentence, nesting_depths, probe_line


def ratio_style(value: float | None) -> str:
    """Collapse in red, loss in yellow, growth in magenta, near the baseline in green."""
    if value is None:
        return "dim"
    if value == 0 or value < 0.1:
        return "bold red"
    if value < 0.5:
        return "yellow"
    if not math.isfinite(value) or value > 10:
        return "magenta"
    return "green"


def compare_table(c: Comparison) -> Table:
    base = c.variants[c.baseline]
    table = Table(
        title=f"gradflow compare · {c.metric} · {base.model.source}",
        caption=probe_line(base),
        title_justify="left",
        caption_justify="left",
        header_style="bold",
        pad_edge=False,
    )
    table.add_column("junction", overflow="fold", max_width=40)
    table.add_column(c.baseline, justify="right")
    others = [v for v in c.variants if v != c.baseline]
    for name in others:
        table.add_column(name, justify="right")
        table.add_column("ratio", justify="right")
    for row, (_, depth) in zip(c.rows, row_nesting(c)):
        base_style = "" if row.has(c.baseline) else "dim"
        cells: list = [nested_name(row.name, depth), Text(cell(row, c.baseline), style=base_style)]
        for name in others:
            if not row.has(name):
                cells += [Text(cell(row, name), style="dim"), ""]
                continue
            r = c.ratio(row, name)
            cells += [cell(row, name), Text(ratio(r), style=ratio_style(r))]
        table.add_row(*cells)
    return table


def row_nesting(c: Comparison) -> list[tuple[str | None, int]]:
    """Each row's nested_in and nesting depth (nesting_depths), as reported by the first variant
    that has the junction, baseline first. The variants of one model share one graph; of two
    models that disagree, the first that has the junction decides."""
    found: dict[str, tuple[str | None, int]] = {}
    for report in c.variants.values():
        depths = nesting_depths([(j.name, j.nested_in) for j in report.junctions])
        for j, depth in zip(report.junctions, depths):
            found.setdefault(j.name, (j.nested_in, depth))
    return [found.get(row.name, (None, 0)) for row in c.rows]


def nested_line(nesting: Sequence[tuple[str | None, int]]) -> str:
    """The summary's sentence on the nested rows (nested_sentence), empty when it has none."""
    return nested_sentence([depth for _, depth in nesting])


def cell(row: Row, variant: str) -> str:
    """A variant's metric at a junction: a number, – where the metric is undefined (a ratio over
    a zero gradient), "absent" where the variant lacks the junction."""
    return num(row.values.get(variant)) if row.has(variant) else "absent"


def comparison_rich(c: Comparison) -> Group:
    """What `Comparison.__rich__` shows, and `gradflow compare` prints: the table, what changed
    in each variant, the junctions a variant lacks, the nested junctions, the notes."""
    parts: list = [compare_table(c)]
    for name in c.variants:
        if name != c.baseline:
            parts.append(Text(describe(c, name)))
    for name, report in c.variants.items():
        names = {j.name for j in report.junctions}
        missing = [r.name for r in c.rows if r.name not in names]
        if missing:
            parts.append(
                Text(
                    f"only in others, absent from {name}: "
                    + ", ".join(missing[:8])
                    + (" …" if len(missing) > 8 else ""),
                    style="yellow",
                )
            )
    nested = nested_line(row_nesting(c))
    if nested:
        parts.append(Text(nested))
    parts.extend(Text(f"note: {note}", style="dim") for note in _notes(c))
    return Group(*parts)


def print_comparison(c: Comparison) -> None:
    console().print(comparison_rich(c))


def _notes(c: Comparison) -> list[str]:
    """Every variant's notes, each once, in the order they first appear."""
    return list(dict.fromkeys(note for report in c.variants.values() for note in report.summary.notes))


def comparison_markdown(c: Comparison) -> str:
    others = [v for v in c.variants if v != c.baseline]
    head = f"| junction | {c.baseline} | " + " | ".join(f"{o} | ratio" for o in others) + " |"
    rule = "|---|--:|" + "--:|--:|" * len(others)
    lines = [f"### gradflow compare · {c.metric}", "", head, rule]
    nesting = row_nesting(c)
    for row, (_, depth) in zip(c.rows, nesting):
        cells = [junction_cell(row.name, depth), cell(row, c.baseline)]
        for o in others:
            r = c.ratio(row, o)
            flag = " 🔻" if r is not None and r < 0.1 else ""
            cells += [cell(row, o), ratio(r) + flag] if row.has(o) else [cell(row, o), ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {describe(c, o)}" for o in others]
    nested = nested_line(nesting)
    lines += [f"- {nested}"] if nested else []
    lines += [f"- note: {note}" for note in _notes(c)]
    return "\n".join(lines) + "\n"
