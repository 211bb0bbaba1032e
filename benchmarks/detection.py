"""Junction detection on a model with many junctions, and what recording the forward costs.

gradflow's forward pass runs under `ForwardRecorder` (wrappers around the add functions and
`nn.Module._call_impl`) so junctions can be named; then `find_junctions` walks the autograd graph of the loss.
Timed here: the bare forward (with the probe's loss), the recorded forward, `find_junctions` on
the recorded graph, and `gradflow.engine.measure.locate` (forward, detection and naming: `gradflow
blocks`). Naming alone is locate minus the recorded forward and the detection.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from benchmarks.timing import interleaved, median_time, timed
from benchmarks.workloads import LOSS, SEED, call
from gradflow.engine.junctions import find_junctions
from gradflow.engine.measure import locate
from gradflow.engine.recorder import ForwardRecorder
from gradflow.probe import as_probe, detached_inputs, probe_loss, select_output


def detection(model: torch.nn.Module, inputs: Any, runs: int) -> dict[str, Any]:
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()

    def leaves_and_probe() -> tuple[Any, list[torch.Tensor]]:
        probe, leaves = detached_inputs(as_probe(inputs))
        return probe, leaves

    def bare_forward() -> torch.Tensor:
        return probe_loss(select_output(call(model, inputs)), LOSS, SEED)

    def recorded_forward() -> torch.Tensor:
        probe, _ = leaves_and_probe()
        with ForwardRecorder(model):
            output = model(*probe.args, **probe.kwargs)
        return probe_loss(select_output(output), LOSS, SEED)

    forward = interleaved(bare_forward, recorded_forward, pairs=runs, warmup=1).summary()

    probe, leaves = leaves_and_probe()
    with ForwardRecorder(model):
        output = model(*probe.args, **probe.kwargs)
    loss = probe_loss(select_output(output), LOSS, SEED)
    found: list[Any] = []

    def detect() -> None:
        found[:] = find_junctions([loss.grad_fn], params, leaves)

    detect_times = [timed(detect, lambda: None).wall_s for _ in range(runs)]
    located = median_time(lambda: locate(model, inputs, mode="train"), runs)
    detect_median = statistics.median(detect_times)
    return {
        "junctions_found": len(found),
        "find_junctions_median_s": detect_median,
        "find_junctions_max_s": max(detect_times),
        "forward": forward,
        "locate_median_s": located["median_s"],
        "naming_estimate_s": located["median_s"] - forward["tool_median_s"] - detect_median,
    }
