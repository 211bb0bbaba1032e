"""Plain junctions measured from the gradients at their fork and add (gradflow.engine.taps.Captured),
without hooks: the same numbers as plain autograd, down to blocks whose part is far below the
rounding of the fork's gradient, and the same as the hooks give."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradflow
import gradflow.engine.norms
from gradflow.engine import gates, taps
from tests.fixtures.models import LoggingModel, SmallResNet
from tests.reference import reference


class ScaledStack(LoggingModel):
    """Pre-norm blocks x + scale * mlp(norm(x)): the scale sets the block's share of the fork's
    gradient, from healthy (1) to far below float32 rounding (1e-9)."""

    def __init__(self, scale: float, depth: int = 3, width: int = 16, gated: bool = True) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)) for _ in range(depth)
        )
        # gated: the scale is a gate parameter on the block path (a layer scale); else it is
        # folded into the block's last layer, which no gate search can see
        self.scales = nn.ParameterList(nn.Parameter(torch.full((width,), scale)) for _ in range(depth if gated else 0))
        if not gated:
            with torch.no_grad():
                for mlp in self.mlps:
                    mlp[2].weight.mul_(scale)
                    mlp[2].bias.mul_(scale)
        self.head = nn.Linear(width, 3)

    def forward(self, x):  # type: ignore[no-untyped-def]
        self.log = []
        for k, (norm, mlp) in enumerate(zip(self.norms, self.mlps)):
            params = [*norm.parameters(), *mlp.parameters()]
            block = mlp(norm(x))
            if self.scales:
                params.append(self.scales[k])
                block = self.scales[k] * block
            x = self.junction(x, x, block, params)
        return self.head(x)


def _mse(out: torch.Tensor) -> torch.Tensor:
    return out.pow(2).mean()


def _forward_input() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(4, 5, 16)


@pytest.mark.parametrize("gated", [True, False], ids=["gate", "folded"])
@pytest.mark.parametrize("scale", [1.0, 1e-2, 1e-4, 1e-6, 1e-9, 0.0])
def test_captured_numbers_equal_autograd(scale: float, gated: bool, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = ScaledStack(scale, gated=gated)
    x = _forward_input()
    used = []
    real = taps.capturable
    monkeypatch.setattr("gradflow.engine.measure.capturable", lambda *a: used.append(real(*a)) or used[-1])
    report = gradflow.inspect(model, x, loss="mse", mode="eval")
    # every junction is plain, the first too (its fork is the input); a block behind a nearly
    # closed gate is hooked instead, while one made small by its own weights is captured, its part
    # then taken exactly by a pass of its own
    assert used == [[] if gated and scale <= gates.SMALL_GATE else [0, 1, 2]]
    expected = reference(model, x, _mse)
    for junction, want in zip(report.junctions, expected):
        for metric in ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad"):
            assert junction.metric(metric) == pytest.approx(want[metric], rel=1e-4, abs=1e-30), (junction.name, metric)
        if want["grad_block"] > 0:
            assert junction.cosine == pytest.approx(want["cosine"], abs=1e-4), junction.name
        else:
            assert junction.cosine is None


def test_projection_skips_keep_their_hooks(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = SmallResNet()
    used = []
    real = taps.capturable
    monkeypatch.setattr("gradflow.engine.measure.capturable", lambda *a: used.append(real(*a)) or used[-1])
    x = torch.randn(2, 3, 8, 8)
    report = gradflow.inspect(model, x, loss="sum")
    assert [j.skip for j in report.junctions] == ["identity", "projection"]
    assert used == [[0]]


def test_captured_and_hooked_junctions_agree(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = ScaledStack(0.3, depth=4)
    x = _forward_input()
    captured = gradflow.inspect(model, x, loss="mse")
    monkeypatch.setattr(gradflow.engine.norms, "budget", lambda device: 0)  # nothing fits: hooks
    hooked = gradflow.inspect(model, x, loss="mse")
    for a, b in zip(captured.junctions, hooked.junctions):
        for metric in ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad", "cosine"):
            assert a.metric(metric) == pytest.approx(b.metric(metric), rel=1e-5), (a.name, metric)


def test_a_stop_gradient_is_measured_with_hooks() -> None:
    torch.manual_seed(0)
    model = ScaledStack(0.3)
    x = _forward_input()
    model.detach_block = {1, 2}
    expected = reference(model, x, _mse)
    model.detach_block = set()
    report = gradflow.inspect(model, x, loss="mse", sg_block=True, at=["1:3"])
    for junction, want in list(zip(report.junctions, expected))[1:]:
        assert junction.grad_block == 0.0
        assert junction.grad_in == pytest.approx(want["grad_in"], rel=1e-4)


class Broadcast(LoggingModel):
    """y = x + f(x) where the block's output is larger than x: the add broadcasts x."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(6, 6)
        self.g = nn.Linear(6, 6)

    def forward(self, x):  # type: ignore[no-untyped-def]
        self.log = []
        h = self.g(x)  # (B, 1, 6): the fork
        block = self.f(h).expand(-1, 4, -1) * torch.linspace(0.5, 2.0, 4).view(1, 4, 1)
        return self.junction(h, h, block, self.f.parameters())


def test_a_broadcast_fork_equals_autograd() -> None:
    torch.manual_seed(0)
    model = Broadcast()
    x = torch.randn(3, 1, 6)
    report = gradflow.inspect(model, x, loss="mse")
    (want,) = reference(model, x, _mse)
    (junction,) = report.junctions
    for metric in ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad", "cosine"):
        assert junction.metric(metric) == pytest.approx(want[metric], rel=1e-4), metric


class BroadcastBlock(LoggingModel):
    """y = x + f(x) where the block's output is smaller than x: the add broadcasts the block."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(6, 6)
        self.g = nn.Linear(6, 6)

    def forward(self, x):  # type: ignore[no-untyped-def]
        self.log = []
        h = self.g(x)  # (B, 4, 6): the fork
        block = self.f(h.mean(1, keepdim=True))  # (B, 1, 6)
        return self.junction(h, h, block, self.f.parameters())


def test_a_broadcast_block_equals_autograd() -> None:
    torch.manual_seed(0)
    model = BroadcastBlock()
    x = torch.randn(3, 4, 6)
    report = gradflow.inspect(model, x, loss="mse")
    (want,) = reference(model, x, _mse)
    (junction,) = report.junctions
    for metric in ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad", "cosine"):
        assert junction.metric(metric) == pytest.approx(want[metric], rel=1e-4), metric
