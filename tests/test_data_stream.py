"""A junction's fork is part of the data stream: an add that joins the data with a tensor made from
parameters alone (a relative position bias one layer makes and every later layer adds to its
attention scores) is no junction, while a fork that is an embedding of token ids, a tensor
computed from the input under `torch.no_grad()`, or a detached copy of the data is one. Data-ness
is decided by value dependence in the forward pass; every remaining junction's numbers are checked
against plain autograd on the model's own tensors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import gradflow
from tests.fixtures.models import LoggingModel
from tests.reference import reference
from tests.test_measure import METRICS, mse


class RelativeAttention(nn.Module):
    """Self-attention with a relative position bias made, in the first layer only, from a table
    and `arange` of the sequence length; every layer adds the bias it is handed (as T5 does)."""

    def __init__(self, d: int, makes_bias: bool) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.table = nn.Embedding(16, 1) if makes_bias else None

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if bias is None:
            assert self.table is not None
            positions = torch.arange(x.shape[1], device=x.device)
            bias = self.table(positions[None, :] - positions[:, None] + 8).squeeze(-1)
        scores = self.q(x) @ self.k(x).transpose(1, 2) / math.sqrt(x.shape[-1])
        scores = scores + bias  # joins the data with the bias: not a junction
        return torch.softmax(scores, -1) @ self.v(x), bias


class RelativeEncoder(LoggingModel):
    def __init__(self, d: int = 8, layers: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(30, d)
        self.attn = nn.ModuleList(RelativeAttention(d, i == 0) for i in range(layers))
        self.mlp = nn.ModuleList(nn.Sequential(nn.Linear(d, 2 * d), nn.Tanh(), nn.Linear(2 * d, d)) for _ in range(layers))
        self.head = nn.Linear(d, 5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.log = []
        h = self.embed(ids)
        bias = None
        for attn, mlp in zip(self.attn, self.mlp):
            out, bias = attn(h, bias)
            # Layer 0's block makes the bias; later layers get it made before their fork.
            h = self.junction(h, h, out, attn.parameters())
            h = self.junction(h, h, mlp(h), mlp.parameters())
        return self.head(h)


class EmbeddingFork(LoggingModel):
    """A decoder whose first fork is an embedding of ids (its only autograd leaf is the weight),
    looked up directly, after integer arithmetic on the ids, or as a one-hot product; its first
    block attends to float encoder states, so data reaches that add from the probe's float input
    too, and the fork must be known to be data to be kept."""

    def __init__(self, lookup: str) -> None:
        super().__init__()
        self.lookup = lookup
        self.embed = nn.Embedding(30, 8)
        self.f = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8))
        self.memory = nn.Linear(5, 8)
        self.g = nn.Linear(8, 8)
        self.head = nn.Linear(8, 30)

    def cross(self, h: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        keys = self.memory(encoded)
        return torch.softmax(self.f(h) @ keys.transpose(1, 2), -1) @ keys

    def forward(self, ids: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        self.log = []
        if self.lookup == "direct":
            h = self.embed(ids)
        elif self.lookup == "arithmetic":
            h = self.embed((ids.view(-1) + 3) % 30).view(*ids.shape, -1)
        else:
            h = nn.functional.one_hot(ids, 30).float() @ self.embed.weight
        h = self.junction(h, h, self.cross(h, encoded), [*self.f.parameters(), *self.memory.parameters()])
        h = self.junction(h, h, torch.tanh(self.g(h)), self.g.parameters())
        return self.head(h)


class FrozenBackbone(LoggingModel):
    """Features from the input under torch.no_grad() (or a detached copy of them), a trainable
    projection, then a residual block gated by the input: the fork is data though autograd never
    saw the input on its way there."""

    def __init__(self, cut: str) -> None:
        super().__init__()
        self.cut = cut
        self.backbone = nn.Linear(5, 6)
        self.proj = nn.Linear(6, 6)
        self.block = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 6))
        self.gate = nn.Linear(5, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log = []
        if self.cut == "no_grad":
            with torch.no_grad():
                features = self.backbone(x)
        else:
            features = torch.tanh(self.backbone(x)).detach()
        h = self.proj(features)
        gated = self.block(h) * torch.sigmoid(self.gate(x))
        h = self.junction(h, h, gated, [*self.block.parameters(), *self.gate.parameters()])
        return self.head(h)


def _ids() -> torch.Tensor:
    return torch.randint(0, 30, (2, 6), generator=torch.Generator().manual_seed(0))


def _assert_matches(report, expected) -> None:  # type: ignore[no-untyped-def]
    assert len(report.junctions) == len(expected)
    for junction, ref in zip(report.junctions, expected):
        for metric in METRICS:
            got = getattr(junction, metric)
            assert got is not None, (junction.name, metric)
            assert math.isclose(got, ref[metric], rel_tol=1e-4, abs_tol=1e-7), (junction.name, metric, got, ref[metric])


def test_an_add_of_a_bias_made_from_parameters_and_positions_is_no_junction() -> None:
    torch.manual_seed(0)
    model = RelativeEncoder()
    report = gradflow.inspect(model, _ids(), loss="mse")
    # Two residuals per layer; without value tracking, layers 1 and 2 add one each, forking at the bias.
    assert [j.name for j in report.junctions] == ["#0", "#1", "#2", "#3", "#4", "#5"]
    _assert_matches(report, reference(model, _ids(), mse))


@pytest.mark.parametrize("lookup", ["direct", "arithmetic", "one_hot"])
def test_a_decoder_whose_first_fork_is_an_embedding_of_ids_keeps_it(lookup: str) -> None:
    torch.manual_seed(0)
    model = EmbeddingFork(lookup)
    inputs = (_ids(), torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(1)))
    report = gradflow.inspect(model, inputs, loss="mse")
    _assert_matches(report, reference(model, inputs, mse))  # both junctions, the first at the embedding


@pytest.mark.parametrize("cut", ["no_grad", "detach"])
def test_a_fork_computed_from_the_input_outside_autograd_is_data(cut: str) -> None:
    torch.manual_seed(0)
    model = FrozenBackbone(cut)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    report = gradflow.inspect(model, x, loss="mse")
    _assert_matches(report, reference(model, x, mse))


class _ScriptedDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(30, 8)
        self.f = nn.Linear(8, 8)
        self.head = nn.Linear(8, 30)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        h = h + self.f(h)
        return self.head(h)


def test_torchscript_keeps_every_fork_where_values_are_not_tracked() -> None:
    """A scripted module runs outside torch's Python API, so values are not tracked there: every
    fork counts, as before tracking existed, and the embedding's junction is kept."""
    model = torch.jit.script(_ScriptedDecoder())
    (junction,) = gradflow.inspect(model, _ids(), loss="mse").junctions
    assert junction.skip == "identity" and junction.params == 8 * 8 + 8


def test_the_model_gets_plain_tensors_after_its_first_recorded_operation() -> None:
    """Only the probe's own tensors and what autograd does not record are tracked."""
    seen: list[type] = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(30, 4)
            self.f = nn.Linear(4, 4)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            h = self.embed(ids + 1)
            seen.extend([type(ids + 1), type(h)])
            return h + self.f(h)

    gradflow.inspect(Probe(), _ids(), loss="sum")
    tracked, plain = seen
    assert tracked is not torch.Tensor and issubclass(tracked, torch.Tensor)
    assert plain is torch.Tensor
