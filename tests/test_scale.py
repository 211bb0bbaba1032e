"""Devices, precision, large models: meta-device listing, autocast, checkpointing, sampling, and
hooks that never synchronise with the host."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import gradflow
from gradflow.engine.measure import locate, measure
from tests.conftest import ROOT, SAMPLES
from tests.fixtures import models
from tests.test_cli_inspect import _load_sample
from tests.test_measure import _inputs
from tests.test_stop_gradient import _hand_detached


def test_meta_device_lists_a_7b_llama_without_weights() -> None:
    pytest.importorskip("transformers")
    from gradflow.loaders import load_source

    loaded = load_source(str(ROOT / "tests" / "fixtures" / "llama7b.py"), meta=True)
    params = list(loaded.module.parameters())
    assert all(p.is_meta for p in params)
    assert sum(p.numel() for p in params) > 6.5e9
    found = locate(loaded.module, torch.zeros(1, 16, dtype=torch.long))
    assert len(found) == 64  # attention and MLP residual in each of 32 layers
    assert found[0].name == "model.layers.0#0" and found[1].name == "model.layers.0#1"
    assert found[1].block_modules == ("model.layers.0.post_attention_layernorm", "model.layers.0.mlp")


def test_meta_device_refuses_a_checkpoint_without_code(gradflow_cli, tmp_path) -> None:
    torch.save({"w": torch.zeros(2)}, tmp_path / "sd.pt")
    result = gradflow_cli("blocks", tmp_path / "sd.pt", "--device", "meta")
    assert result.exit_code == 2
    assert "--device meta builds the model from code" in result.stderr


class Checkpointed(nn.Module):
    def __init__(self, reentrant: bool | None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8)) for _ in range(3))
        self.reentrant = reentrant

    def forward(self, x):  # type: ignore[no-untyped-def]
        for block in self.blocks:
            if self.reentrant is None:
                x = x + block(x)
            else:
                x = checkpoint(lambda u, b=block: u + b(u), x, use_reentrant=self.reentrant)
        return x


def test_non_reentrant_checkpoint_gives_the_same_report() -> None:
    x = torch.randn(4, 8)
    plain = gradflow.inspect(Checkpointed(None), x, loss="mse")
    ckpt = gradflow.inspect(Checkpointed(False), x, loss="mse")
    assert len(ckpt.junctions) == len(plain.junctions) == 3
    for a, b in zip(plain.junctions, ckpt.junctions):
        for metric in ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad"):
            assert getattr(b, metric) == pytest.approx(getattr(a, metric), rel=1e-5)


def test_reentrant_checkpoint_is_refused_plainly() -> None:
    with pytest.raises(gradflow.errors.ModelError, match=r"use_reentrant=False"):
        gradflow.inspect(Checkpointed(True), torch.randn(4, 8), loss="mse")


def test_bfloat16_autocast_is_close_to_float32() -> None:
    model = _load_sample("tiny_resnet").build()
    x = _load_sample("tiny_resnet").example_input()
    full = gradflow.inspect(model, x, mode="eval")
    (half,) = measure(model, x, mode="eval", dtype="bfloat16")
    assert [j.name for j in half.junctions] == [j.name for j in full.junctions]
    for a, b in zip(full.junctions, half.junctions):
        for metric in ("grad_out", "grad_skip", "grad_block", "grad_in"):
            assert getattr(b, metric) == pytest.approx(getattr(a, metric), rel=0.1), (a.name, metric)


def test_max_junctions_samples_evenly_and_measures_the_same_numbers() -> None:
    sample = _load_sample("deep_mlp")
    model, x = sample.build(), sample.example_input()
    full = gradflow.inspect(model, x)
    (some,) = measure(model, x, max_junctions=5)
    assert [j.index for j in some.junctions] == [0, 12, 24, 35, 47]
    assert some.summary.found == 48 and some.summary.junctions == 5
    assert "measured 5 of 48 junctions" in some.summary.notes[0]
    for j in some.junctions:
        assert j.grad_in == pytest.approx(full.junctions[j.index].grad_in, rel=1e-6)


def test_at_alone_limits_measurement(gradflow_cli) -> None:
    result = gradflow_cli("inspect", SAMPLES / "tiny_resnet.py", "--at", "layer2.*", "--format", "json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert [j["name"] for j in document["junctions"]] == ["layer2.0", "layer2.1"]
    assert document["stop_gradient"] == {"skip": [], "block": []}


def test_sg_on_unmeasured_junctions_still_applies() -> None:
    model = models.SmallResNet()
    x = _inputs("SmallResNet")
    (report,) = measure(model, x, [gradflow.engine.measure.VariantSpec("s", sg_skip=True)], at=["b2"], only=["b1"], loss="mse")
    _, grad_in, _ = _hand_detached(model, x, skip={1}, block=set())  # b2 rewritten by hand
    assert [j.name for j in report.junctions] == ["b1"]
    assert report.junctions[0].grad_in == pytest.approx(grad_in[0], rel=1e-4)


def test_hooks_never_synchronise_with_the_host(monkeypatch) -> None:
    """No .item(), .cpu(), .tolist(), float() or .numpy() while the backward pass runs."""
    from gradflow.engine import taps as hooks

    calls: list[str] = []
    in_backward = {"on": False}
    for name in ("item", "cpu", "tolist", "numpy", "__float__"):
        original = getattr(torch.Tensor, name)

        def spy(self, *a, _name=name, _original=original, **k):  # type: ignore[no-untyped-def]
            if in_backward["on"]:
                calls.append(_name)
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, spy)
    real_grad = torch.autograd.grad

    def watched(*a, **k):  # type: ignore[no-untyped-def]
        in_backward["on"] = True
        try:
            return real_grad(*a, **k)
        finally:
            in_backward["on"] = False

    monkeypatch.setattr(hooks.torch.autograd, "grad", watched)
    report = gradflow.inspect(models.SmallResNet(), _inputs("SmallResNet"), sg_skip=True, at=["b1"])
    assert len(report.junctions) == 2
    assert calls == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.filterwarnings("ignore:Synchronization debug mode is a prototype feature")
def test_no_sync_on_cuda(monkeypatch) -> None:
    """From the model-state guard through the forward pass, the loss (with its seeded labels) and
    the backward pass, nothing waits for the device: the one transfer of every number happens in
    `Taps._collect`, where the check is switched off."""
    model = models.SmallResNet().cuda()
    x = _inputs("SmallResNet").cuda()
    from gradflow.engine import taps as hooks

    real_collect = hooks.Taps._collect

    def collect(self, *args):  # type: ignore[no-untyped-def]
        torch.cuda.set_sync_debug_mode(0)
        return real_collect(self, *args)

    monkeypatch.setattr(hooks.Taps, "_collect", collect)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        report = gradflow.inspect(model, x, loss="ce")
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert report.probe.device.startswith("cuda")
    assert len(report.junctions) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_device_cuda_without_cuda_is_a_clear_error(gradflow_cli) -> None:
    result = gradflow_cli("inspect", SAMPLES / "tiny_resnet.py", "--device", "cuda")
    assert result.exit_code == 2
    assert "no CUDA device is available" in result.stderr


def test_unknown_dtype_is_a_clear_error(gradflow_cli) -> None:
    result = gradflow_cli("inspect", SAMPLES / "tiny_resnet.py", "--dtype", "int8")
    assert result.exit_code == 2
    assert "--dtype" in result.stderr or "dtype" in result.stderr


def test_torch_compile_wrapper_is_measured_through_its_eager_module() -> None:
    """A compiled graph is one opaque autograd node; gradflow measures the module it wraps,
    says so, and never runs the compiled forward (so nothing is compiled)."""
    from tests.reference import reference
    from tests.test_measure import METRICS, mse

    model = models.SmallResNet()
    x = _inputs("SmallResNet")
    compiled = torch.compile(model)
    report = gradflow.inspect(compiled, x, loss="mse")
    assert [j.name for j in report.junctions] == ["b1", "b2"]
    for junction, ref in zip(report.junctions, reference(model, x, mse)):
        for metric in METRICS:
            assert getattr(junction, metric) == pytest.approx(ref[metric], rel=1e-4, abs=1e-7), (junction.name, metric)
    assert any("torch.compile" in note for note in report.summary.notes)
    assert [j.name for j in locate(compiled, x)] == ["b1", "b2"]


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_notes_reach_the_table_and_markdown(gradflow_cli, fmt: str) -> None:
    result = gradflow_cli("inspect", SAMPLES / "deep_mlp.py", "--max-junctions", "3", "--format", fmt)
    assert result.exit_code == 0, result.stderr
    assert "note: measured 3 of 48 junctions (--max-junctions)" in " ".join(result.stdout.split())


def test_compare_lists_the_notes_of_its_variants(gradflow_cli, tmp_path) -> None:
    source = tmp_path / "compiled.py"
    source.write_text(
        "import torch\nfrom torch import nn\n\n\n"
        "class Block(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(8, 8)\n\n"
        "    def forward(self, x):\n        return x + self.fc(torch.relu(x))\n\n\n"
        "def build():\n    torch.manual_seed(0)\n"
        "    return torch.compile(nn.Sequential(Block(), Block(), nn.Linear(8, 3)))\n\n\n"
        "def example_input():\n    return torch.randn(4, 8)\n"
    )
    result = gradflow_cli("compare", f"{source}:build", "--sg-skip")
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert text.count("note: measured the eager module behind torch.compile") == 1


def test_model_running_under_its_own_autocast_matches_autograd() -> None:
    """Junctions inside the model's own torch.autocast region: bf16 gradients, norms in float32."""
    from tests.reference import reference
    from tests.test_measure import METRICS, mse

    torch.manual_seed(0)
    model = models.AutocastInside()
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    report = gradflow.inspect(model, x, loss="mse")
    expected = reference(model, x, mse)
    assert len(report.junctions) == len(expected) == 3
    assert all(rec.y.dtype == torch.bfloat16 for rec in model.log)
    for junction, ref in zip(report.junctions, expected):
        for metric in METRICS:
            assert getattr(junction, metric) == pytest.approx(ref[metric], rel=1e-3, abs=1e-6), (junction.name, metric)
