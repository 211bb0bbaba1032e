"""A Track as HTML (a notebook's `_repr_html_`): the terminal table's columns, with inline SVG
sparklines of grad_skip and grad_block per junction on a log scale both share, and the loss."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from gradflow.render.html import fragment
from gradflow.render.numbers import log_span, num, ratio
from gradflow.render.track import SPARK_WIDTH, bucket, first_last, last_value, overtook_text
from gradflow.track.history import FlowHistory
from gradflow.track.result import Track

SKIP_COLOR = "#c0392b"
BLOCK_COLOR = "#1e8449"
LOSS_COLOR = "#34495e"
SPARK_W, SPARK_H = 120, 22

GLOSSARY = ("Sparklines: the recorded steps left to right, on a log scale shared by a junction's "
            "skip and block; block/skip at the last record.")


def track_fragment(track: Track) -> str:
    s = track.settings
    data = (f"data {s.data}: {s.samples} samples, batch {s.batch_size}" if s.data
            else f"probe batch{f' of {s.batch_size}' if s.batch_size else ''}")
    body = (
        f"<h1>gradflow track · {escape(track.source)}</h1>"
        f"<p class=meta>{track.parameters:,} parameters · {escape(s.optimizer)} lr {s.lr:g} · "
        f"{track.steps_run} steps, every {s.every} recorded · {escape(data)} · "
        f"loss {escape(s.loss)} · seed {s.seed}</p>"
        f"{flow_table_html(track)}{loss_html(track)}"
        + (f"<p class=warning>interrupted after {track.steps_run} of {s.steps} steps; the "
           f"{len(track.losses)} recorded step(s) are kept</p>" if track.interrupted else "")
    )
    return fragment(body, track.gradflow_version, track.torch_version, GLOSSARY)


def flow_table_html(history: FlowHistory) -> str:
    """The terminal table's columns for any history, with SVG sparklines."""
    head = ("<tr><th>#</th><th class=name>junction</th><th class=left>grad_skip</th>"
            "<th>first → last</th><th class=left>grad_block</th><th>first → last</th>"
            "<th>block/skip</th><th class=left>block overtook</th></tr>")
    rows = []
    for k, name in enumerate(history.junctions):
        skips = [v for _, v in history.series(name, "grad_skip")]
        blocks = [v for _, v in history.series(name, "grad_block")]
        shared = log_span(bucket(skips, SPARK_WIDTH, True) + bucket(blocks, SPARK_WIDTH, True),
                          min_decades=0.5)
        last_ratio = last_value(history.series(name, "block_ratio"))
        rows.append(
            f"<tr><td>{k}</td><td class=name>{escape(name)}</td>"
            f"<td class=left>{sparkline(skips, shared, SKIP_COLOR, 'grad_skip')}</td>"
            f"<td>{first_last(skips)}</td>"
            f"<td class=left>{sparkline(blocks, shared, BLOCK_COLOR, 'grad_block')}</td>"
            f"<td>{first_last(blocks)}</td><td>{ratio(last_ratio)}</td>"
            f"<td class=left>{escape(overtook_text(history, name))}</td></tr>"
        )
    if not history.junctions:
        return ("<p class=warning>No residual junction found (or none selected): only the loss was "
                "recorded.</p>")
    return f"<table>{head}{''.join(rows)}</table>"


def sparkline(values: Sequence[float | None], span: tuple[float, float] | None, color: str,
              label: str, log: bool = True) -> str:
    """An inline SVG polyline of `values` (bucketed to SPARK_WIDTH points), broken where a value
    cannot be drawn; `span` is (low, high) on the scale drawn (log10 when `log`)."""
    points = bucket(values, SPARK_WIDTH, log)
    scaled = [None if v is None or not _drawable(v, log) else math.log10(v) if log else v
              for v in points]
    finite = [v for v in scaled if v is not None]
    low, high = span if span is not None else ((min(finite), max(finite)) if finite else (0.0, 1.0))
    runs: list[list[str]] = [[]]
    for k, v in enumerate(scaled):
        if v is None:
            runs.append([])
            continue
        x = 2 + k * (SPARK_W - 4) / max(1, len(scaled) - 1)
        fraction = (v - low) / (high - low) if high > low else 0.5
        y = SPARK_H - 2 - max(0.0, min(1.0, fraction)) * (SPARK_H - 4)
        runs[-1].append(f"{x:.1f},{y:.1f}")
    lines = "".join(
        f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{" ".join(run)}"/>'
        if len(run) > 1 else
        f'<circle cx="{run[0].split(",")[0]}" cy="{run[0].split(",")[1]}" r="1.5" fill="{color}"/>'
        for run in runs if run
    )
    return (f'<svg class="spark" width="{SPARK_W}" height="{SPARK_H}" viewBox="0 0 {SPARK_W} '
            f'{SPARK_H}" role="img" aria-label="{escape(label)}">{lines}</svg>')


def loss_html(track: FlowHistory) -> str:
    losses = [v for _, v in track.losses]
    if not losses:
        return "<p class=warning>no step was recorded</p>"
    finite = [(step, v) for step, v in track.losses if v is not None and math.isfinite(v)]
    text = (f"<p><b>loss</b> {num(losses[0])} "
            f"{sparkline(losses, None, LOSS_COLOR, 'loss', log=False)} {num(losses[-1])}")
    if finite:
        best_step, best = min(finite, key=lambda sv: sv[1])
        text += (f" <span class=dim>(lowest {num(best)} at step {best_step}; steps "
                 f"{track.losses[0][0]}–{track.losses[-1][0]})</span>")
    if len(finite) < len(losses):
        text += f" <span class=flag>{len(losses) - len(finite)} recorded loss(es) not finite</span>"
    return text + "</p>"


def _drawable(value: float | None, log: bool) -> bool:
    return value is not None and math.isfinite(value) and (value > 0 or not log)
