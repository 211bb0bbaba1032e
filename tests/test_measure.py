"""Every metric of every junction against plain torch.autograd.grad on the model's own tensors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import gradflow
import gradflow.engine.norms
from tests.fixtures import models
from tests.reference import reference


def line_of(text: str) -> str:
    """`models.py:N` of the first line of tests/fixtures/models.py containing `text`."""
    lines = Path(models.__file__).read_text().splitlines()
    return f"models.py:{next(i for i, line in enumerate(lines, 1) if text in line)}"


METRICS = ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad", "cosine")


def mse(out):  # type: ignore[no-untyped-def]
    if isinstance(out, dict):
        out = out["logits"]
    if isinstance(out, tuple):
        out = out[1]
    return out.float().pow(2).mean()


def _inputs(name: str):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(1)
    if name == "SmallResNet":
        return torch.randn(4, 3, 8, 8, generator=g)
    if name == "InputFork":
        return torch.randn(3, 6, generator=g)
    if name == "Nested":
        return torch.randn(3, 4, generator=g)
    if name == "Shared":
        return torch.randn(3, 6, generator=g)
    if name == "TokenModel":
        return (torch.randint(0, 50, (2, 7), generator=g), torch.randint(0, 2, (2, 7), generator=g))
    if name == "TupleOut":
        return torch.randn(3, 5, generator=g)
    if name == "ParallelBlock":
        return torch.randn(4, 5, generator=g)
    if name == "Coupling":
        return torch.randn(4, 4, generator=g)
    raise KeyError(name)


CASES = {
    "SmallResNet": ["identity", "projection"],
    "InputFork": ["identity", "identity"],
    "Nested": ["identity", "identity"],
    "Shared": ["identity", "identity"],
    "TokenModel": ["identity", "identity"],
    "TupleOut": ["identity"],
    "ParallelBlock": ["identity", "identity", "projection"],
    "Coupling": ["projection"],
}


@pytest.mark.parametrize("held", ["together", "one at a time"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_metrics_match_autograd(name: str, held: str, monkeypatch) -> None:
    """Norms and dot products are taken in batches (see gradflow.engine.norms.NormBatch); a budget of 0
    bytes flushes at every gradient, so both paths are checked."""
    if held == "one at a time":
        monkeypatch.setattr(gradflow.engine.norms, "budget", lambda device: 0)
    torch.manual_seed(0)
    model = getattr(models, name)()
    inputs = _inputs(name)
    report = gradflow.inspect(model, inputs, loss="mse")
    expected = reference(model, inputs, mse)
    assert [j.skip for j in report.junctions] == CASES[name]
    assert len(report.junctions) == len(expected)
    for junction, ref in zip(report.junctions, expected):
        for metric in METRICS:
            got = getattr(junction, metric)
            assert got is not None, (junction.name, metric)
            assert math.isclose(got, ref[metric], rel_tol=1e-4, abs_tol=1e-7), (
                junction.name, metric, got, ref[metric])
        assert junction.block_ratio == pytest.approx(ref["grad_block"] / ref["grad_skip"], rel=1e-4)


def test_identity_skip_carries_grad_out() -> None:
    model = models.SmallResNet()
    report = gradflow.inspect(model, _inputs("SmallResNet"), loss="mse")
    first = report.junctions[0]
    assert first.skip == "identity"
    assert first.grad_skip == pytest.approx(first.grad_out, rel=1e-6)


def test_fork_at_model_input_is_found() -> None:
    report = gradflow.inspect(models.InputFork(), _inputs("InputFork"), loss="mse")
    assert len(report.junctions) == 2
    assert report.junctions[0].module == ""


def test_one_module_twice_gives_two_junctions_with_distinct_names() -> None:
    report = gradflow.inspect(models.Shared(), _inputs("Shared"), loss="mse")
    names = [j.name for j in report.junctions]
    assert names == ["#0", "#1"]
    assert all(j.block_modules == ("block",) for j in report.junctions)


def test_no_false_positives_on_bias_position_mask_gelu_and_embedding_adds() -> None:
    report = gradflow.inspect(models.TokenModel(), _inputs("TokenModel"), loss="mse")
    # Only the attention and MLP residuals; not the embedding sum, positional, mask, GELU or bias adds.
    assert len(report.junctions) == 2
    locations = [j.location for j in report.junctions]
    assert all(loc and loc.endswith(line_of("y = skip + block")) for loc in locations), locations


def test_names_modules_and_locations_follow_the_forward() -> None:
    report = gradflow.inspect(models.SmallResNet(), _inputs("SmallResNet"), loss="mse")
    assert [j.name for j in report.junctions] == ["b1", "b2"]
    assert report.junctions[1].skip_modules == ("b2.downsample",)
    # The block's own forward runs torch.relu on the block path, so the block is listed whole.
    assert report.junctions[0].block_modules == ("b1",)
    assert report.junctions[0].location.endswith(line_of("y += identity"))


def test_param_gradients_match_autograd() -> None:
    torch.manual_seed(0)
    model = models.SmallResNet()
    x = _inputs("SmallResNet")
    report = gradflow.inspect(model, x, loss="mse")
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(mse(model(x)), list(params.values()))
    for entry, grad in zip(report.parameters, grads):
        assert entry.grad_norm == pytest.approx(grad.norm().item(), rel=1e-4)
    assert report.model.parameters == sum(p.numel() for p in params.values())


def test_plain_network_has_no_junctions() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    report = gradflow.inspect(model, torch.randn(3, 4))
    assert report.junctions == ()
    assert report.summary.junctions == 0
    assert report.summary.survival is None


def test_summary_survival_is_first_grad_in_over_last_grad_out() -> None:
    report = gradflow.inspect(models.SmallResNet(), _inputs("SmallResNet"), loss="mse")
    first, last = report.junctions[0], report.junctions[-1]
    assert report.summary.survival == pytest.approx(first.grad_in / last.grad_out)


def test_loss_kinds_follow_their_definitions() -> None:
    model = models.TupleOut()
    x = _inputs("TupleOut")
    for kind, fn in {
        "sum": lambda o: o[1].sum(),
        "mean": lambda o: o[1].mean(),
        "mse": lambda o: o[1].pow(2).mean(),
    }.items():
        report = gradflow.inspect(model, x, loss=kind)
        assert report.summary.loss == pytest.approx(fn(model(x)).item(), rel=1e-6)
        ref = reference(model, x, fn)
        assert report.junctions[0].grad_in == pytest.approx(ref[0]["grad_in"], rel=1e-5)


def test_auto_loss_picks_ce_for_class_scores_and_mse_otherwise() -> None:
    assert gradflow.inspect(models.TupleOut(), _inputs("TupleOut")).probe.loss == "ce"
    flat = torch.nn.Sequential(torch.nn.Linear(4, 1))
    assert gradflow.inspect(flat, torch.randn(3, 4)).probe.loss == "mse"


def test_ce_loss_uses_seeded_labels() -> None:
    model = models.TupleOut()
    x = _inputs("TupleOut")
    a = gradflow.inspect(model, x, loss="ce", seed=3)
    b = gradflow.inspect(model, x, loss="ce", seed=3)
    c = gradflow.inspect(model, x, loss="ce", seed=4)
    assert a.summary.loss == b.summary.loss
    assert a.summary.loss != c.summary.loss


def test_float64_model_matches_autograd() -> None:
    """Norms of float64 gradients keep float64 precision (a float32 accumulator would refuse)."""
    torch.manual_seed(0)
    model = models.SmallResNet().double()
    x = _inputs("SmallResNet").double()
    report = gradflow.inspect(model, x, loss="mse")
    expected = reference(model, x, mse)
    for junction, ref in zip(report.junctions, expected):
        for metric in METRICS:
            assert getattr(junction, metric) == pytest.approx(ref[metric], rel=1e-6, abs=1e-12), (junction.name, metric)


class _WritesIntoInput(torch.nn.Module):
    """Scales its input in place, then forks at it: y = x + f(x)."""

    def __init__(self) -> None:
        super().__init__()
        self.f = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.mul_(0.5)
        self.fork = x
        self.y = x + self.f(x)
        return self.y


def test_a_model_that_writes_into_its_input_is_measured_and_the_input_kept() -> None:
    model = _WritesIntoInput()
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(3))
    kept = x.clone()
    (junction,) = gradflow.inspect(model, x, loss="sum").junctions
    assert torch.equal(x, kept)
    loss = model(x.clone().requires_grad_() * 1).sum()  # a non-leaf copy, as a training step passes
    g_y, g_fork = torch.autograd.grad(loss, [model.y, model.fork])
    assert junction.grad_out == pytest.approx(g_y.norm().item(), rel=1e-5)
    assert junction.grad_in == pytest.approx(g_fork.norm().item(), rel=1e-5)


class _Subtracts(torch.nn.Module):
    """y = x - f(x), and the same written as an add, x + (-f(x))."""

    def __init__(self, as_add: bool) -> None:
        super().__init__()
        self.as_add = as_add
        self.inp = torch.nn.Linear(4, 4)
        self.f = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.inp(x))
        self.fork = x
        y = x + (-self.f(x)) if self.as_add else x - self.f(x)
        return y - y.mean()  # a subtraction, but not a junction: no parameter on either side


def test_a_subtraction_shaped_like_a_junction_is_counted_in_a_note() -> None:
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(4))
    report = gradflow.inspect(_Subtracts(as_add=False), x, loss="sum")
    assert report.junctions == ()
    (note,) = [n for n in report.summary.notes if "subtraction" in n]
    assert note.startswith("1 subtraction(s) have the shape of a junction")  # not y - y.mean()
    model = _Subtracts(as_add=True)
    (junction,) = gradflow.inspect(model, x, loss="mse").junctions
    out = model(x)
    (g_fork,) = torch.autograd.grad(out.pow(2).mean(), model.fork)
    assert g_fork.norm() > 0
    assert junction.grad_in == pytest.approx(g_fork.norm().item(), rel=1e-5)
    for name in CASES:
        notes = gradflow.inspect(getattr(models, name)(), _inputs(name), loss="mse").summary.notes
        assert not [n for n in notes if "subtraction" in n], name


class _MaskedAttention(torch.nn.Module):
    """scaled_dot_product_attention with a mask computed from the input: the kernel adds the
    mask to the scores in torch's own code, where no add wrapper sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = (torch.nn.Linear(8, 8) for _ in range(3))
        self.bias = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias(x)
        mask = torch.einsum("bti,bsi->bts", b, b).unsqueeze(1)
        q, k, v = (f(x).unsqueeze(1) for f in (self.q, self.k, self.v))
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask).squeeze(1)


