"""Junctions whose paths share an operation with code outside them: a norm feeding two branches
(a parallel block added left to right), the halves of a split (coupling layers). Hooks on the edges into
the fork would read gradient from outside the path there, so gradflow takes such a path's
contribution by a backward pass of its own; every number is checked against autograd on the
model's own tensors."""

from __future__ import annotations

import math

import pytest
import torch

import gradflow
from gradflow.engine.junctions import find_junctions
from gradflow.engine.measure import VariantSpec, measure
from gradflow.track import track
from tests.fixtures import models
from tests.reference import reference
from tests.test_measure import METRICS, _inputs, mse


def _shared_flags(model: torch.nn.Module, x: torch.Tensor) -> list[tuple[bool, bool]]:
    params = [p for p in model.parameters() if p.requires_grad]
    loss = mse(model(x))
    return [j.shared for j in find_junctions([loss.grad_fn], params, [])]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (models.ParallelBlock(), [(False, False), (False, True), (False, False)]),
        (models.Coupling("chunk"), [(True, True)]),
        (models.Coupling("split"), [(True, True)]),
        (models.Coupling("slices"), [(False, True)]),
        (models.SmallResNet(), [(False, False), (False, False)]),
        (models.Nested(), [(False, False), (False, False)]),
    ],
    ids=["parallel", "chunk", "split", "slices", "resnet", "nested"],
)
def test_shared_sides_are_the_ones_carrying_outside_gradient(model, expected) -> None:  # type: ignore[no-untyped-def]
    name = type(model).__name__
    assert _shared_flags(model, _inputs(name)) == expected


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


@pytest.mark.parametrize("halves", ["chunk", "split", "slices"])
def test_coupling_layer_paths_match_autograd(halves: str) -> None:
    torch.manual_seed(0)
    model = models.Coupling(halves)
    x = _inputs("Coupling")
    report = gradflow.inspect(model, x, loss="mse")
    _assert_matches(report, reference(model, x, mse))
    (junction,) = report.junctions
    assert junction.grad_skip > 0 and junction.grad_block > 0


@pytest.mark.parametrize(("kind", "at"), [("skip", "0"), ("block", "0"), ("block", "1"), ("skip", "1")])
def test_stop_gradient_inside_and_on_a_shared_path(kind: str, at: str) -> None:
    """A stop at the junction inside the shared block (index 0) must hold in the shared block's
    own backward pass too; a stop on the shared junction itself (index 1) must leave it empty."""
    torch.manual_seed(0)
    model = models.ParallelBlock()
    x = _inputs("ParallelBlock")
    baseline, stopped = measure(
        model, x, [VariantSpec(), VariantSpec(kind, sg_skip=kind == "skip", sg_block=kind == "block")],
        loss="mse", at=[at],
    )
    _assert_matches(baseline, reference(model, x, mse))
    index = int(at)
    if kind == "skip":
        model.detach_skip = {index}
    else:
        model.detach_block = {index}
    try:
        expected = reference(model, x, mse)
    finally:
        model.detach_skip, model.detach_block = set(), set()
    _assert_matches(stopped, expected)
    stopped_junction = stopped.junctions[index]
    assert (stopped_junction.grad_skip if kind == "skip" else stopped_junction.grad_block) == 0.0


def test_the_report_says_which_junctions_took_a_pass_of_their_own() -> None:
    report = gradflow.inspect(models.ParallelBlock(), _inputs("ParallelBlock"), loss="mse")
    (note,) = [n for n in report.summary.notes if "backward pass of its own" in n]
    assert note.startswith("#1: ")
    plain = gradflow.inspect(models.SmallResNet(), _inputs("SmallResNet"), loss="mse")
    assert not [n for n in plain.summary.notes if "backward pass of its own" in n]


def test_track_measures_shared_paths_as_inspect_does() -> None:
    torch.manual_seed(0)
    model = models.ParallelBlock()
    x = _inputs("ParallelBlock")
    result = track(model, x, steps=1, loss="mse")
    expected = reference(model, x, mse)
    assert len(result.records) == len(expected)
    for record, ref in zip(result.records, expected):
        for metric in ("grad_out", "grad_skip", "grad_block", "grad_in", "cosine"):
            assert record.metric(metric) == pytest.approx(ref[metric], rel=1e-4, abs=1e-7), metric


def test_a_torch_without_gradient_edge_outputs_gets_one_clear_error(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import gradflow.engine.taps
    from gradflow.errors import ModelError

    monkeypatch.setattr(gradflow.engine.taps, "_edges_as_outputs", lambda: False)
    with pytest.raises(ModelError, match="torch 2.5 or later"):
        gradflow.inspect(models.ParallelBlock(), _inputs("ParallelBlock"), loss="mse")
    assert gradflow.inspect(models.SmallResNet(), _inputs("SmallResNet"), loss="mse").junctions
