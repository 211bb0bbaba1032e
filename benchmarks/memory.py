"""Peak memory of one step, each measured in a fresh subprocess.

CPU: torch's CPU allocations do not go through Python's allocator, so tracemalloc cannot see
them; the kernel's resident-set high-water mark (VmHWM) can. The worker builds the model, runs
the step once to warm up, then resets the high-water mark (`echo 5 > /proc/self/clear_refs`),
reads the resident set, runs the step once more and reads VmHWM again: the difference is the
step's peak working memory (activations, gradients, gradflow's own tensors), the weights and the
interpreter excluded. glibc's malloc is started with a fixed `MALLOC_MMAP_THRESHOLD_` of 64 KiB,
so every tensor-sized block is mapped on allocation and unmapped on free, and the resident set
follows live tensor memory instead of what the heap happened to keep from an earlier step.
Without clear_refs the worker falls back to ru_maxrss (a lifetime peak, so model building can
hide the step) and says so in the sample's `method`.

CUDA: `torch.cuda.max_memory_allocated()` after `reset_peak_memory_stats()`, minus the memory
allocated before the step.

    python -m benchmarks.memory --model resnet50 --workload inspect [--quick] [--device cpu]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MMAP_THRESHOLD = 64 * 1024
# Below this the bare step's peak is a few pages and interpreter objects: a ratio means nothing.
MIN_COMPARABLE_BYTES = 16 * 2**20


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_high_water() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def measure_here(model_name: str, workload: str, device_name: str, quick: bool,
                 batch_multiplier: int = 1) -> dict[str, Any]:
    """Run in the worker: the peak bytes `workload` adds on top of what was live before it."""
    import torch

    from benchmarks.models import build
    from benchmarks.workloads import steps, to_device

    device = torch.device(device_name)
    model, inputs = build(model_name, quick, batch_multiplier)
    model.to(device)
    step = steps(model, to_device(inputs, device), workload)
    step()  # one-time costs (kernel caches, thread pools) out of the way
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"method": "cuda.max_memory_allocated", "before_bytes": before,
                "peak_bytes": peak, "step_peak_bytes": peak - before}
    if _reset_high_water():
        method = "VmHWM after clear_refs"
        before = _status_kib("VmRSS")
    else:
        method = "ru_maxrss (no clear_refs)"
        before = _status_kib("VmRSS")
    step()
    peak = _status_kib("VmHWM") if method.startswith("VmHWM") else (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return {"method": method, "before_bytes": before * 1024, "peak_bytes": peak * 1024,
            "step_peak_bytes": (peak - before) * 1024}


def measure_subprocess(model_name: str, workload: str, device: str, quick: bool,
                       threads: int | None = None, timeout_s: float = 600,
                       batch_multiplier: int = 1) -> dict[str, Any]:
    """One worker process; returns its JSON result."""
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    env["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "benchmarks.memory", "--model", model_name,
               "--workload", workload, "--device", device,
               "--batch-multiplier", str(batch_multiplier)] + (["--quick"] if quick else [])
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"memory worker for {model_name}/{workload} failed: {tail}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def peak_ratio(model_name: str, bare: str, tool: str, device: str, quick: bool,
               repeats: int, threads: int | None = None, batch_multiplier: int = 1) -> dict[str, Any]:
    """Median step peak of `tool` over median step peak of `bare`, `repeats` workers each."""
    samples: dict[str, list[dict[str, Any]]] = {bare: [], tool: []}
    for _ in range(repeats):
        for workload in (bare, tool):
            samples[workload].append(measure_subprocess(
                model_name, workload, device, quick, threads, batch_multiplier=batch_multiplier))
    bare_peak = statistics.median(s["step_peak_bytes"] for s in samples[bare])
    tool_peak = statistics.median(s["step_peak_bytes"] for s in samples[tool])
    bare_total = statistics.median(s["peak_bytes"] for s in samples[bare])
    tool_total = statistics.median(s["peak_bytes"] for s in samples[tool])
    return {
        "method": samples[bare][0]["method"],
        "workers": repeats,
        "bare_step_peak_bytes": bare_peak,
        "tool_step_peak_bytes": tool_peak,
        "ratio": tool_peak / bare_peak if bare_peak >= MIN_COMPARABLE_BYTES else None,
        "extra_bytes": tool_peak - bare_peak,
        "bare_process_peak_bytes": bare_total,
        "tool_process_peak_bytes": tool_total,
        "process_ratio": tool_total / bare_total if bare_total > 0 else None,
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--workload", required=True, choices=["bare", "inspect", "bare-k", "compare"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch-multiplier", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(measure_here(args.model, args.workload, args.device, args.quick,
                                  args.batch_multiplier)))


if __name__ == "__main__":
    main()
