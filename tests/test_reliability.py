"""Memory guard, determinism across processes, and a model untouched after an interrupt."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import gradflow
from gradflow.memory import parse_size
from tests.conftest import ROOT, SAMPLES
from tests.test_measure import _inputs
from tests.test_untouched import _assert_same, _prepared, _snapshot


def test_memory_guard_refuses_a_huge_probe_before_allocating_it(gradflow_cli) -> None:
    result = gradflow_cli("inspect", SAMPLES / "tiny_resnet.py", "--input-shape", "100000,3,224,224",
                          "--memory-limit", "8GiB")
    assert result.exit_code == 2
    assert "the probe batch alone would take 56.1 GiB" in result.stderr
    assert "--memory-limit" in result.stderr


def test_memory_guard_counts_parameter_gradients(gradflow_cli) -> None:
    result = gradflow_cli("inspect", SAMPLES / "tiny_resnet.py", "--memory-limit", "100KB")
    assert result.exit_code == 2
    from tests.test_cli_inspect import _load_sample

    grads = sum(p.numel() * 4 for p in _load_sample("tiny_resnet").build().parameters())
    assert f"parameter gradients {grads / 1024:.1f} KiB" in result.stderr


def test_memory_guard_can_be_turned_off(gradflow_cli) -> None:
    result = gradflow_cli("inspect", SAMPLES / "seed_example.py", "--memory-limit", "none")
    assert result.exit_code == 0


@pytest.mark.parametrize(("text", "size"), [("8GiB", 8 * 2**30), ("500MB", 500_000_000), ("none", None), ("1e3", 1000)])
def test_parse_size(text: str, size: int | None) -> None:
    assert parse_size(text) == size


def _json_without_timings(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "gradflow", *args, "--format", "json"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    document = json.loads(out)
    document.pop("timings_s")
    return json.dumps(document, sort_keys=True)


@pytest.mark.parametrize("sample", ["tiny_resnet.py", "postnorm_encoder.py"])
def test_same_command_same_seed_gives_identical_json(sample: str) -> None:
    # On the CPU; CUDA kernels may sum in another order from run to run (see test_cuda.py).
    args = ("inspect", f"sample_models/{sample}", "--seed", "3", "--device", "cpu")
    assert _json_without_timings(*args) == _json_without_timings(*args)


def test_keyboard_interrupt_mid_run_leaves_the_model_untouched() -> None:
    model = _prepared()

    def interrupt(module, args, output):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    handle = model.b2.register_forward_hook(interrupt)  # after b1's batch norms ran
    before = _snapshot(model)
    with pytest.raises(KeyboardInterrupt):
        gradflow.inspect(model, _inputs("SmallResNet"))
    _assert_same(before, _snapshot(model))
    handle.remove()


def test_interrupt_during_backward_leaves_the_model_untouched() -> None:
    class Interrupt(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):  # type: ignore[no-untyped-def]
            return x.clone()

        @staticmethod
        def backward(ctx, g):  # type: ignore[no-untyped-def]
            raise KeyboardInterrupt

    model = _prepared()
    handle = model.b2.register_forward_hook(lambda m, a, out: Interrupt.apply(out))
    before = _snapshot(model)
    with pytest.raises(KeyboardInterrupt):
        gradflow.inspect(model, _inputs("SmallResNet"))
    _assert_same(before, _snapshot(model))
    handle.remove()


COMMANDS = {
    "inspect": [], "compare": ["--sg-skip"], "check": [], "track": ["--steps", "2"], "blocks": [],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_every_command_leaves_the_users_files_untouched(gradflow_cli, tmp_path, command, outcome) -> None:  # type: ignore[no-untyped-def]
    from tests.test_cli_inspect import _load_sample

    code = tmp_path / "net.py"
    code.write_bytes((SAMPLES / "tiny_resnet.py").read_bytes())
    checkpoint = tmp_path / "net.pt"
    torch.save(_load_sample("tiny_resnet").build().state_dict(), checkpoint)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (code, checkpoint)}
    extra = ["--input-shape", "2,7,32,32"] if outcome == "failure" else []
    result = gradflow_cli(command, checkpoint, "--arch", code, *COMMANDS[command], *extra)
    assert result.exit_code == (0 if outcome == "success" else 2), result.output
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (code, checkpoint)} == before


def test_check_api_leaves_the_model_untouched() -> None:
    from gradflow.testing import check_gradient_flow

    model = _prepared()
    before = _snapshot(model)
    check_gradient_flow(model, _inputs("SmallResNet"), seeds=2)
    _assert_same(before, _snapshot(model))
