"""`block_modules` and `skip_modules` name what each path runs: the minimal set of non-nested
modules, in forward order, such that every operation on the path runs inside one of them. A
module whose own forward runs a path operation is listed whole; a sub-layer's junction never lists
its parent layer. `param_grad` is checked against autograd over exactly the listed modules'
parameters."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import gradflow


class Attention(nn.Module):
    def __init__(self, d: int, relative: bool = False) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.rel = nn.Embedding(32, 1) if relative else None

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """With a relative position table, the first call makes the bias and every call returns it,
        as T5's attention does."""
        scores = self.q(x) @ self.k(x).transpose(1, 2) / math.sqrt(x.shape[-1])
        if self.rel is not None and bias is None:
            positions = torch.arange(x.shape[1])
            bias = self.rel(positions[None, :] - positions[:, None] + 16).squeeze(-1)
        if bias is not None:
            scores = scores + bias
        return self.o(torch.softmax(scores, -1) @ self.v(x)), bias


class GatedMLP(nn.Module):
    """A Llama-style MLP: its own forward multiplies the gate by the up projection."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(d, 2 * d), nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(nn.functional.silu(self.gate(x)) * self.up(x))


class Layer(nn.Module):
    """A pre-norm layer: x + attn(ln_1(x)), then x + mlp(ln_2(x)); its own forward runs only the
    two adds. It hands on the attention's position bias, as T5's blocks do."""

    def __init__(self, d: int, relative: bool = False) -> None:
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(d), Attention(d, relative)
        self.ln_2, self.mlp = nn.LayerNorm(d), GatedMLP(d)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        out, bias = self.attn(self.ln_1(x), bias)
        x = x + out
        return x + self.mlp(self.ln_2(x)), bias


class Decoder(nn.Module):
    def __init__(self, d: int = 8, relative: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, d)
        self.layers = nn.ModuleList(Layer(d, relative) for _ in range(2))
        self.ffn = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d))  # a block in a Sequential
        self.head = nn.Linear(d, 20)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        bias = None
        for layer in self.layers:
            h, bias = layer(h, bias)
        h = h + self.ffn(h)
        return self.head(h)


def test_a_sublayer_lists_what_it_runs_and_never_its_parent_layer() -> None:
    torch.manual_seed(0)
    model = Decoder()
    report = gradflow.inspect(model, torch.randint(0, 20, (2, 5)), loss="mse")
    assert [(j.name, j.block_modules, j.skip_modules) for j in report.junctions] == [
        ("layers.0#0", ("layers.0.ln_1", "layers.0.attn"), ()),
        ("layers.0#1", ("layers.0.ln_2", "layers.0.mlp"), ()),
        ("layers.1#0", ("layers.1.ln_1", "layers.1.attn"), ()),
        ("layers.1#1", ("layers.1.ln_2", "layers.1.mlp"), ()),
        # Every operation the Sequential ran lies on the path: it stands for its children.
        ("#0", ("ffn",), ()),
    ]


def test_a_sublayer_that_makes_a_tensor_its_layer_hands_on_lists_the_sublayer() -> None:
    """Layer 0's attention makes the position bias, which the layer returns: the bias's operations
    ran inside the attention, so the junction lists it, not the whole layer."""
    torch.manual_seed(0)
    report = gradflow.inspect(Decoder(relative=True), torch.randint(0, 20, (2, 5)), loss="mse")
    first = report.junction("layers.0#0")
    assert first.block_modules == ("layers.0.ln_1", "layers.0.attn")


@pytest.mark.parametrize("relative", [False, True])
def test_param_grad_is_autograd_over_the_listed_modules_parameters(relative: bool) -> None:
    torch.manual_seed(0)
    model = Decoder(relative=relative)
    ids = torch.randint(0, 20, (2, 5))
    report = gradflow.inspect(model, ids, loss="mse")
    loss = model(ids).float().pow(2).mean()
    names, params = zip(*model.named_parameters())
    grads = {n: torch.zeros_like(p) if g is None else g
             for n, p, g in zip(names, params, torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))}
    used = {n for n, p, g in zip(names, params, torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))
            if g is not None}  # layer 1's position table is never used
    for junction in report.junctions:
        own = [n for n in names if n in used and any(n.startswith(m + ".") for m in junction.block_modules)]
        assert junction.params == sum(model.get_parameter(n).numel() for n in own), junction.name
        expected = math.sqrt(sum(grads[n].pow(2).sum().item() for n in own))
        assert junction.param_grad == pytest.approx(expected, rel=1e-5), junction.name


class ProjectionBlock(nn.Module):
    """A block whose skip is a projection in a submodule and whose own forward scales the block
    path: the block is listed whole (it runs a path operation), the skip by its submodule."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(6, 4)
        self.proj = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) + 0.5 * self.f(x)


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(3, 6)
        self.block = ProjectionBlock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(torch.tanh(self.inp(x)))


def test_a_module_running_a_path_operation_itself_is_listed_whole() -> None:
    (junction,) = gradflow.inspect(Outer(), torch.randn(4, 3), loss="mse").junctions
    assert (junction.block_modules, junction.skip_modules) == (("block",), ("block.proj",))


class Mix(nn.Module):
    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x @ weight


class TakesAWeight(nn.Module):
    """The block multiplies by a table's weight without calling the table (as DeBERTa's layers
    use the encoder's relative embeddings): the table holds a block parameter, so it is listed."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(6, 6)
        self.mix = Mix()
        self.table = nn.Embedding(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(x)
        return x + self.mix(self.f(x), self.table.weight)


def test_the_module_of_a_weight_an_operation_takes_directly_is_listed() -> None:
    (junction,) = gradflow.inspect(TakesAWeight(), torch.randn(4, 6), loss="mse").junctions
    assert junction.block_modules == ("f", "mix", "table")
    assert junction.params == 6 * 6 + 6 + 6 * 6
