"""The depth picture as inline SVG, for the top of the HTML pages: self-contained (no script,
no font, no URL), every model string escaped, a tooltip (`<title>`) on every point."""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape

from gradflow.render.depth import DepthPicture, Line, mark_color
from gradflow.render.numbers import num

WIDTH, HEIGHT = 880, 320
LEFT, RIGHT, BOTTOM = 64, 16, 52  # margins around the plot area; the legend's rows make the top
NAMED_TICKS = 16  # up to this many junctions, each is named under the axis
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def depth_svg(picture: DepthPicture) -> str:
    """An `<svg class=depth>`: one polyline per run of each line, a ring per flagged junction."""
    legend, rows = _legend(picture)
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, 18 + 16 * rows, HEIGHT - BOTTOM
    low, high = picture.span()
    depths = picture.depths
    first, last = (min(depths), max(depths)) if depths else (0, 0)

    def x(depth: int) -> float:
        if last == first:
            return (x0 + x1) / 2
        return x0 + 12 + (depth - first) / (last - first) * (x1 - x0 - 24)

    def y(value: float | None) -> float:
        if value is None:
            return y1
        v = math.log10(value) if picture.log else value
        return y1 - (v - low) / (high - low) * (y1 - y0)

    parts = [f'<svg class="depth" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'role="img" aria-label="{escape(picture.y_label)} against junction depth">']
    parts += _y_axis(picture, low, high, y, x0, x1, (y0 + y1) / 2)
    parts += _x_axis(picture, x, y1)
    parts.append(f'<line x1="{x0}" y1="{y1}" x2="{x1}" y2="{y1}" stroke="#999"/>')
    for line in sorted(picture.lines, key=lambda line: not line.beneath):
        parts += _line(line, picture, x, y)
    for mark in picture.marks:
        where = "no value to draw" if mark.value is None else num(mark.value)
        parts.append(
            f'<circle class="flag" cx="{x(mark.depth):.1f}" cy="{y(mark.value):.1f}" r="6" '
            f'fill="none" stroke="{mark_color(mark.status)}" stroke-width="1.8">'
            f"<title>{escape(mark.junction)}: {escape(mark.status)} ({where})</title></circle>"
        )
    parts += legend
    parts.append("</svg>")
    return "".join(parts)


XScale = Callable[[int], float]
YScale = Callable[[float | None], float]


def _line(line: Line, picture: DepthPicture, x: XScale, y: YScale) -> list[str]:
    parts = []
    names = {depth: picture.label(k) for k, depth in enumerate(picture.depths)}
    for run in line.points(picture.depths):
        points = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in run)
        width, opacity, radius = (4.5, 0.45, 3.0) if line.beneath else (1.8, 1.0, 2.2)
        parts.append(f'<polyline class="series" data-label="{escape(line.label)}" fill="none" '
                     f'stroke="{line.color}" stroke-width="{width}" stroke-opacity="{opacity}" '
                     f'points="{points}"/>')
        parts += [
            f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="{radius}" fill="{line.color}" '
            f'fill-opacity="{opacity}">'
            f"<title>{escape(names[d])} · {escape(line.label)} {num(v)}</title></circle>"
            for d, v in run
        ]
    return parts


def _y_axis(picture: DepthPicture, low: float, high: float, y: YScale, x0: int, x1: int,
            middle: float) -> list[str]:
    parts = []
    if picture.log:
        first, last = math.ceil(low), math.floor(high)
        step = max(1, -(-(last - first) // 8))  # at most 9 labelled decades
        ticks = [(10.0 ** e, _power(e)) for e in range(first, last + 1, step)]
        if len(ticks) < 3:  # a span of a decade or two: 2 and 5 times each power as well
            ticks = [(m * 10.0 ** e, num(m * 10.0 ** e)) for e in range(first - 1, last + 1)
                     for m in (1, 2, 5) if low <= math.log10(m * 10.0 ** e) <= high]
    else:
        ticks = [(v, f"{v:+.1f}" if v else "0") for v in (-1.0, -0.5, 0.0, 0.5, 1.0)]
    for value, label in ticks:
        at = y(value)
        parts.append(f'<line x1="{x0}" y1="{at:.1f}" x2="{x1}" y2="{at:.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{x0 - 6}" y="{at + 4:.1f}" text-anchor="end">{label}</text>')
    scale = " (log scale)" if picture.log else ""
    parts.append(f'<text x="14" y="{middle:.0f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {middle:.0f})">{escape(picture.y_label)}{scale}</text>')
    return parts


def _x_axis(picture: DepthPicture, x: XScale, y1: int) -> list[str]:
    parts = []
    depths = picture.depths
    if len(depths) <= NAMED_TICKS:
        for k, (depth, name) in enumerate(zip(depths, picture.junctions)):
            at = x(depth)
            shown = picture.label(k, _short(name))
            parts.append(f'<text x="{at:.1f}" y="{y1 + 14}" text-anchor="end" '
                         f'transform="rotate(-25 {at:.1f} {y1 + 14})">{escape(shown)}</text>')
        label, at = "junction (forward order)", HEIGHT - 6
    else:
        for depth in _nice_ticks(min(depths), max(depths)):
            parts.append(f'<text x="{x(depth):.1f}" y="{y1 + 16}" text-anchor="middle">{depth}</text>')
        label, at = "junction depth (index in forward order)", y1 + 34
    parts.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" y="{at}" '
                 f'text-anchor="middle">{label}</text>')
    return parts


def _legend(picture: DepthPicture) -> tuple[list[str], int]:
    """The legend's elements, laid out in rows across the top, and how many rows it takes."""
    items: list[tuple[str, str]] = []  # (swatch, text)
    for line in picture.lines:
        width, opacity = (4.5, 0.45) if line.beneath else (2.4, 1.0)
        items.append((f'<line x1="{{at}}" y1="{{mid}}" x2="{{end}}" y2="{{mid}}" stroke="{line.color}" '
                      f'stroke-width="{width}" stroke-opacity="{opacity}"/>', line.legend))
    for status in dict.fromkeys(mark.status for mark in picture.marks):
        items.append((f'<circle cx="{{centre}}" cy="{{mid}}" r="5" fill="none" '
                      f'stroke="{mark_color(status)}" stroke-width="1.8"/>', f"flagged {status}"))
    parts, at, row = [], LEFT, 0
    for swatch, text in items:
        width = 30 + 6 * len(text)  # 11px text is about 6px a character
        if at + width > WIDTH - RIGHT and at > LEFT:
            at, row = LEFT, row + 1
        mid = 12 + 16 * row
        parts.append(swatch.format(at=at, end=at + 18, centre=at + 9, mid=mid))
        parts.append(f'<text x="{at + 23}" y="{mid + 4}">{escape(text)}</text>')
        at += width
    return parts, row + 1


def _nice_ticks(first: int, last: int, most: int = 10) -> list[int]:
    """Multiples of 1, 2 or 5 times a power of ten, at most `most` of them, from first to last."""
    step = 1
    while (last - first) / step > most:
        for factor in (2, 2.5, 2):
            step = int(step * factor)
            if (last - first) / step <= most:
                break
    return list(range(first + (-first) % step, last + 1, step))


def _power(exponent: int) -> str:
    return "1" if exponent == 0 else "10" + str(exponent).translate(_SUPERSCRIPT)


def _short(name: str, limit: int = 18) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1):]

