# mypy: warn-unused-ignores
"""Checked by mypy in tests/test_typing.py, never run: the public API as a user's code sees it.
Each name has its precise type (none is Any), and a wrong call is an error: each
`type: ignore` below must be needed, or mypy reports it unused."""

from __future__ import annotations

from typing import assert_type

import torch

import gradflow
from gradflow import CheckResult, Comparison, Junction, Report, Status, Track
from gradflow.track import track


def use(model: torch.nn.Module, x: torch.Tensor) -> None:
    report = gradflow.inspect(model, x, loss="sum", mode="eval", seed=1, at=["layer1.*"])
    assert_type(report, Report)
    assert_type(report.junctions[0], Junction)
    assert_type(report.junctions[0].grad_in, float | None)
    assert_type(report.junctions[0].status, Status)
    assert_type(report.summary.survival, float | None)
    assert_type(report._repr_html_(), str)
    assert_type(gradflow.compare(model, x, sg_skip=True, metric="grad_block"), Comparison)
    result = gradflow.check(model, x, seeds=2, baseline=report)
    assert_type(result, CheckResult)
    assert_type(result.passed, bool)
    assert_type(track(model, x, steps=2), Track)
    assert_type(gradflow.__version__, str)


def misuse(model: torch.nn.Module, x: torch.Tensor) -> None:
    gradflow.inspect(model, x, sed=1)  # type: ignore[call-arg]
    gradflow.compare(model, x, sg_skip="yes")  # type: ignore[arg-type]
    gradflow.check(model, x).passed.upper()  # type: ignore[attr-defined]
    gradflow.inspekt(model, x)  # type: ignore[attr-defined]
