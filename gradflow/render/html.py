"""HTML for sharing and for notebooks: a fragment per result, and the page `--html` writes.

A fragment is one `<div class=gradflow>` holding its own `<style>`, scoped to that class so that
a notebook's page keeps its look; a notebook shows it as it is (`_repr_html_`), and `page` wraps
it into the self-contained file of `--html`. Everything is inline (CSS, SVG): the page fetches
nothing, so it opens offline and in mail attachments alike. Every string from the model (names,
sources) is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from gradflow.drivers.compare import Comparison, Row, describe
from gradflow.engine.report import Junction, Report
from gradflow.render.compare import nested_line, row_nesting
from gradflow.render.depth import VARIANT_COLORS, comparison_depth, report_depth
from gradflow.render.depth_svg import depth_svg
from gradflow.render.numbers import log_span, num, ratio
from gradflow.render.table import NESTED, nested_sentence, nesting_depths, probe_line

_BAR_METRICS = (("grad_out", "#7f8c8d"), ("grad_skip", "#c0392b"),
                ("grad_block", "#1e8449"), ("grad_in", "#2c3e50"))

# Scoped to the fragment, so that a notebook's own styles are left alone.
STYLE = """
.gradflow { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; }
.gradflow h1 { font-size: 1.3rem; margin-bottom: .2rem; }
.gradflow h2 { font-size: 1.1rem; }
.gradflow .meta { color: #666; margin-top: 0; }
.gradflow table { border-collapse: collapse; margin: 1rem 0; font-variant-numeric: tabular-nums; }
.gradflow th, .gradflow td { padding: .25rem .6rem; border-bottom: 1px solid #e5e5e5;
  text-align: right; }
.gradflow th { border-bottom: 2px solid #bbb; font-weight: 600; }
.gradflow td.name, .gradflow th.name { text-align: left; font-family: ui-monospace, monospace; }
.gradflow td.left, .gradflow th.left { text-align: left; }
.gradflow .nested { color: #888; }
.gradflow .ok, .gradflow .passed { color: #1e8449; }
.gradflow .flag, .gradflow .failed { color: #b03a2e; font-weight: 600; }
.gradflow .warning { color: #9a7d0a; } .gradflow .dim { color: #888; }
.gradflow .charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr));
  gap: 1rem; }
.gradflow figure { margin: 0; border: 1px solid #e5e5e5; border-radius: 6px; padding: .5rem .7rem; }
.gradflow figcaption { font-family: ui-monospace, monospace; font-size: .85rem;
  margin-bottom: .3rem; }
.gradflow svg { max-width: 100%; height: auto; }
.gradflow svg text { font: 11px system-ui, sans-serif; fill: #333; }
.gradflow ul.notes { color: #444; }
.gradflow .foot { color: #888; font-size: .8rem; margin-top: 2rem; }
"""

# The page around a fragment: only what a whole document needs.
_PAGE_STYLE = "body { margin: 2rem auto; max-width: 1100px; padding: 0 1rem; }"

def _status(junction: Junction) -> str:
    if junction.dormant_reason:
        return f"{junction.status} ({junction.dormant_reason})"
    return str(junction.status)


GLOSSARY = ("grad_skip / grad_block: the gradient reaching the fork x through each path; grad_out: "
            "arriving at the add; grad_in: dL/dx from every consumer. L2 norms over the probe batch.")


def fragment(body: str, gradflow_version: str = "", torch_version: str = "",
             glossary: str = GLOSSARY) -> str:
    """One `<div class=gradflow>`: the scoped style, `body`, and a footer with the versions."""
    versions = f"gradflow {escape(gradflow_version)} · torch {escape(torch_version)} · "
    return (f"<div class=gradflow><style>{STYLE}</style>{body}"
            f"<p class=foot>{versions}{escape(glossary)}</p></div>")


def page(title: str, fragment: str) -> str:
    """The self-contained document `--html` writes around a fragment."""
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_PAGE_STYLE}</style></head>"
        f"<body>{fragment}</body></html>\n"
    )


def report_fragment(report: Report) -> str:
    """One Report: the depth picture, the junction table, the summary, a bar chart per junction."""
    values = [j.metric(m) for j in report.junctions for m, _ in _BAR_METRICS]
    span = log_span(values)
    rows = []
    depths = nesting_depths([(j.name, j.nested_in) for j in report.junctions])
    for j, depth in zip(report.junctions, depths):
        status = "ok" if j.status in ("ok", "dormant") else "flag"
        rows.append(
            "<tr>" + f"<td>{j.index}</td>{_junction_cell(j.name, j.nested_in, depth)}"
            f"<td class=left>{escape(j.skip)}</td>"
            + "".join(f"<td>{num(j.metric(m))}</td>" for m, _ in _BAR_METRICS)
            + f"<td>{ratio(j.block_ratio)}</td>"
            f"<td>{'–' if j.cosine is None else f'{j.cosine:+.2f}'}</td>"
            f"<td>{num(j.param_grad)}</td><td class='left {status}'>{escape(_status(j))}</td></tr>"
        )
    head = ("<tr><th>#</th><th class=name>junction</th><th class=name>skip</th>"
            + "".join(f"<th>{m}</th>" for m, _ in _BAR_METRICS)
            + "<th>block/skip</th><th>cos</th><th>param_grad</th><th class=name>status</th></tr>")
    charts = [
        _figure(_caption(j.name, j.nested_in),
                [(m, j.metric(m), num(j.metric(m)), color) for m, color in _BAR_METRICS], span)
        for j in report.junctions
    ]
    s = report.summary
    nested = nested_sentence(depths)
    notes = [f"{s.junctions} junctions · survival {ratio(s.survival)}"
             f"{f' · {nested}' if nested else ''} · loss {num(s.loss)} · "
             f"|dL/d output| {num(s.grad_output)} · flagged: "
             + (", ".join(f"{escape(f.name)} ({f.status})" for f in s.flagged) or "none")]
    notes += [escape(n) for n in s.notes]
    if not report.junctions:
        notes.insert(0, "No residual junction found: nothing to measure.")
    body = (
        f"<h1>gradflow · {escape(report.model.source)}</h1>"
        f"<p class=meta>{report.model.parameters:,} parameters · {escape(probe_line(report))}</p>"
        + (depth_svg(report_depth(report)) if report.junctions else "")
        + (f"<table>{head}{''.join(rows)}</table>" if report.junctions else "")
        + "<ul class=notes>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>"
        + (f"<h2>Gradient norms at each junction</h2>{_legend(_BAR_METRICS)}"
           f"<div class=charts>{''.join(charts)}</div>" if charts else "")
    )
    return fragment(body, report.gradflow_version, report.torch_version)


def _junction_cell(name: str, nested_in: str | None, depth: int) -> str:
    """The `junction` cell: a nested junction is marked, indented once per enclosing junction,
    and names the junction that holds it on hover, as the terminal table marks it."""
    if not depth:
        return f"<td class=name>{escape(name)}</td>"
    indent = 0.6 + 1.2 * (depth - 1)  # the cell's own padding, then one step per extra level
    return (f"<td class=name style=\"padding-left:{indent:.1f}rem\" "
            f"title=\"nested in {escape(nested_in or '')}\">"
            f"<span class=nested>{NESTED.strip()}</span> {escape(name)}</td>")


def _caption(name: str, nested_in: str | None) -> str:
    """A chart's title: the junction, and the junction that holds it when it is nested."""
    if nested_in is None:
        return name
    return f"{NESTED}{name} · nested in {nested_in}"


def report_html(report: Report) -> str:
    """The `--html` page for one Report: its fragment in a self-contained document."""
    return page(f"gradflow · {report.model.source}", report_fragment(report))


def comparison_fragment(comparison: Comparison) -> str:
    """A Comparison: the depth picture (one line per variant), the metric per variant with
    ratios, a bar chart per junction."""
    c = comparison
    others = [v for v in c.variants if v != c.baseline]
    colors = {name: VARIANT_COLORS[k % len(VARIANT_COLORS)] for k, name in enumerate(c.variants)}
    span = log_span([v for row in c.rows for v in row.values.values()])
    head = (f"<tr><th class=name>junction</th><th>{escape(c.baseline)}</th>"
            + "".join(f"<th>{escape(o)}</th><th>ratio</th>" for o in others) + "</tr>")
    rows = []
    nesting = row_nesting(c)
    for row, (nested_in, depth) in zip(c.rows, nesting):
        cells = [_junction_cell(row.name, nested_in, depth), f"<td>{_value(row, c.baseline)}</td>"]
        for o in others:
            r = c.ratio(row, o)
            style = " class=flag" if r is not None and r < 0.1 else ""
            cells += [f"<td>{_value(row, o)}</td>", f"<td{style}>{ratio(r)}</td>"]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    charts = [
        _figure(_caption(row.name, nested_in),
                [(v, row.values.get(v), _value(row, v), colors[v]) for v in c.variants], span)
        for row, (nested_in, _) in zip(c.rows, nesting)
    ]
    base = c.variants[c.baseline]
    notes = [describe(c, o) for o in others]
    nested = nested_line(nesting)
    notes += [nested] if nested else []
    notes += list(dict.fromkeys(n for report in c.variants.values() for n in report.summary.notes))
    body = (
        f"<h1>gradflow compare · {escape(c.metric)}</h1>"
        f"<p class=meta>baseline: {escape(c.baseline)} · {escape(base.model.source)} · "
        f"{escape(probe_line(base))}</p>"
        + (depth_svg(comparison_depth(c)) if c.rows else "")
        + f"<table>{head}{''.join(rows)}</table>"
        "<ul class=notes>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>"
        + (f"<h2>{escape(c.metric)} at each junction</h2>"
           f"{_legend([(v, colors[v]) for v in c.variants])}"
           f"<div class=charts>{''.join(charts)}</div>" if charts else "")
    )
    return fragment(body, base.gradflow_version, base.torch_version)


def comparison_html(comparison: Comparison) -> str:
    """The `--html` page for a Comparison: its fragment in a self-contained document."""
    return page(f"gradflow compare · {comparison.metric}", comparison_fragment(comparison))


def _figure(title: str, bars: Sequence[tuple[str, float | None, str, str]],
            span: tuple[float, float]) -> str:
    """A horizontal bar chart on a log scale shared by every chart of the page; a bar is
    (label, value, value as shown, color)."""
    label_w, bar_w, row_h = 92, 170, 20
    width, height = label_w + bar_w + 70, row_h * len(bars) + 6
    low, high = span
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(title)}">']
    for k, (label, value, shown, color) in enumerate(bars):
        y = 3 + k * row_h
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{escape(label)}</text>')
        length = 0.0
        if value is not None and math.isfinite(value) and value > 0:
            fraction = (math.log10(value) - low) / (high - low) if high > low else 1.0
            length = max(1.0, min(1.0, fraction) * bar_w)
        parts.append(f'<rect x="{label_w}" y="{y + 2}" width="{length:.1f}" height="{row_h - 6}" '
                     f'fill="{color}" rx="2"/>')
        parts.append(f'<text x="{label_w + length + 5:.1f}" y="{y + 13}">{shown}</text>')
    parts.append("</svg>")
    return f"<figure><figcaption>{escape(title)}</figcaption>{''.join(parts)}</figure>"


def _legend(items: Sequence[tuple[str, str]]) -> str:
    swatches = "".join(
        f'<span style="margin-right:1rem"><span style="display:inline-block;width:.8rem;'
        f'height:.8rem;background:{color};border-radius:2px;vertical-align:-1px"></span> '
        f"{escape(label)}</span>"
        for label, color in items
    )
    return f"<p class=meta>{swatches} · bars on a log scale shared by every chart</p>"


def _value(row: Row, variant: str) -> str:
    """The metric, – where it is undefined, "absent" where the variant lacks the junction."""
    return num(row.values.get(variant)) if row.has(variant) else "absent"
