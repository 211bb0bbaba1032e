from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def gradflow_cli(runner: CliRunner):  # type: ignore[no-untyped-def]
    """Run the real Typer app; returns the Result (stdout, stderr and exit code apart)."""
    from gradflow.cli.app import app

    def run(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return run


@pytest.fixture(scope="session")
def report_schema() -> dict:
    return json.loads((ROOT / "gradflow" / "schemas" / "report.schema.json").read_text())


