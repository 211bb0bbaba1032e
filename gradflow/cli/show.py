"""gradflow show: a watch log (`gradflow.watch(log=...)`) as track's table, a figure, HTML, JSON or
CSV."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from gradflow.cli.options import OUTPUT, Debug
from gradflow.cli.session import emit_history, guard, write_output


class ShowFormat(str, enum.Enum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


LogFile = Annotated[Path, typer.Argument(
    help="A gradflow/watch@1 JSONL log, finished or still being written.", show_default=False)]
ShowPlot = Annotated[Path | None, typer.Option(
    "--plot", help="Write a figure: one panel per junction (grad_skip and grad_block against the "
    "step, log scale) and the loss. .png, .svg or .pdf; needs the `plot` extra (matplotlib).",
    rich_help_panel=OUTPUT, show_default=False)]
ShowHtml = Annotated[Path | None, typer.Option(
    "--html", help="Also write a self-contained HTML page: the table with SVG sparklines and the "
    "loss.", rich_help_panel=OUTPUT, show_default=False)]
ShowFormatOpt = Annotated[ShowFormat, typer.Option(
    "--format", "-f", help="table, json (gradflow/show@1: the header, each junction's crossover, "
    "every record) or csv (one row per record).", rich_help_panel=OUTPUT)]
ShowOutput = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Write the json or csv to this file (csv for a .csv file or --format csv).",
    rich_help_panel=OUTPUT, show_default=False)]


def show_command(
    log: LogFile,
    plot: ShowPlot = None,
    html: ShowHtml = None,
    format: ShowFormatOpt = ShowFormat.TABLE,
    output: ShowOutput = None,
    debug: Debug = False,
) -> None:
    """Show a gradflow.watch log as track's table: per junction, sparklines of grad_skip and
    grad_block over the measured steps, the step where the block path first overtook the skip
    path, and the loss.

    The log may still be growing: a last line cut off mid-write is left out and said so.

    **Examples**

      gradflow show runs/flow.jsonl

      gradflow show runs/flow.jsonl --plot flow.png --html flow.html

      gradflow show runs/flow.jsonl --format csv -o flow.csv
    """
    with guard(debug):
        from gradflow.errors import OptionError

        if output is not None and output.suffix.lower() == ".csv" and format is ShowFormat.JSON:
            raise OptionError(f"--format json with -o {output.name}: use a .json file or --format csv")
        if plot is not None:
            from gradflow.render.plot import require_matplotlib

            require_matplotlib(plot)
        from gradflow.render.show import print_show, show_csv, show_html, show_json
        from gradflow.track.watch_log import read_watch_log

        result = read_watch_log(log)
        if html is not None:
            write_output(html, show_html(result))
        from gradflow.render.plot import plot_history
        from gradflow.render.show import plot_title

        emit_history(format, output, plot, table=lambda: print_show(result),
                     json=lambda: show_json(result), csv=lambda: show_csv(result),
                     draw=lambda path: plot_history(result, path, plot_title(result)))
