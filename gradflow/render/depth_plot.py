"""The depth picture drawn by matplotlib, for `inspect --plot` and `compare --plot`: the same
lines and marks as the SVG at the top of the HTML page (`gradflow.render.depth`). matplotlib is
the optional `plot` extra, used through its object-oriented API (no pyplot, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradflow.errors import OptionError
from gradflow.render.depth import DepthPicture, mark_color
from gradflow.render.plot import require_matplotlib

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAMED_TICKS = 16  # up to this many junctions, each is named under the axis

RC: dict[str, Any] = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False,
    "axes.spines.right": False, "axes.linewidth": 0.6, "lines.linewidth": 1.4,
    "svg.fonttype": "none", "font.family": "DejaVu Sans",
}


def depth_figure(picture: DepthPicture) -> Figure:
    """The figure: one line per Line of the picture (broken where it has no value to draw),
    an open ring per flagged junction, in the colour of its status."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):  # type: ignore[arg-type]  # stubs want Literal rc keys
        figure = Figure(figsize=(7.2, 3.4), layout="constrained")
        ax = figure.subplots()
        for line, style in zip(picture.lines, _styles(picture)):
            runs = line.points(picture.depths)
            for k, run in enumerate(runs):
                depths, values = zip(*run)
                ax.plot(depths, values, color=line.color, label=line.legend if k == 0 else None,
                        **style)
            if not runs:  # still in the legend, which says why it is not drawn
                ax.plot([], [], color=line.color, label=line.legend, **style)
        low, high = picture.span()
        if picture.log:
            ax.set_yscale("log")
            ax.set_ylim(10 ** low, 10 ** high)
        else:
            ax.set_ylim(low, high)
        bottom = ax.get_ylim()[0]
        for status in dict.fromkeys(mark.status for mark in picture.marks):
            marks = [m for m in picture.marks if m.status == status]
            ax.plot([m.depth for m in marks], [bottom if m.value is None else m.value for m in marks],
                    linestyle="none", marker="o", markersize=8, markerfacecolor="none",
                    markeredgewidth=1.4, markeredgecolor=mark_color(status), clip_on=False,
                    label=f"flagged {status}")
        _x_axis(ax, picture)
        ax.set_ylabel(picture.y_label + (" (log scale)" if picture.log else ""))
        ax.set_title(picture.title, loc="left")
        ax.grid(True, which="major", linewidth=0.3, alpha=0.5)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(frameon=False, loc="best")
    return figure


def _styles(picture: DepthPicture) -> list[dict[str, Any]]:
    wide = {"linewidth": 3.2, "alpha": 0.45, "zorder": 1, "marker": "o", "markersize": 3.5}
    thin = {"linewidth": 1.4, "zorder": 2, "marker": "o", "markersize": 2.5}
    return [wide if line.beneath else thin for line in picture.lines]


def _x_axis(ax: Any, picture: DepthPicture) -> None:
    if picture.depths and len(picture.depths) <= NAMED_TICKS:
        ax.set_xticks(list(picture.depths))
        labels = [picture.label(k) for k in range(len(picture.junctions))]
        ax.set_xticklabels(labels, rotation=30, ha="right")
        ax.set_xlabel("junction (forward order)")
    else:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
        ax.set_xlabel("junction depth (index in forward order)")


def plot_depth(picture: DepthPicture, path: Path, dpi: int = 150) -> None:
    """Write the picture to `path` (.png, .svg or .pdf; the suffix picks the format)."""
    require_matplotlib(path)
    import matplotlib

    figure = depth_figure(picture)
    try:
        with matplotlib.rc_context(RC):  # type: ignore[arg-type]  # the SVG's text stays text
            figure.savefig(path, dpi=dpi)
    except OSError as e:
        raise OptionError(f"cannot write {path}: {e.strerror or e}") from e
