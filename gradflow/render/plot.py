"""A paper-style figure of a Track: one panel per junction (grad_skip and grad_block against the
training step, log scale) and a panel for the loss. matplotlib is the optional `plot` extra and
is imported only here, through the object-oriented API (no pyplot, no global state, no display).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gradflow.errors import OptionError
from gradflow.track.arms import TrackArms
from gradflow.track.history import FlowHistory
from gradflow.track.result import Track

FORMATS = (".png", ".svg", ".pdf")
SKIP_COLOR = "#c0392b"   # the residual connection
BLOCK_COLOR = "#1e8449"  # the block
LOSS_COLOR = "#34495e"
EXTRA_HINT = "pip install 'gradflow-cli[plot]'"


def require_matplotlib(path: Path) -> None:
    """Fail before training when the plot cannot be written: a bad suffix or no matplotlib."""
    if path.suffix.lower() not in FORMATS:
        raise OptionError(f"--plot {path.name}: the file must end in {', '.join(FORMATS)}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise OptionError(
            f"--plot needs matplotlib, which is the optional `plot` extra: {EXTRA_HINT}"
        ) from None


def plot_track(track: Track, path: Path, junctions: Sequence[str] | None = None,
               dpi: int = 150) -> None:
    """Write the figure to `path` (.png, .svg or .pdf).

    Args:
        track: the result of `gradflow.track.track`.
        path: the image file; its suffix picks the format.
        junctions: the panels to draw (default every recorded junction).
    """
    s = track.settings
    title = (f"{Path(track.source).name} · {s.optimizer} lr {s.lr:g} · "
             f"{track.steps_run} steps · loss {s.loss}")
    plot_history(track, path, title, junctions, dpi)


def plot_history(track: FlowHistory, path: Path, title: str,
                 junctions: Sequence[str] | None = None, dpi: int = 150) -> None:
    """The figure of any history (a Track, a WatchLog): a panel per junction and the loss."""
    require_matplotlib(path)
    from matplotlib.figure import Figure

    names = list(junctions if junctions is not None else track.junctions)
    panels = len(names) + 1
    columns = min(3, panels)
    rows = math.ceil(panels / columns)
    rc: dict[str, Any] = {
        "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7,
        "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False,
        "axes.spines.right": False, "axes.linewidth": 0.6, "lines.linewidth": 1.2,
        "svg.fonttype": "none", "font.family": "DejaVu Sans",
    }
    import matplotlib

    with matplotlib.rc_context(rc):  # type: ignore[arg-type]  # stubs want Literal rc keys
        figure = Figure(figsize=(3.3 * columns, 2.5 * rows), layout="constrained")
        axes = figure.subplots(rows, columns, squeeze=False).ravel()
        for ax, name in zip(axes, names):
            _junction_panel(ax, track, name)
        _loss_panel(axes[len(names)], track)
        for ax in axes[panels:]:
            ax.set_visible(False)
        figure.suptitle(title, fontsize=9)
        try:
            figure.savefig(path, dpi=dpi)
        except OSError as e:
            raise OptionError(f"cannot write {path}: {e.strerror or e}") from e


ARM_STYLES = {"baseline": "-", "sg-skip": "--", "sg-block": ":", "no-residual": "-."}


def plot_arms(arms: TrackArms, path: Path, dpi: int = 150) -> None:
    """The arms side by side: a panel per changed junction (grad_skip and grad_block of each arm
    that has them, one line style per arm, log scale) and the arms' losses."""
    require_matplotlib(path)
    import matplotlib
    from matplotlib.figure import Figure

    names = list(arms.junctions)
    panels = len(names) + 1
    columns = min(3, panels)
    rows = math.ceil(panels / columns)
    with matplotlib.rc_context({"font.size": 8, "axes.titlesize": 9, "legend.fontsize": 6,
                                "axes.spines.top": False, "axes.spines.right": False,
                                "svg.fonttype": "none"}):
        figure = Figure(figsize=(3.3 * columns, 2.5 * rows), layout="constrained")
        axes = figure.subplots(rows, columns, squeeze=False).ravel()
        for ax, junction in zip(axes, names):
            for arm_name, arm in arms.arms.items():
                if junction not in arm.junctions:
                    continue
                for metric, color in (("grad_skip", SKIP_COLOR), ("grad_block", BLOCK_COLOR)):
                    steps, values = _positive(arm.series(junction, metric))
                    if steps:
                        ax.plot(steps, values, color=color, linestyle=ARM_STYLES[arm_name],
                                label=f"{arm_name} {metric[5:]}")
            ax.set_yscale("log")
            ax.set_title(junction, loc="left")
            ax.set_xlabel("step")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(frameon=False, loc="best")
        loss_ax = axes[len(names)]
        for arm_name, arm in arms.arms.items():
            points = [(s, v) for s, v in arm.losses if v is not None and math.isfinite(v)]
            if points:
                loss_ax.plot([s for s, _ in points], [v for _, v in points], color=LOSS_COLOR,
                             linestyle=ARM_STYLES[arm_name], label=arm_name)
        loss_ax.set_title("training loss", loc="left")
        loss_ax.set_xlabel("step")
        loss_ax.legend(frameon=False, loc="best")
        for ax in axes[panels:]:
            ax.set_visible(False)
        figure.suptitle(f"{Path(arms.source).name} · {len(arms.arms)} arms from the same weights",
                        fontsize=9)
        try:
            figure.savefig(path, dpi=dpi)
        except OSError as e:
            raise OptionError(f"cannot write {path}: {e.strerror or e}") from e


