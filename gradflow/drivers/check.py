"""`gradflow.check`: measure a model once per probe seed and judge the reports by the rules of
`gradflow.gate`. Importing this module does not import torch; the verb does."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gradflow.engine.report import Report
from gradflow.errors import OptionError
from gradflow.gate.evaluate import evaluate
from gradflow.gate.result import READABLE_CHECK_SCHEMAS, CheckResult
from gradflow.gate.settings import WARMUP_LR, CheckSettings
from gradflow.gate.warmup import after_warmup, needs_warmup


def measure_seeds(model: Any, inputs_for: Callable[[int], Any], seeds: Sequence[int], *,
                  settings: CheckSettings, loss: str = "auto", mode: str = "train",
                  dtype: str | None = None, source: str = "<module>",
                  source_format: str = "module",
                  timings: dict[str, float] | None = None) -> list[Report]:
    """One Report per seed: the probe batch is `inputs_for(seed)`, and the seed also drives
    dropout and the `ce` labels. Junction statuses use the settings' per-junction thresholds
    (`CheckSettings.thresholds`).

    Where a report has a junction dead or vanishing with no gate to explain it, or fails the
    survival, the seed's probe runs again on a copy of the model after `settings.warmup_steps`
    optimizer steps with that batch (`gradflow.gate.warmup`); the report then says which
    junctions were alive after them (`dormant`, for the reason `warm-up`) and keeps the other
    measurement in `Report.warmup`."""
    from gradflow.engine.measure import measure
    from gradflow.track.warmup import WARMUP_OPTIMIZER, warmed_copy

    thresholds = settings.thresholds
    reports = []
    for seed in seeds:
        inputs = inputs_for(seed)

        def probe(target: Any, seed: int = seed, inputs: Any = inputs) -> Report:
            (report,) = measure(target, inputs, loss=loss, mode=mode, seed=seed, dtype=dtype,
                                thresholds=thresholds, source=source,
                                source_format=source_format, timings=timings)
            return report

        report = probe(model)
        if needs_warmup(report, settings):
            warm = warmed_copy(model, inputs, steps=settings.warmup_steps, lr=WARMUP_LR,
                               loss=report.probe.loss, mode=mode, seed=seed)
            report = after_warmup(report, probe(warm), settings.warmup_steps,
                                  str(WARMUP_OPTIMIZER), WARMUP_LR)
        reports.append(report)
    return reports


def seed_range(seed: int, seeds: int) -> list[int]:
    if seeds < 1:
        raise OptionError(f"--seeds must be at least 1, got {seeds}")
    return list(range(seed, seed + seeds))


def read_baseline(path: str | Path) -> Report:
    """A `gradflow/report@2` or `@1` document (from --write-baseline or `inspect --format
    json`), or a `gradflow/check@2` or `@1` one, whose report is used."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OptionError(
            f"baseline {path} not found: write it with --write-baseline {path}"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OptionError(f"cannot read baseline {path}: {e}") from e
    if isinstance(document, dict) and document.get("schema") in READABLE_CHECK_SCHEMAS:
        document = document.get("report")
    if not isinstance(document, dict):
        raise OptionError(f"baseline {path} is not a gradflow report")
    try:
        return Report.from_dict(document)
    except (ValueError, KeyError, TypeError) as e:
        raise OptionError(f"baseline {path} is not a gradflow report: {e}") from e


def save_baseline(path: str | Path, report: Report) -> None:
    from gradflow.render.json import report_json

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report_json(report) + "\n", encoding="utf-8")
    except OSError as e:
        raise OptionError(f"cannot write {path}: {e.strerror or e}") from e


def check(
    model: Any,
    inputs: Any,
    *,
    seeds: int = 1,
    baseline: str | Path | Report | None = None,
    settings: CheckSettings | None = None,
    loss: str = "auto",
    mode: str = "train",
    seed: int = 0,
    dtype: str | None = None,
    write_baseline: str | Path | None = None,
    source: str = "<module>",
) -> CheckResult:
    """Measure `model` with probe seeds seed .. seed+seeds-1 and judge the worst case by the
    check rules (the CI gate of `gradflow check`).

    Args:
        model: any nn.Module; it comes back untouched.
        inputs: a tensor, a tuple or a dict (the same batch for every seed: only dropout and
            the `ce` labels change), or a function of the seed returning one (a new batch each).
        seeds: how many probe seeds to judge.
        baseline: a Report, or a report file, to gate on change (the `regression` rule).
        settings: thresholds and enabled rules (default: `gradflow check`'s defaults);
            `gradflow.gate.settings_from` builds one from keyword arguments.
        loss, mode, seed, dtype: as for `gradflow.inspect`.
        write_baseline: also write the first seed's report to this file.
    Returns:
        A CheckResult: `.passed`, `.exit_code`, `.violations`, `.reports`.

    Example:
        >>> result = gradflow.check(model, torch.randn(8, 3, 32, 32), seeds=3)
        >>> result.passed, [v.subject for v in result.violations]
    """
    settings = settings or CheckSettings()
    inputs_for = inputs if callable(inputs) else (lambda _seed: inputs)
    reports = measure_seeds(model, inputs_for, seed_range(seed, seeds), settings=settings,
                            loss=loss, mode=mode, dtype=dtype, source=source)
    before, name = _baseline(baseline)
    result = evaluate(reports, settings, before, name)
    if write_baseline is not None:
        save_baseline(write_baseline, reports[0])
    return result


def _baseline(baseline: str | Path | Report | None) -> tuple[Report | None, str | None]:
    if baseline is None:
        return None, None
    if isinstance(baseline, Report):
        return baseline, "<report>"
    return read_baseline(baseline), str(baseline)
