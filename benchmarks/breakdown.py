"""Where gradflow's extra time goes, stage by stage: a fixed cost per measurement and a cost per
junction, for a first measurement of a model and for a repeated one.

    python -m benchmarks.breakdown [--family mlp4,mlp16,mlp64] [--models bert_tiny,...]
                                   [--runs 15] [--quick] [--profile MODEL] [--top 25]
                                   [--device cpu|cuda] [--torch-profile]

Each measurement runs with the engine's stage timing on (`gradflow.engine.stages`), whose stages
are the engine's modules. A first measurement forgets what the engine kept for the model
(`gradflow.engine.replay.forget`); a repeated one measures the model again with inputs of the same
shape, as `gradflow.watch` does every N steps. The model's own work is taken out: `recorder` less
a bare forward pass with the probe's loss, and `taps` less a bare backward pass, both timed
interleaved with the measurements. Every figure is a median over `--runs`.

The fit: over the family, models alike but for their number of junctions n, each stage's extra
time is fitted as `fixed + n * per_junction` (least squares). `--models` prints the same table
for other models, without a fit. `--profile MODEL` adds cProfile (`tottime`: time in the function
itself) of one repeated measurement; hooks that autograd calls are better read from the stages.
(Not named profile.py: run as a script, that name would shadow the standard library's `profile`,
which cProfile imports.)
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_FAMILY = ("mlp4", "mlp16", "mlp64")
MODEL_WORK = {"recorder": "forward", "taps": "backward"}  # stage -> the bare pass inside it


def stage_times(model: Any, inputs: Any, runs: int, sync: Any = lambda: None) -> dict[str, dict[str, float]]:
    """Medians over `runs` of: the bare forward and backward (`bare`), and each stage of a first
    (`first`) and a repeated (`repeat`) measurement, in seconds, the model's own work taken out
    (see MODEL_WORK); each dict also has `total` (for a measurement: the sum of its stages)."""
    import torch

    from benchmarks.workloads import LOSS, MODE, SEED, call
    from gradflow.drivers.inspect import inspect
    from gradflow.engine.replay import forget
    from gradflow.engine.stages import timed
    from gradflow.probe import probe_loss, select_output

    params = [p for p in model.parameters() if p.requires_grad]
    samples: dict[str, dict[str, list[float]]] = {"bare": {}, "first": {}, "repeat": {}}

    def keep(kind: str, values: dict[str, float]) -> None:
        for key, value in values.items():
            samples[kind].setdefault(key, []).append(value)

    def measured(first: bool) -> dict[str, float]:
        if first:
            forget(model)
        gc.collect()
        sync()
        start = time.perf_counter()
        with timed() as seconds:
            inspect(model, inputs, loss=LOSS, mode=MODE, seed=SEED)
            sync()
        return {**seconds, "total": time.perf_counter() - start}

    for i in range(runs + 2):
        gc.collect()
        sync()
        tick = time.perf_counter()
        model.train(MODE == "train")
        loss = probe_loss(select_output(call(model, inputs)), LOSS, SEED)
        sync()
        mid = time.perf_counter()
        torch.autograd.grad(loss, params, allow_unused=True)
        sync()
        end = time.perf_counter()
        del loss
        order = (True, False) if i % 2 == 0 else (False, True)
        got = {first: measured(first) for first in order}
        if i < 2:
            continue  # warm-up
        keep("bare", {"forward": mid - tick, "backward": end - mid, "total": end - tick})
        keep("first", got[True])
        keep("repeat", got[False])
    medians = {kind: {k: statistics.median(v) for k, v in values.items()} for kind, values in samples.items()}
    for kind in ("first", "repeat"):
        for stage, work in MODEL_WORK.items():
            medians[kind][stage] -= medians["bare"][work]
        # The sum of the stages' medians: steadier on a shared machine than the median of totals.
        medians[kind]["total"] = sum(v for k, v in medians[kind].items() if k != "total")
    return medians


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(fixed, per_junction) of the least-squares line through (junctions, seconds)."""
    n = [float(x) for x, _ in points]
    y = [v for _, v in points]
    mean_n, mean_y = statistics.fmean(n), statistics.fmean(y)
    spread = sum((a - mean_n) ** 2 for a in n)
    slope = sum((a - mean_n) * (b - mean_y) for a, b in zip(n, y)) / spread if spread else 0.0
    return mean_y - slope * mean_n, slope


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


def _table(title: str, rows: dict[str, tuple[float, float]], unit: str, scale: float) -> list[str]:
    lines = [title, f"  {'stage':<10} {'first':>9} {'repeat':>9}  ({unit})"]
    for stage, (first, repeat) in rows.items():
        lines.append(f"  {stage:<10} {first * scale:9.3f} {repeat * scale:9.3f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    import torch

    from benchmarks.models import BENCHES, build
    from benchmarks.workloads import synchronizer, to_device
    from gradflow.engine.stages import STAGES

    def names(text: str) -> list[str]:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        for name in chosen:
            if name not in BENCHES:
                parser.error(f"unknown model {name!r}: choose from {', '.join(BENCHES)}")
        return chosen

    parser = argparse.ArgumentParser(prog="python -m benchmarks.breakdown", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", type=names, default=list(DEFAULT_FAMILY),
                        help="models alike but for their junction count, for the fit")
    parser.add_argument("--models", type=names, default=[], help="more models, without a fit")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", default=None, help="cProfile one repeated measurement of MODEL")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--torch-profile", action="store_true",
                        help="with --profile: also torch.profiler tables for a bare step and an inspect")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = synchronizer(device)
    columns = [*STAGES, "total"]
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at start; {torch.get_num_threads()} torch "
          f"thread(s); medians of {args.runs} runs; a stage's time less the model's own work")
    measured: dict[str, dict[str, dict[str, float]]] = {}
    for name in [*args.family, *args.models]:
        model, inputs = build(name, args.quick)
        model.to(device)
        inputs = to_device(inputs, device)
        measured[name] = times = stage_times(model, inputs, args.runs, sync)
        junctions = BENCHES[name].junctions
        bare = times["bare"]
        lines = _table(
            f"\n{name} ({junctions} junctions): bare forward {bare['forward'] * 1e3:.2f} ms, "
            f"backward {bare['backward'] * 1e3:.2f} ms",
            {s: (times["first"].get(s, 0.0), times["repeat"].get(s, 0.0)) for s in columns},
            "ms", 1e3,
        )
        print("\n".join(lines))
        del model, inputs
    if len(args.family) >= 2:
        fits = {
            s: tuple(
                fit([(BENCHES[m].junctions, measured[m][kind].get(s, 0.0)) for m in args.family])
                for kind in ("first", "repeat")
            )
            for s in columns
        }
        print(f"\nfit over {', '.join(args.family)}: fixed cost per measurement (ms) and per junction (µs)")
        print(f"  {'stage':<10} {'fixed first':>11} {'repeat':>9}   {'per junction first':>18} {'repeat':>9}")
        for s in columns:
            (f_fixed, f_slope), (r_fixed, r_slope) = fits[s]
            print(f"  {s:<10} {f_fixed * 1e3:11.3f} {r_fixed * 1e3:9.3f}   {f_slope * 1e6:18.1f} "
                  f"{r_slope * 1e6:9.1f}")
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at end")
    if args.profile:
        model, inputs = build(args.profile, args.quick)
        model.to(device)
        inputs = to_device(inputs, device)
        print(profile(model, inputs, args.top, args.sort))
        if args.torch_profile:
            print(torch_profile(model, inputs, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
