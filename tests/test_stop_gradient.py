"""Stop-gradient equals a model rewritten by hand with .detach() on the chosen branch."""

from __future__ import annotations

import pytest
import torch

import gradflow
from gradflow.errors import OptionError
from tests.fixtures import models
from tests.test_measure import _inputs, mse


def _hand_detached(model, inputs, skip: set[int], block: set[int]):  # type: ignore[no-untyped-def]
    """Parameter-gradient norms and per-junction ||dL/dx|| of the hand-rewritten model."""
    model.inplace, model.detach_skip, model.detach_block = False, skip, block
    try:
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        args = tuple(a.detach().clone().requires_grad_(a.is_floating_point()) for a in args)
        loss = mse(model(*args))
        params = list(model.parameters())
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        grad_in = []
        for rec in model.log:
            (g,) = torch.autograd.grad(loss, rec.x, retain_graph=True, allow_unused=True)
            grad_in.append(0.0 if g is None else g.norm().item())
        norms = [0.0 if g is None else g.norm().item() for g in grads]
        return norms, grad_in, loss.item()
    finally:
        model.inplace, model.detach_skip, model.detach_block = True, set(), set()


CASES = [
    ("SmallResNet", None), ("SmallResNet", ["1"]), ("SmallResNet", ["b1"]),
    ("Nested", None), ("Nested", ["0"]), ("TokenModel", None), ("Shared", ["#1"]),
    ("InputFork", None),
]


@pytest.mark.parametrize("kind", ["skip", "block"])
@pytest.mark.parametrize(("name", "at"), CASES)
def test_stop_gradient_equals_hand_detached_model(name: str, at: list[str] | None, kind: str) -> None:
    torch.manual_seed(0)
    model = getattr(models, name)()
    x = _inputs(name)
    report = gradflow.inspect(model, x, loss="mse", sg_skip=kind == "skip", sg_block=kind == "block", at=at)
    stopped = set(getattr(report.stop_gradient, kind))
    indices = {j.index for j in report.junctions if j.name in stopped}
    assert indices and (at is not None or len(indices) == len(report.junctions))
    norms, grad_in, loss = _hand_detached(
        model, x, indices if kind == "skip" else set(), indices if kind == "block" else set()
    )
    assert report.summary.loss == pytest.approx(loss, rel=1e-6)
    for entry, expected in zip(report.parameters, norms):
        got = entry.grad_norm if entry.has_grad else 0.0
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-8), entry.name
    for junction, expected in zip(report.junctions, grad_in):
        assert junction.grad_in == pytest.approx(expected, rel=1e-4, abs=1e-8), junction.name
    for junction in report.junctions:
        if junction.index in indices and kind == "skip":
            assert junction.grad_skip == 0.0
        if junction.index in indices and kind == "block":
            assert junction.grad_block == 0.0
            assert junction.status in ("dead", "vanishing")


def test_forward_is_identical_with_and_without_stop_gradient() -> None:
    model = models.SmallResNet()
    x = _inputs("SmallResNet")
    outputs = []
    handle = model.register_forward_hook(lambda m, a, out: outputs.append(out.detach().clone()))
    try:
        base = gradflow.inspect(model, x)
        stopped = gradflow.inspect(model, x, sg_skip=True, sg_block=True)
    finally:
        handle.remove()
    assert torch.equal(outputs[0], outputs[1])
    assert base.summary.loss == stopped.summary.loss


def test_sg_block_removes_the_blocks_parameter_gradient() -> None:
    model = models.Shared()  # one block used by two junctions
    x = _inputs("Shared")
    both = gradflow.inspect(model, x, loss="mse", sg_block=True)
    assert all(not p.has_grad or p.grad_norm == 0.0 for p in both.parameters)
    one = gradflow.inspect(model, x, loss="mse", sg_block=True, at=["#0"])
    assert all(p.has_grad and p.grad_norm > 0 for p in one.parameters)  # still trained by #1


def test_at_that_matches_nothing_lists_the_junctions() -> None:
    with pytest.raises(OptionError, match=r"--at 'layer9\.\*' matches no junction; give an index \(3\), a range .*; junctions are: b1, b2"):
        gradflow.inspect(models.SmallResNet(), _inputs("SmallResNet"), sg_skip=True, at=["layer9.*"])


@pytest.mark.parametrize(("pattern", "expected"), [("0", [0]), ("-1", [1]), ("0:2", [0, 1]), (":1", [0]), ("b*", [0, 1])])
def test_at_indices_ranges_and_globs(pattern: str, expected: list[int]) -> None:
    from gradflow.engine.select import select

    assert select([pattern], ["b1", "b2"]) == expected


def test_deep_mlp_sg_skip_ratio_matches_a_hand_detached_reference() -> None:
    """Stopping every skip of the 48-block MLP: the tool's ratio at the first junction equals the
    ratio computed with plain autograd on a hand-written copy, and is orders of magnitude small."""
    from tests.test_cli_inspect import _load_sample

    sample = _load_sample("deep_mlp")
    model, x = sample.build(), sample.example_input()
    base = gradflow.inspect(model, x, loss="mse")
    stopped = gradflow.inspect(model, x, loss="mse", sg_skip=True)
    measured = stopped.junctions[0].grad_in / base.junctions[0].grad_in

    def grad_at_input(detach: bool) -> float:
        h = x.clone().double().requires_grad_(True)  # float64: the stopped gradient underflows float32
        u = h
        for block in model.blocks:
            f = block.fc2.double()(torch.relu(block.fc1.double()(u)))
            u = (u.detach() if detach else u) + f
        out = model.head.double()(u)
        (g,) = torch.autograd.grad(out.pow(2).mean(), h)
        model.float()
        return g.norm().item()

    expected = grad_at_input(True) / grad_at_input(False)
    assert expected < 1e-6  # orders of magnitude: the block path alone barely reaches the input
    assert measured < 1e-6
    if expected > 1e-30:  # float32 keeps it: then the ratios agree
        assert measured == pytest.approx(expected, rel=1e-2)
