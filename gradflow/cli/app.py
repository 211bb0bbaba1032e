"""The Typer application: one file per command, registered here."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from typer.core import TyperGroup

from gradflow._version import __version__
from gradflow.cli import blocks, compare, inspect, show, track


class OneLineUsageErrors(TyperGroup):
    """Click's usage errors (a bad option value, an unknown option, a missing argument) as one
    line on stderr and exit 2, like every other user mistake, instead of a boxed usage panel."""

    def make_context(self, info_name: Any, args: Any, parent: Any = None, **extra: Any) -> Any:
        with _usage_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with _usage_errors(ctx):
            return super().invoke(ctx)


@contextmanager
def _usage_errors(group: Any = None) -> Iterator[None]:
    try:
        yield
    except _click_errors() as e:
        if type(e).__name__ == "NoArgsIsHelpError":
            raise  # `gradflow` alone: the help, as before
        message = " ".join(e.format_message().split()).rstrip(".")
        print(f"gradflow: error: {message}; see {_command_path(e, group)} --help", file=sys.stderr)
        raise typer.Exit(2) from None


def _command_path(error: Exception, group: Any) -> str:
    """`gradflow inspect` for an error in inspect's options (some errors carry no context: then
    the subcommand the group was invoking), else `gradflow`."""
    ctx = getattr(error, "ctx", None)
    if ctx is not None:
        return str(ctx.command_path)
    subcommand = getattr(group, "invoked_subcommand", None)
    return f"{group.command_path} {subcommand}" if subcommand else "gradflow"


def _click_errors() -> tuple[type[Any], ...]:
    """The base of Click's errors: typer.TyperException where Typer bundles its own copy of
    Click, else click.ClickException."""
    vendored = getattr(typer, "TyperException", None)
    if vendored is not None:
        return (vendored,)
    import click

    return (click.ClickException,)


app = typer.Typer(
    name="gradflow",
    cls=OneLineUsageErrors,
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
app.command("show")(show.show_command)
app.command("check")(__import__("gradflow.cli.check", fromlist=["check_command"]).check_command)
