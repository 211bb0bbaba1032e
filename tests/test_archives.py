"""TorchScript and torch.export archives give the same junctions and numbers as the eager model."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import SAMPLES
from tests.test_cli_inspect import _load_sample


@pytest.fixture(scope="module")
def archives(tmp_path_factory):  # type: ignore[no-untyped-def]
    sample = _load_sample("tiny_resnet")
    model, x = sample.build().eval(), sample.example_input()
    folder = tmp_path_factory.mktemp("archives")
    torch.jit.save(torch.jit.script(model), folder / "scripted.pt")
    torch.jit.save(torch.jit.trace(model, x), folder / "traced.ts")
    torch.export.save(torch.export.export(model, (x,)), folder / "model.pt2")
    torch.save(x, folder / "x.pt")
    return folder


def _report(gradflow_cli, *args):  # type: ignore[no-untyped-def]
    result = gradflow_cli("inspect", *args, "--mode", "eval", "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("name", ["scripted.pt", "traced.ts", "model.pt2"])
def test_archive_matches_the_eager_model(gradflow_cli, archives, name) -> None:  # type: ignore[no-untyped-def]
    eager = _report(gradflow_cli, SAMPLES / "tiny_resnet.py", "--input", archives / "x.pt")
    archived = _report(gradflow_cli, archives / name, "--input", archives / "x.pt")
    assert [j["skip"] for j in archived["junctions"]] == [j["skip"] for j in eager["junctions"]]
    for a, b in zip(eager["junctions"], archived["junctions"]):
        for metric in ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad"):
            assert b[metric] == pytest.approx(a[metric], rel=1e-4), (name, a["name"], metric)


def test_exported_program_keeps_module_names_and_says_mode_is_fixed(gradflow_cli, archives) -> None:  # type: ignore[no-untyped-def]
    report = _report(gradflow_cli, archives / "model.pt2")
    assert [j["name"] for j in report["junctions"]] == ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1"]
    lines = (SAMPLES / "tiny_resnet.py").read_text().splitlines()
    add_line = next(i for i, line in enumerate(lines, 1) if line.strip() == "out += identity")
    assert report["junctions"][0]["location"].endswith(f"tiny_resnet.py:{add_line}")
    assert any("mode it was exported in" in note for note in report["summary"]["notes"])


def test_scripted_model_probe_is_inferred(gradflow_cli, archives) -> None:  # type: ignore[no-untyped-def]
    report = _report(gradflow_cli, archives / "scripted.pt")
    assert report["probe"]["inputs"] == [{"shape": [8, 3, 32, 32], "dtype": "float32"}]
    assert len(report["junctions"]) == 6


@pytest.mark.parametrize("name", ["scripted.pt", "traced.ts"])
def test_torchscript_junctions_are_named_from_the_compiled_graphs(gradflow_cli, archives, name) -> None:  # type: ignore[no-untyped-def]
    report = _report(gradflow_cli, archives / name, "--input", archives / "x.pt")
    assert [j["name"] for j in report["junctions"]] == ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1"]
    lines = (SAMPLES / "tiny_resnet.py").read_text().splitlines()
    add_line = next(i for i, line in enumerate(lines, 1) if line.strip() == "out += identity")
    assert all(j["location"].endswith(f"tiny_resnet.py:{add_line}") for j in report["junctions"])


def test_torchscript_with_control_flow_keeps_positional_names(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    class Gated(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.f = torch.nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > -1e9:
                x = x + self.f(x)
            return x

    torch.jit.save(torch.jit.script(Gated()), tmp_path / "gated.pt")
    result = gradflow_cli("inspect", tmp_path / "gated.pt", "--format", "json")
    assert result.exit_code == 0, result.output
    assert [j["name"] for j in json.loads(result.stdout)["junctions"]] == ["#0"]
