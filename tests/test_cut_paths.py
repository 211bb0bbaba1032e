"""A path cut by a detached copy (`x.detach() + f(x)`, `x + f(x).detach()`) is still a junction:
gradflow finds the add, says which side is cut, and measures the rest against autograd on the
model's own tensors. A constant added to a tensor (a buffer, a mask) is not a cut."""

from __future__ import annotations

import math

import pytest
import torch

import gradflow
from gradflow.testing import check_gradient_flow
from tests.fixtures import models
from tests.reference import reference
from tests.test_measure import METRICS, _inputs, mse

# (model, junction index). A cut block with junctions inside takes them off the graph, where the
# reference still logs them (ParallelBlock's blocks 1 and 2, Nested's block 1); cutting
# ParallelBlock's inner block leaves junction 2's attention side the shorter one, so gradflow
# takes it for the skip, where the model's log calls it the block.
SKIP_CASES = [("Shared", 0), ("Shared", 1), ("InputFork", 0), ("InputFork", 1), ("Nested", 0),
              ("Nested", 1), ("ParallelBlock", 0), ("ParallelBlock", 1), ("ParallelBlock", 2)]
BLOCK_CASES = [("Shared", 0), ("Shared", 1), ("InputFork", 0), ("InputFork", 1), ("Nested", 0)]


def _cut(name: str, side: str, index: int):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = getattr(models, name)()
    setattr(model, f"detach_{side}", {index})
    x = _inputs(name)
    return model, x, gradflow.inspect(model, x, loss="mse"), reference(model, x, mse)


@pytest.mark.parametrize(
    ("name", "index", "side"),
    [(n, i, "skip") for n, i in SKIP_CASES] + [(n, i, "block") for n, i in BLOCK_CASES],
)
def test_a_cut_path_is_reported_and_the_rest_matches_autograd(name: str, index: int, side: str) -> None:
    _, _, report, expected = _cut(name, side, index)
    assert len(report.junctions) == len(expected)
    for junction, ref in zip(report.junctions, expected):
        cut = junction.index == index
        assert junction.cut == (side if cut else None), junction.name
        assert (junction.status == "cut") is cut, junction.name
        for metric in METRICS:
            got = getattr(junction, metric)
            if metric == "cosine" and 0.0 in (ref["grad_skip"], ref["grad_block"]):
                assert got is None, junction.name
                continue
            assert got is not None, (junction.name, metric)
            assert math.isclose(got, ref[metric], rel_tol=1e-4, abs_tol=1e-7), (
                junction.name, metric, got, ref[metric])
    cut_junction = report.junctions[index]
    assert (cut_junction.grad_skip if side == "skip" else cut_junction.grad_block) == 0.0
    (note,) = [n for n in report.summary.notes if "detached copy" in n]
    assert note.startswith(f"{cut_junction.name}: the {side} is a detached copy")


def test_check_fails_on_a_cut_skip_with_the_cut_rule() -> None:
    torch.manual_seed(0)
    model = models.Shared()
    model.detach_skip = {1}
    result = check_gradient_flow(model, _inputs("Shared"), loss="mse")
    assert not result.passed
    (violation,) = [v for v in result.violations if v.rule == "cut"]
    assert violation.subject == "#1" and "detached copy of the fork" in violation.message
    healthy = check_gradient_flow(models.Shared(), _inputs("Shared"), loss="mse")
    assert not [v for v in healthy.violations if v.rule == "cut"]


def test_a_cut_block_is_judged_by_the_cut_rule_not_as_dead() -> None:
    torch.manual_seed(0)
    model = models.Shared()
    model.detach_block = {0}
    result = check_gradient_flow(model, _inputs("Shared"), loss="mse")
    assert [v.subject for v in result.violations if v.rule == "cut"] == ["#0"]
    assert not [v for v in result.violations if v.rule == "dead"]


class _InPlaceCut(torch.nn.Module):
    """`out = x.detach(); out += f(x)`: the in-place form of a cut skip."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(4, 4)
        self.f = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fork = x = self.inp(x)
        out = x.detach()
        out += self.f(torch.tanh(x))  # tanh saves its output, not x, which the add then changes
        return out


def test_an_inplace_add_onto_a_detached_copy_is_a_cut_skip() -> None:
    model = _InPlaceCut()
    x = torch.randn(3, 4)
    (junction,) = gradflow.inspect(model, x, loss="sum").junctions
    assert junction.cut == "skip" and junction.grad_skip == 0.0
    out = model(x)
    (g_fork,) = torch.autograd.grad(out.sum(), model.fork)
    assert junction.grad_in == pytest.approx(g_fork.norm().item(), rel=1e-5)
    assert junction.grad_block == pytest.approx(g_fork.norm().item(), rel=1e-5)  # all of it


class _ConstantAdds(torch.nn.Module):
    """x + a buffer, x + a freshly made constant, x + another input that needs no gradient: none
    is a detached copy of a graph tensor, so none is a junction."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(4, 4)
        self.register_buffer("table", torch.randn(4))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.inp(x) + self.table
        h = h + torch.ones_like(h)
        return h + mask


def test_adding_constants_is_not_a_cut() -> None:
    report = gradflow.inspect(_ConstantAdds(), (torch.randn(3, 4), torch.zeros(3, 4, dtype=torch.long)), loss="sum")
    assert report.junctions == ()
    assert not [n for n in report.summary.notes if "detached" in n]
