"""The public verbs: importing every submodule shadows none of them, each runs twice in a row with
the same result, and compare's and check's numbers are the ones inspect measures."""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest
import torch

import gradflow
from tests.fixtures.models import SmallResNet
from tests.reference import reference

VERBS = ("inspect", "compare", "check")
SHADOWABLE = (*VERBS, "watch")  # every public verb: no submodule may share its name


def _every_submodule() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(gradflow.__path__, "gradflow."):
        if info.name.startswith("gradflow.cli") or info.name.endswith("__main__"):
            continue  # the CLI is tested through the app
        names.append(info.name)
    return names


def test_no_submodule_shadows_a_verb() -> None:
    for name in _every_submodule():
        importlib.import_module(name)
    importlib.import_module("gradflow.cli.app")
    _assert_verbs_are_the_functions()


def _assert_verbs_are_the_functions() -> None:
    for verb in SHADOWABLE:
        function = getattr(gradflow, verb)
        assert isinstance(function, types.FunctionType), (verb, function)
        assert function.__module__ == f"gradflow.drivers.{verb}", verb


@pytest.fixture
def model_and_input() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = SmallResNet()
    return model, torch.randn(4, 3, 16, 16)


def test_each_verb_twice(model_and_input) -> None:  # type: ignore[no-untyped-def]
    model, x = model_and_input
    for name in _every_submodule():  # as a user poking around might, before calling the verbs
        importlib.import_module(name)
    _assert_verbs_are_the_functions()
    first = [gradflow.inspect(model, x, loss="sum", mode="eval") for _ in range(2)]
    assert first[0].to_dict()["junctions"] == first[1].to_dict()["junctions"]
    comparisons = [gradflow.compare(model, x, sg_skip=True, loss="sum", mode="eval") for _ in range(2)]
    assert [r.values for r in comparisons[0].rows] == [r.values for r in comparisons[1].rows]
    checks = [gradflow.check(model, x, loss="sum", mode="eval") for _ in range(2)]
    assert checks[0].passed == checks[1].passed
    assert [v.subject for v in checks[0].violations] == [v.subject for v in checks[1].violations]
    _assert_verbs_are_the_functions()


def test_compare_and_check_measure_what_autograd_gives(model_and_input) -> None:  # type: ignore[no-untyped-def]
    model, x = model_and_input  # train mode, as the verbs' default: batch statistics
    expected = reference(model, x, lambda out: out.sum())
    comparison = gradflow.compare(model, x, sg_skip=True, sg_block=True, loss="sum")
    assert list(comparison.variants) == ["baseline", "sg-skip", "sg-block"]
    for row, want in zip(comparison.rows, expected):
        assert row.values["baseline"] == pytest.approx(want["grad_in"], rel=1e-4)
    result = gradflow.check(model, x, loss="sum", seeds=2)
    assert len(result.reports) == 2
    for junction, want in zip(result.reports[0].junctions, expected):
        assert junction.grad_in == pytest.approx(want["grad_in"], rel=1e-4)


def test_check_settings_vanishing_below_is_the_per_junction_threshold(model_and_input) -> None:  # type: ignore[no-untyped-def]
    """As in inspect: a junction is vanishing when grad_in / |dL/d output| is below it; the
    survival threshold of the `vanishing` rule is `survival_below`."""
    model, x = model_and_input
    expected = reference(model, x, lambda out: out.sum())
    grad_output = model(x).numel() ** 0.5  # dL/d output of a sum is all ones
    ratios = [want["grad_in"] / grad_output for want in expected]
    between = (min(ratios) * max(ratios)) ** 0.5
    assert min(ratios) < between < max(ratios)
    settings = gradflow.CheckSettings(vanishing_below=between, warmup_steps=0)
    result = gradflow.check(model, x, loss="sum", settings=settings)
    assert [j.status == "vanishing" for j in result.report.junctions] == [r < between for r in ratios]
    assert result.outcome("vanishing").threshold == gradflow.CheckSettings().survival_below


def test_compare_needs_a_stop_gradient(model_and_input) -> None:  # type: ignore[no-untyped-def]
    from gradflow.errors import OptionError

    model, x = model_and_input
    with pytest.raises(OptionError, match="sg_skip"):
        gradflow.compare(model, x)
    with pytest.raises(OptionError, match="unknown metric"):
        gradflow.compare(model, x, sg_skip=True, metric="nope")
