"""In-place adds into a view (`out = cat(...)[:, :c]; out += shortcut(x)`, or `h += f(h)` where h
is a view) reach autograd as CopySlices, which hides the add and its operands. gradflow's forward
recorder sees both operands, so such a junction is measured like any other: every metric equals
plain autograd on the same model written out of place, and a stop-gradient equals a hand-written
`.detach()` on that path."""

from __future__ import annotations

import math

import pytest
import torch

import gradflow
from gradflow.engine.measure import VariantSpec, measure
from tests.fixtures import models
from tests.reference import reference
from tests.test_measure import METRICS, mse

SKIPS = {
    "ViewAdds": ["identity", "projection", "identity"],
    "ViewFork": ["identity", "identity"],
    "ViewSkip": ["projection"],
}


def _inputs(name: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    if name == "ViewAdds":
        return torch.randn(2, 3, 6, 6, generator=g)
    return torch.randn(2, 3, 4, generator=g)


def _model(name: str) -> models.LoggingModel:
    torch.manual_seed(0)
    model = getattr(models, name)()
    with torch.no_grad():  # batch norm at its initial weights: make the projection's part visible
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return model


def _assert_matches(report, expected) -> None:  # type: ignore[no-untyped-def]
    assert len(report.junctions) == len(expected)
    for junction, ref in zip(report.junctions, expected):
        for metric in METRICS:
            got = getattr(junction, metric)
            if metric == "cosine" and 0.0 in (ref["grad_skip"], ref["grad_block"]):
                assert got is None, junction.name  # no angle to a zero vector
                continue
            assert got is not None, (junction.name, metric)
            assert math.isclose(got, ref[metric], rel_tol=1e-4, abs_tol=1e-7), (
                junction.name, metric, got, ref[metric])


@pytest.mark.parametrize("name", sorted(SKIPS))
def test_inplace_view_adds_are_junctions_matching_autograd(name: str) -> None:
    model = _model(name)
    x = _inputs(name)
    report = gradflow.inspect(model, x, loss="mse")
    assert [j.skip for j in report.junctions] == SKIPS[name]
    _assert_matches(report, reference(model, x, mse))
    assert not [n for n in report.summary.notes if "CopySlices" in n or "in-place" in n]


def test_a_view_add_is_named_after_its_module_and_line() -> None:
    report = gradflow.inspect(_model("ViewAdds"), _inputs("ViewAdds"), loss="mse")
    assert [j.name for j in report.junctions] == ["g1", "g2", "g3"]
    assert all(j.location and j.location.endswith("models.py:" + _line("out += identity")) for j in report.junctions)
    # The block's own forward concatenates and slices on the block path: it is listed whole.
    assert report.junctions[0].block_modules == ("g1",)
    assert report.junctions[1].skip_modules == ("g2.shortcut",)


def _line(text: str) -> str:
    from pathlib import Path

    lines = Path(models.__file__).read_text().splitlines()
    return str(next(i for i, line in enumerate(lines, 1) if text in line))


STOPS = [("ViewAdds", "skip", 0), ("ViewAdds", "block", 0), ("ViewAdds", "skip", 1), ("ViewAdds", "block", 1),
         ("ViewAdds", "block", 2), ("ViewFork", "skip", 0), ("ViewFork", "block", 0), ("ViewSkip", "skip", 0),
         ("ViewSkip", "block", 0)]


@pytest.mark.parametrize(("name", "kind", "index"), STOPS)
def test_stop_gradient_on_a_view_add_equals_a_hand_detached_path(name: str, kind: str, index: int) -> None:
    model = _model(name)
    x = _inputs(name)
    baseline, stopped = measure(
        model, x, [VariantSpec(), VariantSpec(kind, sg_skip=kind == "skip", sg_block=kind == "block")],
        loss="mse", at=[str(index)],
    )
    _assert_matches(baseline, reference(model, x, mse))
    setattr(model, f"detach_{kind}", {index})
    try:
        expected = reference(model, x, mse)
    finally:
        model.detach_skip, model.detach_block = set(), set()
    _assert_matches(stopped, expected)
    junction = stopped.junctions[index]
    assert (junction.grad_skip if kind == "skip" else junction.grad_block) == 0.0


@pytest.mark.parametrize("name", sorted(SKIPS))
def test_parameter_gradients_with_view_adds_match_autograd(name: str) -> None:
    model = _model(name)
    x = _inputs(name)
    report = gradflow.inspect(model, x, loss="mse")
    model.inplace = False
    try:
        loss = mse(model(x))
    finally:
        model.inplace = True
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(loss, params)
    for entry, grad in zip(report.parameters, grads):
        assert entry.grad_norm == pytest.approx(grad.norm().item(), rel=1e-5), entry.name
