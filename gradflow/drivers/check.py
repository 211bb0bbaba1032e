"""Measure a model once per probe seed and judge the reports: the one place check touches torch."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gradflow.engine.report import Report, Thresholds
from gradflow.errors import OptionError
from gradflow.gate.evaluate import evaluate
from gradflow.gate.result import CHECK_SCHEMA, CheckResult
from gradflow.gate.settings import CheckSettings


def measure_seeds(model: Any, inputs_for: Callable[[int], Any], seeds: Sequence[int], *,
                  settings: CheckSettings, loss: str = "auto", mode: str = "train",
                  dtype: str | None = None, source: str = "<module>",
                  source_format: str = "module",
                  timings: dict[str, float] | None = None) -> list[Report]:
    """One Report per seed: the probe batch is `inputs_for(seed)`, and the seed also drives
    dropout and the `ce` labels. Junction statuses use the check's dead and exploding limits."""
    from gradflow.engine.measure import measure

    thresholds = Thresholds(dead_below=settings.dead_below,
                            exploding_above=settings.exploding_above)
    reports = []
    for seed in seeds:
        (report,) = measure(model, inputs_for(seed), loss=loss, mode=mode, seed=seed, dtype=dtype,
                            thresholds=thresholds, source=source, source_format=source_format,
                            timings=timings)
        reports.append(report)
    return reports


def seed_range(seed: int, seeds: int) -> list[int]:
    if seeds < 1:
        raise OptionError(f"--seeds must be at least 1, got {seeds}")
    return list(range(seed, seed + seeds))


def read_baseline(path: str | Path) -> Report:
    """A `gradflow/report@1` document (from --write-baseline or `inspect --format json`), or a
    `gradflow/check@1` one, whose report is used."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OptionError(
            f"baseline {path} not found: write it with --write-baseline {path}"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OptionError(f"cannot read baseline {path}: {e}") from e
    if isinstance(document, dict) and document.get("schema") == CHECK_SCHEMA:
        document = document.get("report")
    if not isinstance(document, dict):
        raise OptionError(f"baseline {path} is not a gradflow report")
    try:
        return Report.from_dict(document)
    except (ValueError, KeyError, TypeError) as e:
        raise OptionError(f"baseline {path} is not a gradflow/report@1 document: {e}") from e


def write_baseline(path: str | Path, report: Report) -> None:
    from gradflow.render.json import report_json

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report_json(report) + "\n", encoding="utf-8")
    except OSError as e:
        raise OptionError(f"cannot write {path}: {e.strerror or e}") from e


def check_model(model: Any, inputs: Any, *, settings: CheckSettings | None = None,
                seeds: int = 1, seed: int = 0, loss: str = "auto", mode: str = "train",
                baseline: str | Path | Report | None = None,
                write_to: str | Path | None = None, source: str = "<module>") -> CheckResult:
    """Measure `model` with seeds seed..seed+seeds-1 and judge the worst case.

    `inputs` is a tensor, a tuple or a dict (the same batch for every seed: only dropout and the
    `ce` labels change), or a function of the seed returning one (a new batch per seed).
    """
    settings = settings or CheckSettings()
    inputs_for = inputs if callable(inputs) else (lambda _seed: inputs)
    reports = measure_seeds(model, inputs_for, seed_range(seed, seeds), settings=settings,
                            loss=loss, mode=mode, source=source)
    before, name = _baseline(baseline)
    result = evaluate(reports, settings, before, name)
    if write_to is not None:
        write_baseline(write_to, reports[0])
    return result


def _baseline(baseline: str | Path | Report | None) -> tuple[Report | None, str | None]:
    if baseline is None:
        return None, None
    if isinstance(baseline, Report):
        return baseline, "<report>"
    return read_baseline(baseline), str(baseline)
