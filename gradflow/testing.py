"""Gradient-flow assertions for test suites, and an optional pytest plugin.

    from gradflow.testing import assert_gradient_flow

    def test_model_trains():
        model = build()
        assert_gradient_flow(model, torch.randn(4, 3, 32, 32), seeds=2)

`assert_gradient_flow` runs the same rules as `gradflow check` (same defaults) and raises an
AssertionError whose message is the violations table. Settings are explicit keyword arguments:
unlike the command, it does not read `[tool.gradflow.check]`.

The pytest plugin (enable it with `pytest_plugins = ["gradflow.testing"]` in the root
conftest.py, or `-p gradflow.testing`) adds a `gradient_flow` fixture: `assert_gradient_flow`
plus a baseline per test, kept under `gradflow_baselines/` beside the test file, compared when
it exists and (re)written with `pytest --gradflow-write-baselines`.

Importing this module imports neither torch nor pytest's internals beyond the fixture decorator.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradflow.engine.report import Report
    from gradflow.gate import CheckResult

__all__ = ["assert_gradient_flow", "check_gradient_flow"]


def check_gradient_flow(
    model: Any,
    inputs: Any,
    *,
    seeds: int = 1,
    seed: int = 0,
    loss: str = "auto",
    mode: str = "train",
    survival_below: float | None = None,
    vanishing_below: float | None = None,
    dead_below: float | None = None,
    exploding_above: float | None = None,
    warmup_steps: int | None = None,
    allow_unused: Sequence[str] = (),
    disable: Sequence[str] = (),
    warn: Sequence[str] = (),
    baseline: str | Path | Report | None = None,
    tolerance: float | None = None,
    write_baseline: str | Path | None = None,
) -> CheckResult:
    """Measure `model` on `inputs` and judge it by the check rules, without raising.

    Args:
        model: any nn.Module; it comes back untouched.
        inputs: a tensor, a tuple of positional inputs or a dict of keyword inputs (the same
            batch for every seed), or a function `seed -> inputs` for a new batch per seed.
        seeds: run the probe with seeds seed .. seed+seeds-1 and judge the worst case.
        loss / mode: the probe loss ("auto", "sum", "mean", "mse", "ce") and "train" / "eval".
        survival_below / dead_below / exploding_above / tolerance: the rule thresholds
            (None: the defaults of `gradflow check`, 1e-2 / 1e-3 / 1e3 / 4).
        vanishing_below: a junction's `vanishing` status, as in `gradflow.inspect` (None: 1e-3).
        warmup_steps: the optimizer steps of the warm-up that decides dormant from dead
            (None: `gradflow check`'s 3; 0: no warm-up).
        allow_unused: parameter-name globs (or module names) allowed to get no gradient.
        disable / warn: rule names to turn off, or to report without failing.
        baseline: a Report or a report file to compare with (the `regression` rule).
        write_baseline: write this run's report (first seed) to this file.
    Returns:
        The CheckResult: `.passed`, `.violations`, `.reports`.

    Example:
        >>> result = check_gradient_flow(model, x, disable=["dead"])
        >>> [v.subject for v in result.violations]
    """
    from gradflow.drivers.check import check
    from gradflow.gate import settings_from

    settings = settings_from(
        {}, survival_below=survival_below, vanishing_below=vanishing_below, dead_below=dead_below,
        exploding_above=exploding_above, tolerance=tolerance, warmup_steps=warmup_steps,
        allow_unused=tuple(allow_unused),
        disable=tuple(disable), warn=tuple(warn),
    )
    return check(model, inputs, settings=settings, seeds=seeds, seed=seed, loss=loss, mode=mode,
                 baseline=baseline, write_baseline=write_baseline, source=type(model).__name__)


def assert_gradient_flow(model: Any, inputs: Any, **rules: Any) -> CheckResult:
    """Assert that gradient flows through `model`: every check rule passes.

    Takes the keyword arguments of `check_gradient_flow` (seeds, thresholds, allow_unused,
    disable, warn, baseline, ...).

    Returns:
        The CheckResult, for further assertions.
    Raises:
        AssertionError: a rule failed; the message is the rules and violations table.

    Example:
        >>> assert_gradient_flow(model, torch.randn(8, 32), allow_unused=["pooler.*"], seeds=3)
    """
    from gradflow.render.check import check_text

    result = check_gradient_flow(model, inputs, **rules)
    if not result.passed:
        raise AssertionError("gradient flow check failed\n" + check_text(result))
    return result


# --- pytest plugin ------------------------------------------------------------------------------

WRITE_OPTION = "--gradflow-write-baselines"
BASELINE_DIR = "gradflow_baselines"


def baseline_path(test_file: Path, test_name: str, call: int = 1) -> Path:
    """Where the `gradient_flow` fixture keeps a test's baseline (one file per call in the test)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name).strip("_") or "test"
    suffix = "" if call == 1 else f"-{call}"
    return test_file.parent / BASELINE_DIR / f"{test_file.stem}.{stem}{suffix}.json"


def _fixture(test_file: Path, test_name: str, write: bool) -> Callable[..., CheckResult]:
    calls = [0]

    def gradient_flow(model: Any, inputs: Any, **rules: Any) -> CheckResult:
        calls[0] += 1
        path = baseline_path(test_file, test_name, calls[0])
        if write:
            rules.setdefault("write_baseline", path)
        elif path.is_file():
            rules.setdefault("baseline", path)
        return assert_gradient_flow(model, inputs, **rules)

    return gradient_flow


try:
    import pytest
except ImportError:  # gradflow.testing works without pytest; only the plugin needs it
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    def pytest_addoption(parser: Any) -> None:
        group = parser.getgroup("gradflow")
        group.addoption(WRITE_OPTION, action="store_true", default=False,
                        help="gradient_flow fixture: (re)write each test's baseline under "
                             f"{BASELINE_DIR}/ instead of comparing with it.")

    @pytest.fixture
    def gradient_flow(request: Any) -> Callable[..., CheckResult]:
        """`assert_gradient_flow(model, inputs, **rules)` plus this test's baseline: compared
        when `gradflow_baselines/<module>.<test>.json` exists, written with
        --gradflow-write-baselines."""
        write = bool(request.config.getoption(WRITE_OPTION, default=False))
        return _fixture(Path(str(request.node.path)), request.node.name, write)
