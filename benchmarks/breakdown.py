"""Where gradflow's extra time goes: a phase breakdown against the bare step, and cProfile.

    python -m benchmarks.breakdown --model junctions1000 [--quick] [--runs 5] [--top 25]
                                   [--device cpu|cuda] [--batch-multiplier N] [--torch-profile]

Phases of `gradflow.inspect` come from the Report's own `timings_s` (forward including the
recorder and the loss, detect, backward including the hooks and the host transfer); "rest" is
total minus those (model-state guard, naming, building the Report). The bare forward (with the
loss) and bare backward are timed apart, interleaved with the inspect runs. cProfile then shows
which Python functions carry the difference (`tottime` is time in the function itself); for
hooks that the autograd engine calls, trust the phase breakdown over cProfile's attribution.
(Not named profile.py: run as a script, that name would shadow the standard library's `profile`,
which cProfile imports.)
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def breakdown(model: Any, inputs: Any, runs: int, sync: Any = lambda: None) -> dict[str, float]:
    import torch

    from benchmarks.workloads import LOSS, MODE, SEED, call
    from gradflow.drivers.inspect import inspect
    from gradflow.probe import probe_loss, select_output

    params = [p for p in model.parameters() if p.requires_grad]
    phases: dict[str, list[float]] = {k: [] for k in (
        "bare_forward", "bare_backward", "bare_total", "forward", "detect", "backward", "rest",
        "total")}
    for i in range(runs + 1):
        gc.collect()
        sync()
        tick = time.perf_counter()
        model.train(MODE == "train")
        loss = probe_loss(select_output(call(model, inputs)), LOSS, SEED)
        sync()
        mid = time.perf_counter()
        torch.autograd.grad(loss, params)
        sync()
        end = time.perf_counter()
        del loss
        gc.collect()
        start = time.perf_counter()
        report = inspect(model, inputs, loss=LOSS, mode=MODE, seed=SEED)
        sync()
        total = time.perf_counter() - start
        if i == 0:
            continue  # warm-up
        t = report.timings_s
        phases["bare_forward"].append(mid - tick)
        phases["bare_backward"].append(end - mid)
        phases["bare_total"].append(end - tick)
        phases["forward"].append(t["forward"])
        phases["detect"].append(t["detect"])
        phases["backward"].append(t["backward"])
        phases["total"].append(total)
        phases["rest"].append(total - t["forward"] - t["detect"] - t["backward"])
    return {k: statistics.median(v) for k, v in phases.items()}


def profile(model: Any, inputs: Any, top: int, sort: str) -> str:
    from benchmarks.workloads import LOSS, MODE, SEED
    from gradflow.drivers.inspect import inspect

    inspect(model, inputs, loss=LOSS, mode=MODE, seed=SEED)
    profiler = cProfile.Profile()
    profiler.enable()
    inspect(model, inputs, loss=LOSS, mode=MODE, seed=SEED)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(top)
    return out.getvalue()


def torch_profile(model: Any, inputs: Any, top: int) -> str:
    """torch.profiler over one bare step and one inspect: host-side time per op, and the
    host-device synchronisations (cudaDeviceSynchronize, cudaStreamSynchronize, cudaMemcpy)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.workloads import steps

    out = []
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    for name in ("bare", "inspect"):
        step = steps(model, inputs, name)
        step()
        with profile(activities=activities) as prof:
            step()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)
        syncs = {e.key: e.count for e in prof.key_averages()
                 if "Synchronize" in e.key or "Memcpy" in e.key or "memcpy" in e.key}
        out.append(f"== {name}: synchronisations and copies {syncs}\n{table}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    import torch

    from benchmarks.models import BENCHES, build
    from benchmarks.workloads import synchronizer, to_device

    parser = argparse.ArgumentParser(prog="python -m benchmarks.breakdown", description=__doc__)
    parser.add_argument("--model", choices=list(BENCHES), default="junctions1000")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch-multiplier", type=int, default=1)
    parser.add_argument("--torch-profile", action="store_true",
                        help="also print torch.profiler tables for one bare step and one inspect")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    model, inputs = build(args.model, args.quick, args.batch_multiplier)
    model.to(device)
    inputs = to_device(inputs, device)
    phases = breakdown(model, inputs, args.runs, synchronizer(device))
    print(f"{args.model}: medians of {args.runs} runs (ms)")
    print(f"  bare:    forward+loss {phases['bare_forward'] * 1e3:8.2f}   backward "
          f"{phases['bare_backward'] * 1e3:8.2f}   total {phases['bare_total'] * 1e3:8.2f}")
    print(f"  inspect: forward+loss {phases['forward'] * 1e3:8.2f}   backward "
          f"{phases['backward'] * 1e3:8.2f}   total {phases['total'] * 1e3:8.2f}"
          f"   detect {phases['detect'] * 1e3:.2f}   rest {phases['rest'] * 1e3:.2f}")
    print(profile(model, inputs, args.top, args.sort))
    if args.torch_profile:
        print(torch_profile(model, inputs, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
