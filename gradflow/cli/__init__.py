"""The command-line interface. torch is imported inside commands only, so `--help` is instant."""

from __future__ import annotations


def main() -> None:
    from gradflow.cli.app import app

    app(prog_name="gradflow")