def _junction_panel(ax, track: FlowHistory, name: str) -> None:  # type: ignore[no-untyped-def]
    for metric, color, label in (("grad_skip", SKIP_COLOR, "skip path"),
                                 ("grad_block", BLOCK_COLOR, "block path")):
        steps, values = _positive(track.series(name, metric))
        if not steps:
            continue
        if len(steps) > 40:  # raw values faint, a running geometric mean on top
            ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.7)
            ax.plot(steps, _smooth(values, max(3, len(values) // 25)), color=color, label=label)
        else:
            ax.plot(steps, values, color=color, label=label, marker="o", markersize=2)
    crossover = track.crossover(name)
    if crossover is not None:
        ax.axvline(crossover, color="0.5", linestyle=":", linewidth=0.8)
        ax.annotate(f"block overtakes\nat step {crossover}", xy=(crossover, 1),
                    xycoords=("data", "axes fraction"), xytext=(3, -3), textcoords="offset points",
                    va="top", fontsize=6.5, color="0.35")
    ax.set_yscale("log")
    ax.set_title(name, loc="left")
    ax.set_xlabel("step")
    ax.set_ylabel("gradient norm at the fork")
    ax.grid(True, which="major", linewidth=0.3, alpha=0.5)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False, loc="best")


def _loss_panel(ax, track: FlowHistory) -> None:  # type: ignore[no-untyped-def]
    points = [(s, v) for s, v in track.losses if v is not None and math.isfinite(v)]
    if points:
        steps, values = zip(*points)
        ax.plot(steps, values, color=LOSS_COLOR, alpha=0.3 if len(points) > 40 else 1.0,
                linewidth=0.7 if len(points) > 40 else 1.2)
        if len(points) > 40:
            ax.plot(steps, _smooth(list(values), max(3, len(values) // 25), geometric=False),
                    color=LOSS_COLOR)
        if min(values) > 0 and max(values) / min(values) > 30:
            ax.set_yscale("log")
    ax.set_title("training loss", loc="left")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(True, which="major", linewidth=0.3, alpha=0.5)


def _positive(series: list[tuple[int, float | None]]) -> tuple[list[int], list[float]]:
    kept = [(s, v) for s, v in series if v is not None and math.isfinite(v) and v > 0]
    return [s for s, _ in kept], [v for _, v in kept]


def _smooth(values: Sequence[float], window: int, geometric: bool = True) -> list[float]:
    """A centred running mean (of logs when `geometric`), shrinking at the ends."""
    data = [math.log(v) for v in values] if geometric else list(values)
    half = window // 2
    out = []
    for i in range(len(data)):
        chunk = data[max(0, i - half): i + half + 1]
        mean = sum(chunk) / len(chunk)
        out.append(math.exp(mean) if geometric else mean)
    return out
