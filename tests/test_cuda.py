"""On a CUDA device: every metric against torch.autograd.grad on the same device, stop-gradient
against hand-detached models, bf16 against float32, `--device auto`, and the model left as it was.

Skipped where torch sees no CUDA device."""

from __future__ import annotations

import json
import math

import pytest
import torch

import gradflow
import gradflow.engine.norms
from gradflow.engine.measure import measure
from tests.conftest import SAMPLES
from tests.fixtures import models
from tests.reference import reference
from tests.test_measure import CASES, METRICS, _inputs, mse
from tests.test_stop_gradient import _hand_detached

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _cuda(inputs):  # type: ignore[no-untyped-def]
    return tuple(t.cuda() for t in inputs) if isinstance(inputs, tuple) else inputs.cuda()


@pytest.fixture(autouse=True)
def _exact_cuda_math():  # type: ignore[no-untyped-def]
    """TF32 would make the reference and gradflow round differently; compare full float32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("held", ["together", "one at a time"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_metrics_match_autograd_on_cuda(name: str, held: str, monkeypatch) -> None:
    if held == "one at a time":  # a budget of 0 bytes: gradflow.engine.norms.NormBatch flushes at every norm
        monkeypatch.setattr(gradflow.engine.norms, "budget", lambda device: 0)
    torch.manual_seed(0)
    model = getattr(models, name)().cuda()
    inputs = _cuda(_inputs(name))
    report = gradflow.inspect(model, inputs, loss="mse")
    expected = reference(model, inputs, mse)
    assert report.probe.device.startswith("cuda")
    assert len(report.junctions) == len(expected) == len(CASES[name])
    for junction, ref in zip(report.junctions, expected):
        for metric in METRICS:
            got = getattr(junction, metric)
            assert math.isclose(got, ref[metric], rel_tol=1e-4, abs_tol=1e-7), (junction.name, metric, got, ref[metric])


@pytest.mark.parametrize("kind", ["skip", "block"])
@pytest.mark.parametrize("name", ["SmallResNet", "Nested", "TokenModel"])
def test_stop_gradient_equals_hand_detached_model_on_cuda(name: str, kind: str) -> None:
    torch.manual_seed(0)
    model = getattr(models, name)().cuda()
    inputs = _cuda(_inputs(name))
    report = gradflow.inspect(model, inputs, loss="mse", sg_skip=kind == "skip", sg_block=kind == "block")
    stopped = {j.index for j in report.junctions}
    norms, grad_in, loss = _hand_detached(model, inputs, stopped if kind == "skip" else set(),
                                          stopped if kind == "block" else set())
    assert report.summary.loss == pytest.approx(loss, rel=1e-5)
    got = [p.grad_norm if p.has_grad else 0.0 for p in report.parameters]
    assert got == pytest.approx(norms, rel=1e-4, abs=1e-7)
    assert [j.grad_in for j in report.junctions] == pytest.approx(grad_in, rel=1e-4, abs=1e-7)


def test_model_on_cuda_stays_there_untouched() -> None:
    model = models.SmallResNet().cuda().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gradflow.inspect(model, _cuda(_inputs("SmallResNet")))
    after = model.state_dict()
    assert all(after[k].is_cuda and torch.equal(after[k], v) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    assert model.training


def test_dropout_on_cuda_draws_the_masks_of_the_probe_seed_and_leaves_the_generator() -> None:
    """The probe seeds the model device's generator as torch.manual_seed would, and gives its
    state back."""
    torch.manual_seed(0)
    model = models.DropoutBlock().cuda()
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(2)).cuda()
    state = torch.cuda.get_rng_state()
    report = gradflow.inspect(model, x, loss="mse", mode="train", seed=3)
    assert torch.equal(torch.cuda.get_rng_state(), state)
    torch.manual_seed(3)
    (expected,) = reference(model.train(), x, mse)
    for metric in METRICS:
        got = getattr(report.junctions[0], metric)
        assert got == pytest.approx(expected[metric], rel=1e-4, abs=1e-7), metric


def test_bfloat16_on_cuda_is_close_to_float32() -> None:
    model = models.SmallResNet().cuda()
    x = _cuda(_inputs("SmallResNet"))
    full = gradflow.inspect(model, x, loss="mse")
    (half,) = measure(model, x, loss="mse", dtype="bfloat16")
    for a, b in zip(full.junctions, half.junctions):
        assert b.grad_out == pytest.approx(a.grad_out, rel=0.1)
        assert b.grad_in == pytest.approx(a.grad_in, rel=0.1)


def test_cli_device_auto_measures_on_cuda_and_agrees_with_cpu(gradflow_cli) -> None:
    results = {}
    for device in ("auto", "cpu"):
        result = gradflow_cli("inspect", SAMPLES / "tiny_resnet.py", "--device", device, "--format", "json")
        assert result.exit_code == 0, result.stderr
        results[device] = json.loads(result.stdout)
    assert results["auto"]["probe"]["device"].startswith("cuda")
    assert results["cpu"]["probe"]["device"] == "cpu"
    for a, b in zip(results["auto"]["junctions"], results["cpu"]["junctions"]):
        assert a["name"] == b["name"]
        assert a["grad_in"] == pytest.approx(b["grad_in"], rel=1e-3)
        assert a["grad_block"] == pytest.approx(b["grad_block"], rel=1e-3)


def test_two_cuda_runs_agree_to_rounding() -> None:
    """Byte-identical JSON is promised on the CPU only: CUDA kernels may sum in another order."""
    from tests.test_reliability import _json_without_timings

    args = ("inspect", "sample_models/tiny_resnet.py", "--seed", "3", "--device", "cuda")
    first, second = (json.loads(_json_without_timings(*args)) for _ in range(2))
    worst = 0.0
    for a, b in zip(first["junctions"], second["junctions"]):
        for metric in ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad"):
            worst = max(worst, abs(a[metric] - b[metric]) / max(abs(a[metric]), 1e-12))
    print(f"largest relative difference between two CUDA runs: {worst:.2e}")
    assert worst < 1e-4


def test_numbers_on_several_devices_reach_the_host_together() -> None:
    """A model split across devices hands `_collect` numbers on each of them."""
    values = [torch.tensor(1.5), torch.tensor(2.5, device="cuda"), torch.tensor(3.5, device="cuda")]
    assert gradflow.engine.norms.to_host(values, torch.device("cuda")) == [1.5, 2.5, 3.5]
