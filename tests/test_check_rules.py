"""Each check rule fires on a model built to break it, with the numbers and names it reports
checked against plain torch.autograd.grad, and stays quiet on the healthy sample models."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from gradflow.errors import OptionError
from gradflow.gate import CheckSettings, Level, evaluate, rule_names
from gradflow.gate.rules import allowed, get_rule, register
from gradflow.loaders import load_source
from gradflow.testing import check_gradient_flow
from tests import test_check_models as models
from tests.conftest import SAMPLES

HEALTHY = ["tiny_resnet", "prenorm_transformer", "postnorm_encoder", "deep_mlp"]


def sum_loss_grads(model, wrt_fn):  # type: ignore[no-untyped-def]
    """Run the model on the example input with a sum loss; autograd of it w.r.t. wrt_fn(model, x)."""
    x = models.example_input().requires_grad_(True)
    loss = model(x).sum()
    wanted = wrt_fn(model, x)
    return loss, torch.autograd.grad(loss, wanted, allow_unused=True, retain_graph=True)


def by_rule(result, rule):  # type: ignore[no-untyped-def]
    return [v for v in result.violations if v.rule == rule]


def test_rules_are_registered_once_in_report_order() -> None:
    assert rule_names() == ("nonfinite", "unused", "no-grad", "zero-grad", "cut", "vanishing", "dead",
                            "exploding", "regression")
    with pytest.raises(ValueError, match="already registered"):
        register("dead", title="again", fires="never")(lambda report, settings, baseline: None)
    with pytest.raises(OptionError, match="unknown rule 'deadd'.*nonfinite, unused, no-grad"):
        get_rule("deadd")


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_samples_pass_every_rule_on_several_seeds(name) -> None:
    loaded = load_source(str(SAMPLES / f"{name}.py"))
    result = check_gradient_flow(loaded.module, loaded.example_input(), seeds=2)
    assert result.passed, result.verdict()
    assert result.violations == ()
    assert result.seeds == (0, 1)


def test_healthy_residual_net_passes() -> None:
    assert check_gradient_flow(models.build_healthy(), models.example_input(), loss="sum").passed


@pytest.mark.parametrize(("build", "rule", "words"), [
    (models.build_unused, "unused", "never used by the forward pass"),
    (models.build_detached, "no-grad", "no gradient arrives"),
])
def test_unused_and_no_grad_name_exactly_the_parameters_autograd_leaves_without_gradient(
        build, rule, words) -> None:
    """A layer built and never called is `unused`; a branch the forward pass runs and then
    detaches is `no-grad`. Which parameters autograd leaves without a gradient is the reference;
    which of them the forward pass runs is known by construction."""
    model = build()
    names = [n for n, _ in model.named_parameters()]
    _, grads = sum_loss_grads(model, lambda m, x: list(m.parameters()))
    expected = {n for n, g in zip(names, grads) if g is None}
    assert expected  # the model is built to break the rule
    result = check_gradient_flow(model, models.example_input(), loss="sum")
    assert not result.passed
    named = by_rule(result, rule)
    assert {v.subject for v in named} == expected
    assert all(v.value is None and words in v.message for v in named)
    other = "no-grad" if rule == "unused" else "unused"
    assert by_rule(result, other) == []
    by_gradient = {p.name: str(p.gradient) for p in result.report.parameters}
    assert {n for n, g in by_gradient.items() if g in ("unused", "none")} == expected
    assert {by_gradient[n] for n in expected} == {"unused" if rule == "unused" else "none"}
    # x + side(x).detach() is also a junction whose block is cut, which the cut rule names.
    cut = [v.subject for v in result.violations if v.rule == "cut"]
    assert cut == (["#0"] if build is models.build_detached else [])
    assert len(result.violations) == len(named) + len(cut)


def test_allow_unused_accepts_globs_and_module_names() -> None:
    model = models.build_detached()  # x + side(x).detach(): the cut rule has its own say
    kept = {"disable": ["cut"]}
    assert check_gradient_flow(model, models.example_input(), allow_unused=["side"], **kept).passed
    assert check_gradient_flow(model, models.example_input(), allow_unused=["side.*"], **kept).passed
    partial = check_gradient_flow(model, models.example_input(), allow_unused=["*.weight"], **kept)
    assert {v.subject for v in partial.violations} == {"side.0.bias", "side.2.bias"}
    assert allowed("pooler.dense.weight", ("pooler",)) and not allowed("poolerx.w", ("pooler",))


def test_nonfinite_names_the_parameters_with_nan_gradients() -> None:
    model = models.build_nan_gradient()
    names = [n for n, _ in model.named_parameters()]
    loss, grads = sum_loss_grads(model, lambda m, x: list(m.parameters()))
    expected = {n for n, g in zip(names, grads) if g is not None and not torch.isfinite(g).all()}
    assert torch.isfinite(loss) and expected == {"pre.weight", "pre.bias"}
    result = check_gradient_flow(model, models.example_input(), loss="sum")
    nonfinite = by_rule(result, "nonfinite")
    assert {v.subject for v in nonfinite if v.kind == "parameter"} == expected
    assert all(v.value is not None and not math.isfinite(v.value) for v in nonfinite)
    assert result.outcome("nonfinite").failed


def test_nonfinite_reports_a_nan_loss() -> None:
    model = models.build_nan_forward()
    loss, _ = sum_loss_grads(model, lambda m, x: [x])
    assert torch.isnan(loss)
    result = check_gradient_flow(model, models.example_input(), loss="sum")
    subjects = {v.subject for v in by_rule(result, "nonfinite")}
    assert "loss" in subjects
    assert {"#0", "#1", "#2"} <= subjects  # every junction metric downstream is NaN too


def test_vanishing_ratio_matches_autograd_on_stopped_skips() -> None:
    model = models.build_stopped_skips()
    x = models.example_input().requires_grad_(True)
    loss = model(x).sum()
    first_in, last_out = torch.autograd.grad(loss, [model.seen["x"][0], model.seen["y"][-1]])
    expected = (first_in.norm() / last_out.norm()).item()
    assert expected < 1e-2  # built to break the default
    result = check_gradient_flow(model, models.example_input(), loss="sum")
    (violation,) = result.violations
    assert violation.rule == "vanishing"
    assert violation.value == pytest.approx(expected, rel=1e-4)
    assert violation.threshold == 1e-2
    # the same model passes when the threshold is below what it measures
    assert check_gradient_flow(model, models.example_input(), loss="sum",
                               survival_below=expected / 2).passed


def test_dead_block_ratio_matches_autograd() -> None:
    model = models.build_dead()
    x = models.example_input().requires_grad_(True)
    loss = model(x).sum()
    (g_y,) = torch.autograd.grad(loss, model.seen["y"][1], retain_graph=True)
    (g_block,) = torch.autograd.grad(model.seen["block"][1], model.seen["x"][1], g_y)
    expected = (g_block.norm() / g_y.norm()).item()  # identity skip: grad_skip = |g_y|
    assert expected < 1e-3
    result = check_gradient_flow(model, models.example_input(), loss="sum")
    (violation,) = result.violations
    assert (violation.rule, violation.subject) == ("dead", "#1")
    assert violation.value == pytest.approx(expected, rel=1e-4)
    assert violation.location is not None and violation.location.endswith(".py:" + str(
        _line_of("y = x + out")))


def test_exploding_ratio_matches_autograd() -> None:
    model = models.build_exploding()
    x = models.example_input().requires_grad_(True)
    output = model(x)
    loss = output.sum()
    grads = torch.autograd.grad(loss, [output, *model.seen["x"], *model.seen["y"]])
    g_output, g_x, g_y = grads[0].norm(), grads[1:4], grads[4:7]
    expected = [max(gx.norm(), gy.norm()).item() / g_output.item() for gx, gy in zip(g_x, g_y)]
    assert expected[0] > 1e3 and max(expected[1:]) < 1e3
    result = check_gradient_flow(model, models.example_input(), loss="sum")
    (violation,) = result.violations
    assert (violation.rule, violation.subject) == ("exploding", "#0")
    assert violation.value == pytest.approx(expected[0], rel=1e-4)
    assert result.outcome("exploding").worst == pytest.approx(expected[0], rel=1e-4)


def test_rezero_passes_with_its_blocks_dormant_behind_their_gates() -> None:
    """Every alpha starts at 0 with a nonzero gradient (autograd): each block is closed on
    purpose and opens at the first step, so the check passes; the block weights' zero gradients
    are counted, and not listed as warnings: their gates explain them."""
    loaded = load_source(str(SAMPLES / "rezero.py"))
    model, x = loaded.module, loaded.example_input()
    names = [n for n, _ in model.named_parameters()]
    out = model(x)
    labels = torch.randint(0, out.shape[-1], (out.shape[0],), generator=torch.Generator().manual_seed(0))
    grads = dict(zip(names, torch.autograd.grad(torch.nn.functional.cross_entropy(out, labels),
                                                list(model.parameters()))))
    zero = {n for n, g in grads.items() if not g.any()}
    gates = [f"blocks.{i}.alpha" for i in range(8)]
    assert all(model.get_parameter(g).item() == 0 and grads[g].item() != 0 for g in gates)
    result = check_gradient_flow(model, x)
    assert result.passed, result.verdict()
    assert [(j.name, j.status, j.dormant_reason) for j in result.report.junctions] == [
        (f"blocks.{i}", "dormant", gate) for i, gate in enumerate(gates)
    ]
    assert zero == {n for n in names if ".f." in n}  # every block weight, behind its gate
    assert {p.name for p in result.report.parameters if p.gradient == "zero"} == zero
    assert result.outcome("zero-grad").worst == len(zero)
    assert result.outcome("zero-grad").status == "passed" and by_rule(result, "zero-grad") == []
    assert by_rule(result, "unused") == by_rule(result, "no-grad") == by_rule(result, "dead") == []


def test_warn_reports_without_failing_and_disable_turns_a_rule_off() -> None:
    model, x = models.build_dead(), models.example_input()
    warned = check_gradient_flow(model, x, loss="sum", warn=["dead"])
    assert warned.passed and [v.rule for v in warned.warnings] == ["dead"]
    assert warned.outcome("dead").status == "warning"
    off = check_gradient_flow(model, x, loss="sum", disable=["dead"])
    assert off.passed and off.violations == () and off.outcome("dead").status == "off"


def test_seeds_judge_the_worst_batch() -> None:
    """A block that only passes gradient back when the input's first feature is positive."""
    torch.manual_seed(0)
    model = models.ResidualNet(depth=1)
    with torch.no_grad():
        model.blocks[0].fc1.weight.zero_()
        model.blocks[0].fc1.weight[:, 0] = 1.0
        model.blocks[0].fc1.bias.zero_()
    batches = {0: torch.full((1, models.WIDTH), 1.0), 1: torch.full((1, models.WIDTH), -1.0)}
    lucky = check_gradient_flow(model, lambda s: batches[s], seeds=1, loss="sum")
    assert lucky.passed
    judged = check_gradient_flow(model, lambda s: batches[s], seeds=2, loss="sum")
    assert not judged.passed
    (dead,) = by_rule(judged, "dead")
    assert (dead.value, dead.seed) == (0.0, 1)
    assert judged.outcome("dead").worst_seed == 1
    assert [r.probe.seed for r in judged.reports] == [0, 1]


def test_evaluate_keeps_the_lowest_value_per_junction_over_seeds() -> None:
    model = models.build_dead()
    reports = [__import__("gradflow").inspect(model, torch.randn(4, models.WIDTH, generator=torch.Generator().manual_seed(s)),
                                              seed=s, loss="sum") for s in range(3)]
    ratios = [r.junction("#1").block_ratio for r in reports]
    result = evaluate(reports)
    (dead,) = result.violations
    assert dead.value == min(ratios) and dead.seed == ratios.index(min(ratios))


def test_settings_validate_thresholds() -> None:
    with pytest.raises(OptionError, match="--tolerance"):
        CheckSettings(tolerance=0.5)
    with pytest.raises(OptionError, match="--dead-below"):
        CheckSettings(dead_below=-1)
    assert CheckSettings().level("dead") is Level.ERROR


def _line_of(text: str) -> int:
    lines = Path(models.__file__).read_text(encoding="utf-8").splitlines()
    return next(i + 1 for i, line in enumerate(lines) if text in line)
