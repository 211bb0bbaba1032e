"""Number formatting and log-scale bars shared by the renderers."""

from __future__ import annotations

import math
from collections.abc import Sequence

_EIGHTHS = " ▏▎▍▌▋▊▉█"


def num(value: float | None) -> str:
    """Compact, aligned-enough: 4 significant digits in [1e-3, 1e4), else scientific."""
    if value is None:
        return "–"
    if not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.2e}"


def ratio(value: float | None) -> str:
    if value is None:
        return "–"
    if not math.isfinite(value):
        return num(value)
    if value == 0:
        return "0×"
    if 0.01 <= abs(value) < 1000:
        return f"{value:.3g}×"
    return f"{value:.1e}×"


def log_span(values: Sequence[float | None], min_decades: float = 3.0) -> tuple[float, float]:
    """(low, high) in log10 covering the positive finite values, at least `min_decades` wide."""
    logs = [math.log10(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    if not logs:
        return (0.0, 1.0)
    high = max(logs)
    low = min(min(logs), high - min_decades)
    return (low - 0.25, high)


def bar(value: float | None, span: tuple[float, float], width: int = 16) -> str:
    """A log-scale bar: full width at the top of `span`, empty at or below its bottom."""
    if value is None or not math.isfinite(value) or value <= 0:
        return ""
    low, high = span
    fraction = (math.log10(value) - low) / (high - low) if high > low else 1.0
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def spark(values: Sequence[float | None]) -> str:
    """A sparkline on a log scale (for series that span decades)."""
    ticks = "▁▂▃▄▅▆▇█"
    low, high = log_span(values, min_decades=0.5)
    out = []
    for v in values:
        if v is None or not math.isfinite(v) or v <= 0:
            out.append(" ")
            continue
        fraction = (math.log10(v) - low) / (high - low) if high > low else 1.0
        out.append(ticks[max(0, min(7, int(fraction * 7.999)))])
    return "".join(out)
