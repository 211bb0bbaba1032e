"""The benchmark harness runs end to end on a tiny configuration, and its models are what
benchmarks/models.py says. No timing thresholds: timings belong to `python -m benchmarks.run`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.models import BENCHES, build
from gradflow.engine.measure import locate


@pytest.mark.parametrize("name", list(BENCHES))
def test_each_model_has_its_documented_junctions(name: str) -> None:
    model, inputs = build(name, quick=True)
    found = locate(model, inputs, mode="train")
    assert len(found) == BENCHES[name].junctions


def test_the_harness_runs_every_figure_on_a_tiny_config(tmp_path: Path) -> None:
    from benchmarks import onnx_exec
    from benchmarks.run import main

    out = tmp_path / "bench.json"
    figures = "inspect,repeat,floor,compare,memory,detect,help" + ("" if onnx_exec.missing() else ",onnx")
    code = main(["--quick", "--models", "deep_mlp", "--onnx-models", "deep_mlp", "--repeats", "1",
                 "--memory-repeats", "1", "--figures", figures, "--json", str(out)])
    results = json.loads(out.read_text())
    assert code == 0, results
    for figure in ("inspect", "repeat", "floor", "compare"):
        row = results[figure]["deep_mlp"]
        assert row["pairs"] == BENCHES["deep_mlp"].pairs
        assert row["bare_median_s"] > 0 and row["tool_median_s"] > 0 and row["ratio_median"] > 0
    assert results["memory"]["deep_mlp"]["tool_process_peak_bytes"] > 0
    assert results["detect"]["junctions_found"] == 1000
    assert results["help"]["median_s"] > 0
    assert results["settings"]["k"] == 3
    assert {check["met"] for check in results["overhead"].values()} <= {True, False}
    assert "repeat deep_mlp" in results["overhead"]


def test_the_gate_cost_figures_run_and_leave_getattr_as_it_was() -> None:
    import torch

    from benchmarks.gate_costs import context_seconds, lookup_seconds, lookups_per_forward

    original = torch.nn.Module.__getattr__
    model, inputs = build("deep_mlp", quick=True)
    assert lookups_per_forward(model, (inputs,)) > 0
    junctions, seconds = context_seconds(model, (inputs,), runs=1)
    assert junctions == BENCHES["deep_mlp"].junctions and seconds > 0
    assert lookup_seconds(torch.nn.Linear(2, 2), "weight", wrapped=True, n=10) > 0
    assert torch.nn.Module.__getattr__ is original


def test_the_watch_figures_run_on_a_tiny_config(tmp_path: Path) -> None:
    import torch

    from benchmarks.watch import main

    out = tmp_path / "watch.json"
    original = torch.nn.Module._call_impl
    code = main(["--quick", "--models", "deep_mlp", "--every", "2", "--steps", "3", "--loop-pairs", "1",
                 "--step-pairs", "1", "--json", str(out)])
    results = json.loads(out.read_text())
    assert code == 0
    assert results["loop"]["steps_measured"] == 3  # steps 0, 2 and 4 of the two chunks of 3 (warm-up and pair)
    assert results["loop"]["ratio_median"] > 0
    assert results["step"]["deep_mlp"]["junctions"] == BENCHES["deep_mlp"].junctions
    assert torch.nn.Module._call_impl is original
