"""gradflow.testing: assert_gradient_flow's message and return value, and the pytest plugin's
gradient_flow fixture (write a baseline, compare with it) run in a pytest of its own."""

from __future__ import annotations

import textwrap

import pytest

from gradflow.gate import CheckResult
from gradflow.testing import assert_gradient_flow, baseline_path, check_gradient_flow
from tests import test_check_models as models

pytest_plugins = ["pytester"]


def test_assert_gradient_flow_returns_the_result_when_healthy() -> None:
    result = assert_gradient_flow(models.build_healthy(), models.example_input(), seeds=2)
    assert isinstance(result, CheckResult) and result.passed and result.seeds == (0, 1)


def test_the_assertion_message_is_the_violations_table() -> None:
    with pytest.raises(AssertionError) as raised:
        assert_gradient_flow(models.build_unused(), models.example_input())
    message = str(raised.value)
    assert message.startswith("gradient flow check failed")
    assert "spare.weight" in message and "spare.bias" in message
    assert "never used by the forward pass" in message
    assert "FAILED: 2 violations of unused (2)" in message
    assert "\x1b[" not in message  # plain text, no colour codes


def test_rules_are_keyword_arguments() -> None:
    assert_gradient_flow(models.build_unused(), models.example_input(), allow_unused=["spare"])
    assert_gradient_flow(models.build_dead(), models.example_input(), dead_below=1e-6)
    with pytest.raises(TypeError):
        assert_gradient_flow(models.build_healthy(), models.example_input(), dead_bellow=1.0)


def test_baseline_round_trip_through_a_file(tmp_path) -> None:
    path = tmp_path / "base.json"
    check_gradient_flow(models.build_healthy(), models.example_input(), write_baseline=path)
    assert assert_gradient_flow(models.build_healthy(), models.example_input(), baseline=path).passed
    result = check_gradient_flow(models.build_deeper(), models.example_input(), baseline=path)
    assert [(v.rule, v.subject) for v in result.violations] == [("regression", "#3")]


def test_baseline_path_is_beside_the_test_file(tmp_path) -> None:
    test_file = tmp_path / "test_model.py"
    assert baseline_path(test_file, "test_a[x-1]") == tmp_path / "gradflow_baselines" / "test_model.test_a_x-1.json"
    assert baseline_path(test_file, "test_a", 2).name == "test_model.test_a-2.json"


def test_the_fixture_writes_then_compares_a_baseline(pytester) -> None:
    # Measure once out here: modules first imported inside an in-process run are dropped after it.
    check_gradient_flow(models.build_healthy(), models.example_input())
    pytester.makepyfile(test_flow=textwrap.dedent("""
        import os
        from tests import test_check_models as models

        def test_flow(gradient_flow):
            build = getattr(models, os.environ.get("GRADFLOW_TEST_BUILD", "build_healthy"))
            gradient_flow(build(), models.example_input())
    """))
    baseline = pytester.path / "gradflow_baselines" / "test_flow.test_flow.json"
    first = pytester.runpytest_inprocess("-p", "gradflow.testing", "-q")
    first.assert_outcomes(passed=1)
    assert not baseline.exists()  # no file unless asked
    written = pytester.runpytest_inprocess("-p", "gradflow.testing", "-q", "--gradflow-write-baselines")
    written.assert_outcomes(passed=1)
    assert baseline.is_file()
    pytester.runpytest_inprocess("-p", "gradflow.testing", "-q").assert_outcomes(passed=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADFLOW_TEST_BUILD", "build_deeper")
        changed = pytester.runpytest_inprocess("-p", "gradflow.testing", "-q")
    changed.assert_outcomes(failed=1)
    assert "regression" in changed.stdout.str() and "#3" in changed.stdout.str()