class _WithMaskedAttention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(8, 8)
        self.attn = _MaskedAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        return h + self.attn(h)


def test_an_add_inside_torch_code_is_named_after_the_module_holding_its_branches() -> None:
    report = gradflow.inspect(_WithMaskedAttention(), torch.randn(2, 5, 8), loss="sum")
    inside, residual = report.junctions
    assert (inside.name, inside.module, inside.location) == ("attn", "attn", None)
    # attn's own forward runs operations on both paths (einsum, unsqueeze): it is listed whole.
    assert (inside.block_modules, inside.skip_modules) == (("attn",), ("attn",))
    assert residual.name == "#0" and residual.location and "test_measure.py:" in residual.location


class _HandsOnBias(torch.nn.Module):
    """Makes a bias in its first call and hands it on, as T5's blocks hand on the position bias."""

    def __init__(self) -> None:
        super().__init__()
        self.f = torch.nn.Linear(6, 6)
        self.make = torch.nn.Linear(6, 6)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None):  # type: ignore[no-untyped-def]
        if bias is None:
            bias = torch.tanh(self.make(x))
        return x + self.f(x) * bias, bias


class _TwoBlocksOneBias(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.b0, self.b1 = _HandsOnBias(), _HandsOnBias()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, bias = self.b0(x)
        h, _ = self.b1(h, bias)
        return h


def test_a_tensor_handed_on_belongs_to_the_module_that_made_it() -> None:
    report = gradflow.inspect(_TwoBlocksOneBias(), torch.randn(3, 6), loss="sum")
    # Each block multiplies by the bias in its own forward, so each is listed whole; b1's block
    # does not list b0, which made the bias.
    assert [(j.name, j.block_modules) for j in report.junctions] == [("b0", ("b0",)), ("b1", ("b1",))]


@pytest.mark.parametrize("seed", [0, 7])
def test_dropout_draws_the_masks_of_the_probe_seed(seed: int) -> None:
    """The probe seeds the generator dropout draws from, as torch.manual_seed(seed) would: the
    reference, seeded that way, sees the same masks."""
    torch.manual_seed(0)
    model = models.DropoutBlock()
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(2))
    report = gradflow.inspect(model, x, loss="mse", mode="train", seed=seed)
    torch.manual_seed(seed)
    (expected,) = reference(model.train(), x, mse)
    (junction,) = report.junctions
    for metric in METRICS:
        assert getattr(junction, metric) == pytest.approx(expected[metric], rel=1e-5, abs=1e-8), metric
    other = gradflow.inspect(model, x, loss="mse", mode="train", seed=seed + 1).junctions[0]
    assert other.grad_block != pytest.approx(junction.grad_block, rel=1e-3)
