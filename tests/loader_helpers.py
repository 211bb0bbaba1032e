"""Shared by the loader tests: a source's report through the CLI against `gradflow.inspect` on
the same model built in Python, and one-line errors."""

from __future__ import annotations

import json
from typing import Any

import gradflow
from gradflow.render.json import report_json


def measured(document: dict[str, Any]) -> dict[str, Any]:
    """A report without what names the source or times the run: the measurement itself.

    A junction's `location` goes too: for an add inside an installed library (torchvision's
    ResNet) it is the first frame outside the library, the caller's, which is Typer's in the CLI
    and the test's here."""
    document = json.loads(json.dumps(document))
    document["model"].pop("source")
    document["model"].pop("format")
    document.pop("timings_s")
    for junction in document["junctions"]:
        junction.pop("location")
    return document


def cli_report(gradflow_cli: Any, *args: Any) -> dict[str, Any]:
    """`gradflow inspect ARGS --format json --device cpu`, which must succeed."""
    result = gradflow_cli("inspect", *args, "--format", "json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def api_report(model: Any, inputs: Any, **options: Any) -> dict[str, Any]:
    """`gradflow.inspect` on a model built in Python, as the JSON document the CLI prints."""
    return json.loads(report_json(gradflow.inspect(model, inputs, **options)))


def assert_same_measurement(document: dict[str, Any], reference: dict[str, Any]) -> None:
    """Number for number: every junction, parameter and summary figure equal."""
    assert document["junctions"], "the model has junctions to compare"
    assert measured(document) == measured(reference)


def one_line_error(result: Any, *words: str) -> str:
    """A failed command: exit 2, one line on stderr naming every word, nothing on stdout."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]
