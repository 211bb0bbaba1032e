"""gradflow check at its defaults on the shapes of tests/fixtures/shapes.py: every shape healthy
by design passes and says why (dormant, gated, zero), every broken one fails naming its culprit.
The numbers behind these verdicts are tested against autograd in test_dormant, test_warmup,
test_context and test_parameters."""

from __future__ import annotations

import pytest
import torch

from gradflow.testing import check_gradient_flow
from tests.conftest import ROOT
from tests.fixtures import shapes

HEALTHY = {
    # builder: (junction, dormant_reason) of each dormant junction
    "build_zero_bn": [("#0", "blocks.0.bn2.weight"), ("#1", "blocks.1.bn2.weight")],
    "build_skip_gain": [(f"#{k}", f"blocks.{k}.gain") for k in range(3)],
    "build_layer_scale": [(f"#{k}", f"blocks.{k}.gamma") for k in range(3)],
    "build_zero_head": [(f"#{k}", "warm-up") for k in range(3)],
    "build_bias_before_bn": [],
    "build_cross_attention": [],
    "build_gated_readout": [("#0", "warm-up"), ("#1", "warm-up"), ("#2", "gamma")],
}

BROKEN = {
    # builder: the (rule, subject) pairs that fail it
    "build_detached_block": {("cut", "#1")} | {("no-grad", f"blocks.1.{p}") for p in (
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")},
    "build_no_grad_block": {("no-grad", f"blocks.1.{p}") for p in (
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")},
    "build_unused_layer": {("unused", "spare.weight"), ("unused", "spare.bias")},
    "build_nan": {("nonfinite", "pre.weight"), ("nonfinite", "pre.bias")},
    "build_exploding": {("exploding", "#0")},
    "build_dead_relu": {("dead", "#1")},
}


@pytest.mark.parametrize("builder", list(HEALTHY))
def test_a_healthy_shape_passes_at_the_defaults_and_says_why(builder) -> None:
    result = check_gradient_flow(getattr(shapes, builder)(), shapes.example_input(), seeds=2)
    assert result.passed, result.verdict()
    assert result.errors == () and result.warnings == ()
    assert list(result.dormant) == HEALTHY[builder]
    for report in result.reports:
        assert report.summary.flagged == ()


@pytest.mark.parametrize("builder", list(BROKEN))
def test_a_broken_shape_fails_at_the_defaults_naming_its_culprit(builder) -> None:
    result = check_gradient_flow(getattr(shapes, builder)(), shapes.example_input())
    assert not result.passed
    assert {(v.rule, v.subject) for v in result.errors} == BROKEN[builder]


def test_a_bias_before_batchnorm_is_told_as_autograd_tells_it() -> None:
    """The norm removes the mean, so the bias's gradient is zero in exact arithmetic, and rounding
    leaves it at most a few ulps from zero: `zero` where autograd gives exactly 0, `ok` where it
    does not; the check passes either way."""
    model, x = shapes.build_bias_before_bn(), shapes.example_input()
    params = dict(model.named_parameters())
    out = model(x)
    labels = torch.randint(0, out.shape[-1], (out.shape[0],), generator=torch.Generator().manual_seed(0))
    grads = dict(zip(params, torch.autograd.grad(torch.nn.functional.cross_entropy(out, labels),
                                                 list(params.values()))))
    result = check_gradient_flow(model, x)
    assert result.passed
    by_name = {p.name: p for p in result.report.parameters}
    for k in range(2):
        bias, weight = grads[f"blocks.{k}.fc1.bias"], grads[f"blocks.{k}.fc1.weight"]
        assert bias.norm() < 1e-5 * weight.norm()
        expected = "ok" if bias.any() else "zero"
        assert by_name[f"blocks.{k}.fc1.bias"].gradient == expected
        assert by_name[f"blocks.{k}.fc1.bias"].grad_norm == pytest.approx(bias.norm().item(), rel=1e-3)


def test_the_command_line_shows_the_dormant_junctions(gradflow_cli) -> None:
    spec = f"{ROOT / 'tests' / 'fixtures' / 'shapes.py'}:build_zero_bn"
    result = gradflow_cli("check", spec, "--device", "cpu")
    assert result.exit_code == 0, result.output
    words = " ".join(result.stdout.split())  # as the terminal's width wraps them
    assert "2 dormant" in words
    assert "#0 (gate blocks.0.bn2.weight), #1 (gate blocks.1.bn2.weight)" in words
    table = gradflow_cli("inspect", spec, "--device", "cpu")
    assert table.exit_code == 0, table.output
    assert table.stdout.count(" dormant ") == 2
    assert "#0 (gate blocks.0.bn2.weight)" in " ".join(table.stdout.split())
