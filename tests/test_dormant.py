"""Dormant junctions recognised without training: a block held closed by a gate (a scale on its
path that is zero or tiny while the gate's own gradient is not zero). Numbers against plain
torch.autograd.grad; gates that do not qualify leave a dead block dead."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradflow
from gradflow.engine.verdicts import GATE_AT_MOST, closing_gate
from gradflow.testing import check_gradient_flow
from tests.fixtures import shapes

GATED = [
    # (builder, the gate of junction k, its value at initialisation)
    (shapes.build_zero_bn, "blocks.{k}.bn2.weight", 0.0),
    (shapes.build_skip_gain, "blocks.{k}.gain", 0.0),
    (shapes.build_layer_scale, "blocks.{k}.gamma", 1e-6),
]


def _reference(model: nn.Module, x: torch.Tensor) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Sum loss: each junction's block_ratio (identity skips: grad_skip = |dL/dy|) and every
    parameter's gradient."""
    params = dict(model.named_parameters())
    loss = model(x.clone().requires_grad_(True)).sum()
    seen = model.seen
    ratios = []
    for fork, block, y in zip(seen["x"], seen["block"], seen["y"]):
        (g_y,) = torch.autograd.grad(loss, y, retain_graph=True)
        (g_block,) = torch.autograd.grad(block, fork, g_y, retain_graph=True)
        ratios.append((g_block.norm() / g_y.norm()).item())
    grads = torch.autograd.grad(loss, list(params.values()))
    return ratios, dict(zip(params, grads))


@pytest.mark.parametrize(("build", "gate", "value"), GATED)
def test_a_gated_block_is_dormant_and_names_its_gate(build, gate, value) -> None:
    model, x = build(), shapes.example_input()
    ratios, grads = _reference(model, x)
    report = gradflow.inspect(model, x, loss="sum")
    assert len(report.junctions) == len(ratios)
    by_name = {p.name: p for p in report.parameters}
    for k, junction in enumerate(report.junctions):
        name = gate.format(k=k)
        assert ratios[k] < 1e-3  # dead by its numbers alone
        assert junction.block_ratio == pytest.approx(ratios[k], rel=1e-4, abs=1e-12)
        assert (junction.status, junction.dormant_reason) == ("dormant", name)
        assert torch.all(model.get_parameter(name) == value)
        assert grads[name].norm() > 0  # the gate's own gradient: the first step opens it
        assert by_name[name].grad_norm == pytest.approx(grads[name].norm().item(), rel=1e-5)
    assert report.summary.flagged == ()


@pytest.mark.parametrize(("build", "gate", "value"), GATED)
def test_a_gated_model_passes_the_check_at_its_defaults(build, gate, value) -> None:
    result = check_gradient_flow(build(), shapes.example_input())
    assert result.passed, result.verdict()
    assert result.errors == () and result.warnings == ()
    assert [reason for _, reason in result.dormant] == [
        gate.format(k=k) for k in range(len(result.report.junctions))
    ]


class GatedBlock(nn.Module):
    """`gate * f(x) + shift` with f an MLP whose ReLU can be killed (fc1's bias at -10)."""

    def __init__(self, gate: float, dead: bool = False, shift: bool = False) -> None:
        super().__init__()
        self.f = shapes.Mlp()
        self.gate = nn.Parameter(torch.full((), gate))
        self.shift = nn.Parameter(torch.zeros(shapes.WIDTH)) if shift else None
        if dead:
            with torch.no_grad():
                self.f.fc1.weight.mul_(0.1)
                self.f.fc1.bias.fill_(-10.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.gate * self.f(x)
        return out if self.shift is None else out + self.shift


def _one_block(block: nn.Module) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return shapes.Recorded([shapes.Mlp(), block])


def test_a_tiny_gate_in_front_of_dead_relus_does_not_make_them_dormant() -> None:
    torch.manual_seed(0)
    model = _one_block(GatedBlock(1e-6, dead=True))
    ratios, grads = _reference(model, shapes.example_input())
    assert ratios[1] == 0 and grads["blocks.1.gate"].norm() > 0  # the gate would move...
    report = gradflow.inspect(model, shapes.example_input(), loss="sum")
    assert report.junctions[1].status == "dead"  # ...but nothing passes the block behind it


def test_a_zero_bias_after_dead_relus_is_not_a_gate() -> None:
    """The shift is 0 and learns, like a gate; but it adds to the path, it does not scale it."""
    torch.manual_seed(0)
    model = _one_block(GatedBlock(1.0, dead=True, shift=True))
    ratios, grads = _reference(model, shapes.example_input())
    assert ratios[1] == 0 and grads["blocks.1.shift"].norm() > 0
    assert torch.all(model.get_parameter("blocks.1.shift") == 0)
    report = gradflow.inspect(model, shapes.example_input(), loss="sum")
    assert (report.junctions[1].status, report.junctions[1].dormant_reason) == ("dead", None)


def test_a_constant_scale_is_no_gate() -> None:
    """x + 1e-5 * f(x), x + 0 * f(x): nothing trainable holds the block closed."""
    for scale in (1e-5, 0.0):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = shapes.Recorded([shapes.ScaledBlock(scale), shapes.Mlp()])
        report = gradflow.inspect(model, shapes.example_input(), loss="sum")
        assert report.junctions[0].status == "dead", scale


def test_a_closed_gate_whose_own_gradient_is_zero_is_no_gate() -> None:
    """f(x) = 0 everywhere (fc2 zeroed, no bias): d loss / d gate = <dL/dy, f(x)> = 0."""
    torch.manual_seed(0)
    block = GatedBlock(0.0)
    with torch.no_grad():
        block.f.fc2.weight.zero_()
        block.f.fc2.bias.zero_()
    model = _one_block(block)
    _, grads = _reference(model, shapes.example_input())
    assert not grads["blocks.1.gate"].any()
    report = gradflow.inspect(model, shapes.example_input(), loss="sum")
    assert report.junctions[1].status == "dead"


@pytest.mark.parametrize(("ratio", "candidates", "expected"), [
    (0.0, [("g", 0.0, 1.0)], "g"),
    (0.0, [("g", 0.0, 0.0)], None),  # its gradient is zero: it stays closed
    (0.0, [("g", 0.0, None)], None),  # no gradient at all
    (0.0, [("g", 0.0, float("nan"))], None),
    (1e-7, [("g", 1e-6, 1.0)], "g"),  # 1e-7 / 1e-6 = 0.1: the block passes once the gate opens
    (1e-10, [("g", 1e-6, 1.0)], None),  # 1e-10 / 1e-6 = 1e-4: dead behind the gate too
    (1e-4, [("w", 0.05, 1.0)], None),  # a weight, far larger than any gate
    (0.0, [("a", 1e-6, 1.0), ("b", 0.0, 1.0)], "b"),  # the most closed one
])
def test_closing_gate(ratio, candidates, expected) -> None:
    assert closing_gate(ratio, candidates, 1e-3) == expected
    assert GATE_AT_MOST == 1e-3
