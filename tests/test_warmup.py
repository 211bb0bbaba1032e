"""gradflow check's warm-up: the numbers after it against a copy trained with plain torch the same
way and differentiated with plain torch.autograd.grad; what it turns dormant, what stays dead,
and that the model itself is never trained."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
import torch
from torch import nn

from gradflow.engine.report import Report
from gradflow.gate.settings import WARMUP_LR, WARMUP_STEPS
from gradflow.testing import check_gradient_flow
from tests.conftest import ROOT
from tests.fixtures import shapes
from tests.schemas import validate

SEED = 0


def ce_labels(output: torch.Tensor, seed: int = SEED) -> torch.Tensor:
    """The probe's `ce` labels, drawn as `gradflow.probe` documents it."""
    return torch.randint(0, output.shape[-1], (output.shape[0],),
                         generator=torch.Generator().manual_seed(seed))


def ce(output: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(output, ce_labels(output))


def trained_with_plain_torch(model: nn.Module, x: torch.Tensor, steps: int = WARMUP_STEPS) -> nn.Module:
    """The warm-up as the documentation gives it: Adam at WARMUP_LR, the probe batch every step."""
    model.seen = {}  # the tensors of the last forward pass, which deepcopy refuses
    work = copy.deepcopy(model)
    optimizer = torch.optim.Adam([p for p in work.parameters() if p.requires_grad], lr=WARMUP_LR)
    for _ in range(steps):
        optimizer.zero_grad()
        ce(work(x)).backward()
        optimizer.step()
    return work


def reference(model: nn.Module, x: torch.Tensor) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Per junction grad_out, grad_skip, grad_block, grad_in (identity skips); every parameter's
    gradient norm. The `ce` probe loss, with plain torch.autograd.grad."""
    params = dict(model.named_parameters())
    loss = ce(model(x.clone().requires_grad_(True)))
    rows = []
    for fork, block, y in zip(model.seen["x"], model.seen["block"], model.seen["y"]):
        g_y, g_x = torch.autograd.grad(loss, [y, fork], retain_graph=True)
        (g_block,) = torch.autograd.grad(block, fork, g_y, retain_graph=True)
        rows.append({"grad_out": g_y.norm().item(), "grad_skip": g_y.norm().item(),
                     "grad_block": g_block.norm().item(), "grad_in": g_x.norm().item()})
    grads = torch.autograd.grad(loss, list(params.values()))
    return rows, {name: g.norm().item() for name, g in zip(params, grads)}


def _assert_matches(report: Report, rows: list[dict[str, float]], norms: dict[str, float]) -> None:
    assert len(report.junctions) == len(rows)
    for junction, row in zip(report.junctions, rows):
        for metric, value in row.items():
            assert junction.metric(metric) == pytest.approx(value, rel=1e-4, abs=1e-12), metric
    for p in report.parameters:
        assert p.grad_norm == pytest.approx(norms[p.name], rel=1e-4, abs=1e-12), p.name


def test_a_zero_head_starves_every_block_at_initialisation_and_is_dormant_after_the_warm_up() -> None:
    model, x = shapes.build_zero_head(), shapes.example_input()
    before = copy.deepcopy(model.state_dict())
    rows, norms = reference(model, x)
    assert all(row["grad_out"] == 0 for row in rows)  # nothing passes the zero head...
    assert norms["head.weight"] > 0  # ...which learns at the first step
    result = check_gradient_flow(model, x)
    assert result.passed, result.verdict()
    report = result.report
    _assert_matches(report, rows, norms)  # the numbers at initialisation
    assert [(j.status, j.dormant_reason) for j in report.junctions] == [("dormant", "warm-up")] * 3
    assert report.warmup is not None
    assert (report.warmup.steps, report.warmup.optimizer, report.warmup.lr) == (
        WARMUP_STEPS, "adam", WARMUP_LR)
    trained = trained_with_plain_torch(model, x)
    after_rows, after_norms = reference(trained, x)
    _assert_matches(report.warmup.report, after_rows, after_norms)  # and after the warm-up
    assert all(j.status == "ok" for j in report.warmup.report.junctions)
    assert result.outcome("vanishing").worst_subject == "#0 … #2 after the warm-up, up from no gradient"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # never trained


def test_dead_relus_stay_dead_after_the_warm_up_and_the_check_names_the_block() -> None:
    model, x = shapes.build_dead_relu(), shapes.example_input()
    result = check_gradient_flow(model, x)
    assert not result.passed
    assert [(v.rule, v.subject) for v in result.errors] == [("dead", "#1")]
    (dead,) = result.errors
    assert dead.value == 0 and "still dead after 3 warm-up steps" in dead.message
    trained = trained_with_plain_torch(model, x)
    for name in ("fc1.weight", "fc1.bias", "fc2.weight"):  # no gradient, so no step moved them
        assert torch.equal(trained.blocks[1].get_parameter(name), model.blocks[1].get_parameter(name))
    assert not torch.equal(trained.blocks[1].fc2.bias, model.blocks[1].fc2.bias)  # the bias learns
    after_rows, after_norms = reference(trained, x)
    assert after_rows[1]["grad_block"] == 0
    assert result.report.warmup is not None
    _assert_matches(result.report.warmup.report, after_rows, after_norms)
    assert result.report.junctions[1].status == "dead"


def test_no_warm_up_where_nothing_is_starved() -> None:
    for build in (shapes.build_zero_bn, shapes.build_layer_scale, shapes.build_cross_attention):
        result = check_gradient_flow(build(), shapes.example_input())
        assert result.passed and result.report.warmup is None, build.__name__


def test_warmup_steps_0_turns_it_off() -> None:
    result = check_gradient_flow(shapes.build_zero_head(), shapes.example_input(), warmup_steps=0)
    assert not result.passed
    assert [(v.rule, v.message.split(" (")[0]) for v in result.errors] == [
        ("vanishing", "no gradient arrives at the last junction")]
    assert result.report.warmup is None


@pytest.mark.parametrize("steps", [1, 5])
def test_the_warm_up_takes_its_steps_from_the_settings(steps) -> None:
    model, x = shapes.build_zero_head(), shapes.example_input()
    result = check_gradient_flow(model, x, warmup_steps=steps)
    assert result.report.warmup is not None and result.report.warmup.steps == steps
    rows, norms = reference(trained_with_plain_torch(model, x, steps), x)
    _assert_matches(result.report.warmup.report, rows, norms)


def test_the_json_keeps_the_warm_up_report(gradflow_cli, report_schema) -> None:
    spec = f"{ROOT / 'tests' / 'fixtures' / 'shapes.py'}:build_zero_head"
    result = gradflow_cli("check", spec, "--device", "cpu", "--format", "json")
    assert result.exit_code == 0, result.output
    checked = json.loads(result.stdout)
    validate(checked)
    assert checked["dormant"] == [{"junction": f"#{k}", "reason": "warm-up"} for k in range(3)]
    document = checked["report"]
    jsonschema.validate(document, report_schema)
    warmup = document["warmup"]
    assert (warmup["steps"], warmup["optimizer"], warmup["lr"]) == (WARMUP_STEPS, "adam", WARMUP_LR)
    assert warmup["report"]["schema"] == "gradflow/report@2" and warmup["report"]["warmup"] is None
    assert [j["dormant_reason"] for j in document["junctions"]] == ["warm-up"] * 3
    assert Report.from_dict(document).to_dict() == document
    off = gradflow_cli("check", spec, "--device", "cpu", "--warmup-steps", "0")
    assert off.exit_code == 1 and "vanishing" in off.stdout


def survival(model: nn.Module, x: torch.Tensor) -> float:
    """grad_in at the first junction / grad_out at the last, under the `ce` probe loss."""
    loss = ce(model(x.clone().requires_grad_(True)))
    first_in, last_out = torch.autograd.grad(loss, [model.seen["x"][0], model.seen["y"][-1]])
    return (first_in.norm() / last_out.norm()).item()


def test_a_trunk_starved_behind_a_layer_scale_opens_in_the_warm_up() -> None:
    """CaiT's shape: every gradient the trunk gets passes a 1e-5 layer scale. The survival is of
    that order at initialisation and grows by orders of magnitude as the gate opens."""
    model, x = shapes.build_gated_readout(), shapes.example_input()
    before, after = survival(model, x), survival(trained_with_plain_torch(model, x), x)
    assert before < 1e-4 and after > 1000 * before
    result = check_gradient_flow(model, x)
    assert result.passed, result.verdict()
    report = result.report
    assert report.summary.survival == pytest.approx(before, rel=1e-4)
    assert report.warmup is not None
    assert report.warmup.report.summary.survival == pytest.approx(after, rel=1e-4)
    assert result.outcome("vanishing").worst == pytest.approx(after, rel=1e-4)
    # A threshold the warmed-up survival misses: it passes because it grew over 100 times.
    strict = 2 * after
    grown = check_gradient_flow(model, x, survival_below=strict)
    assert grown.passed and grown.outcome("vanishing").status == "passed"
    cold = check_gradient_flow(model, x, survival_below=strict, warmup_steps=0)
    assert [v.rule for v in cold.errors] == ["vanishing"]


def test_a_stack_that_loses_its_gradient_with_depth_stays_vanishing_after_the_warm_up() -> None:
    from tests import test_check_models as stacks

    model, x = stacks.build_stopped_skips(), shapes.example_input()[:, : stacks.WIDTH]
    before, after = survival(model, x), survival(trained_with_plain_torch(model, x), x)
    assert after < 100 * before < 1e-2  # no gate opens: a few steps change it little
    result = check_gradient_flow(model, x)
    (violation,) = result.errors
    assert violation.rule == "vanishing"
    assert violation.value == pytest.approx(before, rel=1e-4)
    assert f"after 3 warm-up steps: survival {after:.3g}×" in violation.message
