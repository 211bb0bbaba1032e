"""What reached each parameter: unused, none (used, cut off), zero or ok, against autograd and
the model's construction; and `gradflow/report@1` documents still read as baselines."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch
from torch import nn

import gradflow
from gradflow.engine.report import Gradient, Report
from tests import test_check_models as models
from tests.conftest import ROOT

WIDTH = 8
V1 = ROOT / "tests" / "fixtures" / "v1"  # written by gradflow before report@2


class EveryWay(nn.Module):
    """One layer per way a parameter can end up: used, never called, detached, run under
    no_grad, read through `.data`, multiplied by zero."""

    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(WIDTH, WIDTH)
        self.spare = nn.Linear(WIDTH, WIDTH)
        self.detached = nn.Linear(WIDTH, WIDTH)
        self.frozen = nn.Linear(WIDTH, WIDTH)
        self.read_data = nn.Linear(WIDTH, WIDTH)
        self.zeroed = nn.Linear(WIDTH, WIDTH)
        self.head = nn.Linear(WIDTH, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.used(x)
        h = h + self.detached(x).detach()
        with torch.no_grad():
            frozen = self.frozen(x)
        h = h + frozen
        h = h + x @ self.read_data.weight.data.T  # its bias is never read
        h = h + 0.0 * self.zeroed(x)
        return self.head(h)


# By construction: the parameters the forward pass never touches.
NEVER_USED = {"spare.weight", "spare.bias", "read_data.bias"}


def _build() -> EveryWay:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return EveryWay()


def _autograd(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(model(x).sum(), list(params.values()), allow_unused=True)
    return dict(zip(params, grads))


def test_each_parameter_is_told_apart_as_autograd_and_the_construction_say() -> None:
    model, x = _build(), models.example_input()
    reference = _autograd(model, x)
    expected = {}
    for name, grad in reference.items():
        if grad is None:
            expected[name] = "unused" if name in NEVER_USED else "none"
        else:
            expected[name] = "zero" if not grad.any() else "ok"
    assert set(expected.values()) == {"unused", "none", "zero", "ok"}  # every case is here
    assert expected["used.weight"] == expected["used.bias"] == "ok"
    report = gradflow.inspect(model, x, loss="sum")
    assert {p.name: str(p.gradient) for p in report.parameters} == expected
    for p in report.parameters:
        grad = reference[p.name]
        if grad is None:
            assert p.grad_norm is None and not p.has_grad
        else:
            assert p.grad_norm == pytest.approx(grad.norm().item(), rel=1e-5, abs=0.0)
    s = report.summary
    assert set(s.params_unused) == {n for n, g in expected.items() if g == "unused"}
    assert set(s.params_without_grad) == {n for n, g in expected.items() if g == "none"}
    assert set(s.params_zero_grad) == {n for n, g in expected.items() if g == "zero"}


def test_the_json_says_the_gradient_of_each_parameter(report_schema) -> None:
    report = gradflow.inspect(_build(), models.example_input(), loss="sum")
    document = report.to_dict()
    jsonschema.validate(document, report_schema)
    assert document["schema"] == "gradflow/report@2"
    assert {p["name"]: p["gradient"] for p in document["parameters"]} == {
        p.name: str(p.gradient) for p in report.parameters
    }
    assert all("has_grad" not in p for p in document["parameters"])
    assert document["summary"]["params_unused"] == list(report.summary.params_unused)
    assert Report.from_dict(json.loads(json.dumps(document))).to_dict() == document


def test_the_check_fails_unused_and_no_grad_and_reports_zero_grad() -> None:
    from gradflow.testing import check_gradient_flow

    model, x = _build(), models.example_input()
    # `h + f(x).detach()` is a cut junction, `h + 0.0 * f(x)` a dead one: rules of their own.
    result = check_gradient_flow(model, x, loss="sum", disable=["cut", "dead"])
    by_rule: dict[str, set[str]] = {}
    for v in result.violations:
        by_rule.setdefault(v.rule, set()).add(v.subject)
    report = result.report
    assert by_rule == {
        "unused": set(report.summary.params_unused),
        "no-grad": set(report.summary.params_without_grad),
        "zero-grad": set(report.summary.params_zero_grad),
    }
    assert {o.rule for o in result.outcomes if o.failed} == {"unused", "no-grad"}
    assert result.outcome("zero-grad").status == "warning"
    allowed = check_gradient_flow(model, x, loss="sum", disable=["cut", "dead"],
                                  allow_unused=["spare", "read_data", "detached", "frozen"])
    assert allowed.passed and {v.rule for v in allowed.violations} == {"zero-grad"}


class _NoGradientFor(torch.autograd.Function):
    """x * w forward; backward gives x its gradient and w none."""

    @staticmethod
    def forward(ctx, x, w):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(w)
        return x * w

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        (w,) = ctx.saved_tensors
        return grad * w, None


class HiddenRead(nn.Module):
    """Reads `gain` from `_parameters` directly, as compiled or generated code may, so no
    attribute lookup sees it; it is still a leaf of the graph behind the loss."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(WIDTH, WIDTH)
        self.gain = nn.Parameter(torch.ones(WIDTH))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _NoGradientFor.apply(self.fc(x), self._parameters["gain"])


