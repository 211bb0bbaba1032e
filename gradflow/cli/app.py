"""The Typer application: one file per command, registered here."""

from __future__ import annotations

import typer

from gradflow._version import __version__
from gradflow.cli import blocks, compare, inspect, track

app = typer.Typer(
    name="gradflow",
    help=(
        "Is gradient getting through my network? gradflow finds every residual junction "
        "(y = skip + block(x)) in a model, runs a seeded probe batch forward and backward, and "
        "measures the gradient on the skip and block path of each.\n\n"
        "Exit codes: 0 success, 1 a check rule failed, 2 the run could not be made "
        "(bad source, bad input, bad option)."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gradflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """gradflow: gradient flow through residual junctions."""


app.command("inspect")(inspect.inspect_command)
app.command("compare")(compare.compare_command)
app.command("blocks")(blocks.blocks_command)
app.command("track")(track.track_command)
app.command("check")(__import__("gradflow.cli.check", fromlist=["check_command"]).check_command)
