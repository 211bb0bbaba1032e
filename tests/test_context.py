"""grad_context, the gradient a block sends to what it reads besides its fork, against plain
torch.autograd.grad; and `dead`, which asks that a block pass nothing back anywhere, so a
cross-attention block (weak at its fork, alive towards the encoder) is not dead."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradflow
from gradflow.testing import check_gradient_flow
from tests.fixtures import shapes

CROSS = 1  # the decoder's cross-attention junction (the encoder block is #0)


def _cross_reference(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Sum loss: the gradient at the cross-attention's add, what its block sends to the decoder
    stream (its fork) and to the encoder's states (its context)."""
    loss = model(x).sum()
    seen = model.seen
    (g_y,) = torch.autograd.grad(loss, seen["y"][CROSS], retain_graph=True)
    block, fork, memory = seen["block"][CROSS], seen["x"][CROSS], seen["memory"][0]
    to_fork, to_memory = torch.autograd.grad(block, [fork, memory], g_y, retain_graph=True)
    return {"grad_skip": g_y.norm().item(), "grad_block": to_fork.norm().item(),
            "grad_context": to_memory.norm().item()}


def test_cross_attention_numbers_match_autograd_and_it_is_not_dead() -> None:
    model, x = shapes.build_cross_attention(), shapes.example_input()
    expected = _cross_reference(model, x)
    assert expected["grad_block"] / expected["grad_skip"] < 1e-3  # weak at its fork, by design
    report = gradflow.inspect(model, x, loss="sum")
    cross = report.junctions[CROSS]
    assert cross.block_modules == ("cross",)
    for metric, value in expected.items():
        assert getattr(cross, metric) == pytest.approx(value, rel=1e-5), metric
    assert cross.context_ratio == pytest.approx(expected["grad_context"] / expected["grad_skip"], rel=1e-5)
    assert cross.status == "ok"
    assert [j.grad_context for j in report.junctions if j is not cross] == [None, None]
    assert any(note.startswith("#1: the block passes back below 0.001") for note in report.summary.notes)


def test_cross_attention_key_and_value_projections_learn_and_the_check_passes() -> None:
    model, x = shapes.build_cross_attention(), shapes.example_input()
    params = dict(model.named_parameters())
    grads = dict(zip(params, torch.autograd.grad(model(x).sum(), list(params.values()))))
    report = gradflow.inspect(model, x, loss="sum")
    by_name = {p.name: p for p in report.parameters}
    for name in ("cross.k.weight", "cross.v.weight", "cross.q.weight", "cross.o.weight"):
        assert grads[name].norm() > 0
        assert by_name[name].gradient == "ok"
        assert by_name[name].grad_norm == pytest.approx(grads[name].norm().item(), rel=1e-5)
    result = check_gradient_flow(model, x)
    assert result.passed, result.verdict()
    assert result.violations == ()


class SharedQuery(shapes.EncoderDecoder):
    """The cross-attention's normed input also feeds the output directly, so the block's path
    shares a node with code outside the junction: its contributions are taken by a backward pass
    of their own (`gradflow.engine.taps`), the context's with them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        handle = self.cross.norm.register_forward_hook(lambda m, a, out: captured.append(out))
        try:
            out = super().forward(x)
        finally:
            handle.remove()
        return out + 0.5 * captured[0].mean()


def test_the_context_of_a_shared_block_path_matches_autograd() -> None:
    torch.manual_seed(0)
    model, x = SharedQuery(), shapes.example_input()
    expected = _cross_reference(model, x)
    report = gradflow.inspect(model, x, loss="sum")
    cross = report.junctions[CROSS]
    assert any("shares an operation" in note and "#1" in note for note in report.summary.notes)
    for metric, value in expected.items():
        assert getattr(cross, metric) == pytest.approx(value, rel=1e-5), metric


class Conditioned(nn.Module):
    """Blocks modulated by a second model input, as a diffusion transformer's are by its
    conditioning: each block reads the condition, a probe input, besides its fork."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(shapes.Mlp() for _ in range(2))
        self.film = nn.ModuleList(nn.Linear(shapes.WIDTH, shapes.WIDTH) for _ in range(2))
        self.seen: dict[str, list[torch.Tensor]] = {}

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        self.seen = {"x": [], "block": [], "y": []}
        for block, film in zip(self.blocks, self.film):
            out = block(x) * film(condition)
            y = x + out
            self.seen["x"].append(x)
            self.seen["block"].append(out)
            self.seen["y"].append(y)
            x = y
        return x


def test_a_probe_input_read_by_the_block_is_context() -> None:
    torch.manual_seed(0)
    model = Conditioned()
    generator = torch.Generator().manual_seed(1)
    x, condition = (torch.randn(4, shapes.WIDTH, generator=generator) for _ in range(2))
    report = gradflow.inspect(model, (x, condition), loss="sum")
    cond = condition.clone().requires_grad_(True)
    loss = model(x.clone().requires_grad_(True), cond).sum()
    for k, junction in enumerate(report.junctions):
        fork, block = model.seen["x"][k], model.seen["block"][k]
        (g_y,) = torch.autograd.grad(loss, model.seen["y"][k], retain_graph=True)
        # All the block sends to the condition, less what goes there through its fork (which
        # earlier blocks made from the condition too).
        to_fork, sent = torch.autograd.grad(block, [fork, cond], g_y, retain_graph=True)
        if fork.grad_fn is not None:
            (through_fork,) = torch.autograd.grad(fork, cond, to_fork, retain_graph=True)
            sent = sent - through_fork
        assert junction.grad_context == pytest.approx(sent.norm().item(), rel=1e-5)


def test_a_block_behind_dead_relus_passes_nothing_back_and_is_dead() -> None:
    model, x = shapes.build_dead_relu(), shapes.example_input()
    loss = model(x).sum()
    seen = model.seen
    (g_y,) = torch.autograd.grad(loss, seen["y"][1], retain_graph=True)
    (to_fork,) = torch.autograd.grad(seen["block"][1], seen["x"][1], g_y, retain_graph=True)
    assert not to_fork.any()
    report = gradflow.inspect(model, x, loss="sum")
    dead = report.junctions[1]
    assert (dead.block_ratio, dead.grad_context, dead.status) == (0.0, None, "dead")
    zero = {p.name for p in report.parameters if p.gradient == "zero"}
    assert zero == {"blocks.1.fc1.weight", "blocks.1.fc1.bias", "blocks.1.fc2.weight"}


def test_a_fork_at_a_leaf_is_not_its_own_context() -> None:
    """On a graph whose fork is a leaf (inspect gives the model clones of its inputs, so this
    arises only where a caller searches the graph itself): the edge into the fork is the fork."""
    from gradflow.engine.context import contexts_of
    from gradflow.engine.junctions import all_nodes, find_junctions

    torch.manual_seed(0)
    model = Conditioned()
    x, condition = (torch.randn(4, shapes.WIDTH).requires_grad_() for _ in range(2))
    loss = model(x, condition).sum()
    params = list(model.parameters())
    uses: dict = {}
    nodes = all_nodes([loss.grad_fn], uses)
    found = find_junctions([loss.grad_fn], params, [x, condition], nodes=nodes, uses=uses)
    assert found[0].fork.variable is x
    read = [edge.read[0] for edge in contexts_of(found, [0], params)[0]]
    assert [node.variable for node in read] == [condition]