def test_a_leaf_of_the_graph_is_used_even_when_no_attribute_lookup_saw_it() -> None:
    model = HiddenRead()
    x = models.example_input()
    assert _autograd(model, x)["gain"] is None
    report = gradflow.inspect(model, x, loss="sum")
    assert {p.name: str(p.gradient) for p in report.parameters} == {
        "fc.weight": "ok", "fc.bias": "ok", "gain": "none"
    }


def test_a_report_at_1_baseline_still_reads_and_compares(gradflow_cli) -> None:
    """Written by gradflow before report@2: `has_grad`, and zero gradients counted among the
    parameters without gradient."""
    document = json.loads((V1 / "report_unused.json").read_text())
    assert document["schema"] == "gradflow/report@1"
    report = Report.from_dict(document)
    assert report.summary.params_without_grad == ("spare.weight", "spare.bias")
    assert {p.name: str(p.gradient) for p in report.parameters} == {
        p["name"]: ("none" if not p["has_grad"] else "zero" if p["grad_norm"] == 0 else "ok")
        for p in document["parameters"]
    }
    spec = f"{ROOT / 'tests' / 'test_check_models.py'}:build_unused"
    result = gradflow_cli("check", spec, "--device", "cpu", "--baseline", V1 / "report_unused.json",
                          "--allow-unused", "spare", "--format", "json")
    assert result.exit_code == 0, result.output
    outcome = next(r for r in json.loads(result.stdout)["rules"] if r["rule"] == "regression")
    assert outcome["status"] == "passed" and outcome["worst"] == pytest.approx(1.0, rel=1e-5)


def test_a_check_at_1_document_reads_as_a_baseline_with_its_zero_gradients_apart(gradflow_cli) -> None:
    document = json.loads((V1 / "check_zeroed.json").read_text())
    assert document["schema"] == "gradflow/check@1"
    old = document["report"]
    report = Report.from_dict(old)
    assert report.summary.params_without_grad == ()
    assert report.summary.params_zero_grad == tuple(old["summary"]["params_without_grad"])
    assert all(p.gradient is Gradient.ZERO for p in report.parameters
               if p.name in report.summary.params_zero_grad)
    spec = f"{ROOT / 'tests' / 'test_check_models.py'}:build_zeroed"
    result = gradflow_cli("check", spec, "--device", "cpu", "--baseline", V1 / "check_zeroed.json",
                          "--disable", "dead", "--format", "json")
    assert result.exit_code == 0, result.output
    outcome = next(r for r in json.loads(result.stdout)["rules"] if r["rule"] == "regression")
    assert outcome["status"] == "passed"


def test_an_unknown_schema_is_refused() -> None:
    document = json.loads((V1 / "report_unused.json").read_text())
    document["schema"] = "gradflow/report@9"
    with pytest.raises(ValueError, match="report@1 or gradflow/report@2"):
        Report.from_dict(document)
