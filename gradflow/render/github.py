"""GitHub Actions workflow commands: one `::error` (or `::warning`) annotation per violation.

Junction violations point at the line of the add that made the junction; the others at the model
source when it is a file. See "Workflow commands for GitHub Actions" for the escaping rules.
"""

from __future__ import annotations

from pathlib import Path

from gradflow.gate.result import CheckResult
from gradflow.gate.settings import Level
from gradflow.render.numbers import num


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def _where(location: str | None, source: str) -> dict[str, str]:
    if location:
        file, _, line = location.rpartition(":")
        if file and line.isdigit():
            return {"file": file, "line": line}
    path = source.partition(":")[0] if not Path(source).is_file() else source
    return {"file": path} if Path(path).is_file() else {}


def check_github(result: CheckResult) -> str:
    """Annotations, then the verdict as a plain log line."""
    source = result.report.model.source
    lines = []
    for v in result.violations:
        command = "error" if result.level(v) is Level.ERROR else "warning"
        props = _where(v.location, source)
        props["title"] = f"gradflow check: {v.rule}"
        value = "" if v.value is None else f" = {num(v.value)}"
        limit = "" if v.threshold is None else f" (threshold {num(v.threshold)})"
        seed = f" [seed {v.seed}]" if len(result.seeds) > 1 else ""
        message = f"{v.subject}{value}{limit}: {v.message}{seed}"
        head = ",".join(f"{k}={_property(val)}" for k, val in props.items())
        lines.append(f"::{command} {head}::{_data(message)}")
    lines.append(f"gradflow check {result.verdict()}")
    return "\n".join(lines) + "\n"
