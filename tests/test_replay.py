"""A second measurement of a graph of the same shape replays the first one's junctions instead of
searching again (gradflow.engine.replay), and a graph of another shape is searched afresh: the
numbers equal plain autograd either way."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradflow
from gradflow.engine import measure
from tests.fixtures.models import LoggingModel, SmallResNet
from tests.reference import reference


class Switch(LoggingModel):
    """Three junctions; `act` picks the blocks' activation and `skip_middle` leaves one out, so
    the graph's shape can change between two measurements of the same model object."""

    def __init__(self) -> None:
        super().__init__()
        self.fs = nn.ModuleList(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8)) for _ in range(3))
        self.act = torch.tanh
        self.skip_middle = False

    def forward(self, x):  # type: ignore[no-untyped-def]
        self.log = []
        for i, f in enumerate(self.fs):
            if i == 1 and self.skip_middle:
                continue
            x = self.junction(x, x, self.act(f(x)), f.parameters())
        return x


@pytest.fixture
def searches(monkeypatch):  # type: ignore[no-untyped-def]
    calls = []
    real = measure.find_junctions

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(measure, "find_junctions", counted)
    return calls


def _matches(report, model, x) -> None:  # type: ignore[no-untyped-def]
    expected = reference(model, x, lambda out: out.pow(2).mean())
    assert len(report.junctions) == len(expected)
    for junction, want in zip(report.junctions, expected):
        for metric in ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad", "cosine"):
            assert junction.metric(metric) == pytest.approx(want[metric], rel=1e-4, abs=1e-7), metric


def test_a_second_measurement_replays_the_first(searches) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = SmallResNet()
    first = gradflow.inspect(model, torch.randn(2, 3, 8, 8), loss="mse")
    x = torch.randn(5, 3, 8, 8)  # another batch size builds a graph of the same shape
    second = gradflow.inspect(model, x, loss="mse")
    assert len(searches) == 1
    assert [j.name for j in second.junctions] == [j.name for j in first.junctions]
    assert second.summary.notes == first.summary.notes
    _matches(second, model, x)


@pytest.mark.parametrize("change", ["activation", "structure"])
def test_a_graph_of_another_shape_is_searched_again(searches, change: str) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = Switch()
    x = torch.randn(4, 8)
    gradflow.inspect(model, x, loss="mse")
    if change == "activation":
        model.act = torch.sigmoid  # same adds, same node count, other node types
    else:
        model.skip_middle = True
    report = gradflow.inspect(model, x, loss="mse")
    assert len(searches) == 2
    _matches(report, model, x)


def test_frozen_parameters_are_a_new_shape(searches) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = Switch()
    x = torch.randn(4, 8)
    gradflow.inspect(model, x, loss="mse")
    for p in model.fs[0].parameters():
        p.requires_grad_(False)
    report = gradflow.inspect(model, x, loss="mse")
    assert len(searches) == 2
    assert len(report.junctions) == 2  # a block with no trainable parameter is no junction


def test_a_replayed_junction_keeps_its_context(searches) -> None:  # type: ignore[no-untyped-def]
    """A cross-attention block's gradient to the encoder side (grad_context) is measured on a
    replayed graph as on the first."""
    from tests.fixtures import shapes

    model, x = shapes.build_cross_attention(), shapes.example_input()
    first = gradflow.inspect(model, x, seed=0)
    again = gradflow.inspect(model, x, seed=0)
    assert len(searches) == 1
    assert [j.grad_context for j in again.junctions] == [j.grad_context for j in first.junctions]
    assert any(j.grad_context for j in again.junctions)


@pytest.mark.parametrize("builder", ["build_layer_scale", "build_skip_gain", "build_zero_bn"])
def test_a_replayed_junction_keeps_its_gate(searches, builder: str) -> None:  # type: ignore[no-untyped-def]
    """A block judged dormant by its gate on the first graph is judged so on a replayed one."""
    from tests.fixtures import shapes

    model, x = getattr(shapes, builder)(), shapes.example_input()
    first = gradflow.inspect(model, x)
    again = gradflow.inspect(model, x)
    assert len(searches) == 1
    assert any(j.dormant_reason for j in first.junctions)
    assert [(j.status, j.dormant_reason) for j in again.junctions] == [
        (j.status, j.dormant_reason) for j in first.junctions
    ]


def test_an_add_into_a_view_is_searched_every_time(searches) -> None:  # type: ignore[no-untyped-def]
    """Its operands' edges before the add belong to the graph they were recorded in."""
    from tests.fixtures.models import ViewAdds

    torch.manual_seed(0)
    model = ViewAdds()
    gradflow.inspect(model, torch.randn(2, 3, 6, 6), loss="mse")
    x = torch.randn(3, 3, 6, 6)
    report = gradflow.inspect(model, x, loss="mse")
    assert len(searches) == 2
    _matches(report, model, x)


def test_a_replayed_shared_side_takes_its_pass_in_the_new_graph(searches) -> None:  # type: ignore[no-untyped-def]
    from tests.fixtures.models import ParallelBlock

    torch.manual_seed(0)
    model = ParallelBlock()
    gradflow.inspect(model, torch.randn(4, 5), loss="mse")
    x = torch.randn(6, 5)
    report = gradflow.inspect(model, x, loss="mse")
    assert len(searches) == 1
    _matches(report, model, x)
