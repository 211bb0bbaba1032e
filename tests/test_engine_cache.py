"""What the engine keeps per model between measurements (gradflow.engine.replay: the junctions
per graph shape, and the junctions to hook rather than capture) never changes a number: after
any change to the model or its inputs, a second measurement equals a measurement of the same
model with nothing kept, and plain autograd. The recorder's patches of the model's own classes
are gone after every measurement."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import gradflow
from gradflow.engine.replay import forget, replays_of
from gradflow.errors import GradflowError
from tests.fixtures.models import LoggingModel
from tests.reference import reference


class Scaled(LoggingModel):
    """Residual blocks `x + gamma * mlp(x)` with a layer scale `gamma` (ConvNeXt's, CaiT's) and
    dropout; `extra` blocks can be added after construction."""

    def __init__(self, blocks: int = 3, gamma: float = 1e-6, width: int = 8) -> None:
        super().__init__()
        self.width = width
        self.blocks = nn.ModuleList(self._block(gamma) for _ in range(blocks))
        self.drop = nn.Dropout(0.5)

    def _block(self, gamma: float) -> nn.Module:
        block = nn.Sequential(nn.Linear(self.width, self.width), nn.Tanh(), nn.Linear(self.width, self.width))
        block.gamma = nn.Parameter(torch.full((self.width,), gamma))  # type: ignore[assignment]
        return block

    def forward(self, x):  # type: ignore[no-untyped-def]
        self.log = []
        x = self.drop(x)
        for block in self.blocks:
            x = self.junction(x, x, block.gamma * block(x), block.parameters())
        return x


def _loss(out: torch.Tensor) -> torch.Tensor:
    return out.pow(2).mean()


def _same(report: gradflow.Report, expected: gradflow.Report) -> None:
    """The same junctions and verdicts, and the same numbers to float32 rounding (a junction
    hooked in one and captured in the other sums its gradients in another order)."""
    assert [(j.name, j.status) for j in report.junctions] == [(j.name, j.status) for j in expected.junctions]
    for junction, want in zip(report.junctions, expected.junctions):
        for metric in ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad", "cosine"):
            assert junction.metric(metric) == pytest.approx(want.metric(metric), rel=1e-5, abs=1e-9), metric


def _fresh(model: nn.Module, x: torch.Tensor, mode: str) -> gradflow.Report:
    forget(model)
    return gradflow.inspect(model, x, loss=_loss, mode=mode)


def _add_block(model: Scaled, x: torch.Tensor) -> torch.Tensor:
    model.blocks.append(model._block(1e-6))
    return x


def _remove_block(model: Scaled, x: torch.Tensor) -> torch.Tensor:
    del model.blocks[1]
    return x


def _hook(model: Scaled, x: torch.Tensor) -> torch.Tensor:
    model.blocks[0][0].register_forward_hook(lambda module, args, out: out * 2 + 1)
    return x


def _open_gate(model: Scaled, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        for block in model.blocks:
            block.gamma.fill_(1.0)
    return x


def _freeze(model: Scaled, x: torch.Tensor) -> torch.Tensor:
    model.blocks[0][0].weight.requires_grad_(False)
    return x


CHANGES: dict[str, Callable[[Scaled, torch.Tensor], torch.Tensor]] = {
    "a block added": _add_block,
    "a block removed": _remove_block,
    "a forward hook": _hook,
    "a gate opened": _open_gate,
    "a parameter frozen": _freeze,
    "another input shape": lambda model, x: torch.randn(3, 5, 8),
}


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("change", list(CHANGES))
def test_a_change_between_measurements_changes_the_numbers_as_without_a_cache(change: str, mode: str) -> None:
    torch.manual_seed(0)
    model = Scaled()
    x = torch.randn(4, 8)
    gradflow.inspect(model, x, loss=_loss, mode=mode)
    gradflow.inspect(model, x, loss=_loss, mode=mode)  # kept: the shape, the junctions to hook
    x = CHANGES[change](model, x)
    again = gradflow.inspect(model, x, loss=_loss, mode=mode)
    _same(again, _fresh(model, x, mode))
    # Dropout off, the reference's forward pass is the probe's; it differentiates every parameter.
    if mode == "eval" and change != "a parameter frozen":
        model.eval()
        expected = reference(model, x, _loss)
        assert len(again.junctions) == len(expected)
        for junction, want in zip(again.junctions, expected):
            for metric in ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad", "cosine"):
                assert junction.metric(metric) == pytest.approx(want[metric], rel=1e-4, abs=1e-7), metric


def test_train_then_eval_is_measured_as_without_a_cache() -> None:
    torch.manual_seed(0)
    model = Scaled()
    x = torch.randn(4, 8)
    gradflow.inspect(model, x, loss=_loss, mode="train")
    again = gradflow.inspect(model, x, loss=_loss, mode="eval")
    _same(again, _fresh(model, x, "eval"))
    assert model.training  # the state guard put the mode back


def test_a_nearly_closed_block_is_hooked_and_exact() -> None:
    """A block behind a layer scale of 1e-6 passes back too little for a captured junction's
    difference: it is hooked, on the first measurement and after, and its numbers are autograd's."""
    torch.manual_seed(0)
    model = Scaled().eval()
    x = torch.randn(4, 8)
    for _ in range(2):
        report = gradflow.inspect(model, x, loss=_loss, mode="eval")
        expected = reference(model, x, _loss)
        for junction, want in zip(report.junctions, expected):
            assert junction.grad_block == pytest.approx(want["grad_block"], rel=1e-4, abs=1e-12)
            assert junction.cosine == pytest.approx(want["cosine"], rel=1e-4, abs=1e-6)
    assert replays_of(model).hooked == {j.name for j in report.junctions}


def test_the_recorder_leaves_the_model_classes_as_they_were() -> None:
    class Failing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    classes = (Scaled, nn.Sequential, nn.Linear, nn.Tanh, nn.Dropout, nn.ModuleList, Failing, nn.Module)
    before = {cls: dict(cls.__dict__) for cls in classes}
    gradflow.inspect(Scaled(), torch.randn(2, 8), loss=_loss)
    with pytest.raises(GradflowError):
        gradflow.inspect(Failing(), torch.randn(2, 4))
    for cls in classes:
        assert dict(cls.__dict__) == before[cls], cls
