"""A model that sets `requires_grad` on a tensor derived from its input (as speech encoders do
with `h = input_values[:, None]` in train mode) runs under gradflow as it runs alone: the probe's
input requires grad, so `h` is no leaf, and gradflow lets the set stand where torch alone would
refuse it. The numbers match autograd on the model's own tensors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import gradflow
from gradflow.errors import GradflowError
from tests.fixtures.models import LoggingModel
from tests.reference import reference
from tests.test_measure import METRICS, mse


class FeatureEncoder(LoggingModel):
    """`h = x[:, None]`, then `h.requires_grad = True` in train mode, then residual conv blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.block = nn.Sequential(nn.Conv1d(4, 4, 3, padding=1), nn.Tanh(), nn.Conv1d(4, 4, 1))
        self.head = nn.Linear(4, 2)
        self.sets_flag = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log = []
        h = x[:, None]
        if self.training and self.sets_flag:
            h.requires_grad = True  # the model's own line: a leaf when it runs alone
        h = torch.tanh(self.conv(h))
        h = self.junction(h, h, self.block(h), self.block.parameters())
        return self.head(h.mean(-1))


def test_the_model_runs_alone() -> None:
    model = FeatureEncoder().train()
    model(torch.randn(3, 16)).sum().backward()


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_a_model_setting_requires_grad_on_its_input_runs_and_matches_autograd(mode: str) -> None:
    torch.manual_seed(0)
    model = FeatureEncoder()
    x = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    report = gradflow.inspect(model, x, loss="mse", mode=mode)
    model.train(mode == "train")
    # The reference differentiates with respect to the input, as gradflow's probe does; there h
    # already requires grad, which is all the model's line asks, so the reference skips it.
    model.sets_flag = False
    expected = reference(model, x, mse)
    assert len(report.junctions) == len(expected) == 1
    for metric in METRICS:
        got = getattr(report.junctions[0], metric)
        assert math.isclose(got, expected[0][metric], rel_tol=1e-4, abs_tol=1e-7), (metric, got, expected[0][metric])
    assert "requires_grad" not in vars(torch.Tensor)  # torch's own property is back


def test_other_sets_still_reach_torch() -> None:
    """Turning requires_grad off on a tensor that is no leaf stays an error, as alone."""

    class TurnsOff(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.f = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.f(x)
            h.requires_grad = False
            return h

    with pytest.raises(GradflowError, match="requires_grad flags of leaf variables"):
        gradflow.inspect(TurnsOff(), torch.randn(2, 4), loss="sum")
    assert "requires_grad" not in vars(torch.Tensor)
