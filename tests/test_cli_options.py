"""The probe options are declared once and mean one thing in every command."""

from __future__ import annotations

import pytest
import typer

from gradflow.cli.app import app
from tests.conftest import SAMPLES

PROBE_FLAGS = ("--input", "--input-shape", "--input-dtype", "--input-high", "--dim", "--batch-size",
               "--seed", "--loss", "--mode", "--device", "--dtype", "--memory-limit", "--shard",
               "--collective-timeout")
# Commands whose own declaration of a flag says more about what it does there.
OWN = {("blocks", "--device"), ("track", "--loss"), ("track", "--batch-size")}
DISTRIBUTED = {"--shard", "--collective-timeout"}  # measured data-parallel: inspect, compare, check
LEFT_OUT = {"blocks": {"--loss", "--mode", "--dtype", *DISTRIBUTED}, "track": {"--mode", "--dtype", *DISTRIBUTED}}
COMMANDS = ("inspect", "compare", "check", "blocks", "track")


def _options(command: str) -> dict[str, str]:
    group = typer.main.get_command(app)
    found = group.commands[command]  # type: ignore[attr-defined]
    return {name: param.help or "" for param in found.params for name in param.opts}


def test_every_command_takes_the_same_probe_options() -> None:
    reference = _options("inspect")
    for command in COMMANDS:
        options = _options(command)
        for flag in PROBE_FLAGS:
            if flag in LEFT_OUT.get(command, ()):
                assert flag not in options, (command, flag)
                continue
            assert flag in options, (command, flag)
            if (command, flag) not in OWN:
                assert options[flag] == reference[flag], (command, flag)


def test_the_verdict_thresholds_mean_one_thing_in_every_command() -> None:
    """--vanishing-below is the per-junction threshold in check too; check's survival threshold
    has its own flag."""
    reference = _options("inspect")
    for command in ("compare", "check"):
        options = _options(command)
        for flag in ("--vanishing-below", "--dead-below", "--exploding-above"):
            assert options[flag] == reference[flag], (command, flag)
    assert "--survival-below" in _options("check") and "--survival-below" not in reference


@pytest.mark.parametrize("command", ["blocks", "track"])
def test_memory_limit_reaches_every_command(gradflow_cli, command: str) -> None:  # type: ignore[no-untyped-def]
    result = gradflow_cli(command, SAMPLES / "tiny_resnet.py", "--memory-limit", "1KiB")
    assert result.exit_code == 2
    assert "memory" in result.stderr.lower()
