"""Run the performance benchmark and print its tables (optionally write JSON).

    python -m benchmarks.run [--quick] [--device cpu|cuda] [--models resnet50,gpt2,...]
                             [--repeats N] [--rounds R] [--figures inspect,compare,...]
                             [--threads T] [--json FILE]

Figures: 1 inspect / bare forward+backward, a first measurement of the model; 1r a repeated
measurement (`repeat`: the same model again, inputs of the same shape, as `gradflow.watch` does);
1b the floor, a bare step plus only the parameter gradients' norms (no hooks, no detection) /
bare (`floor`); then the overhead verdicts against the targets (`overhead`); 2 compare
(baseline, sg-skip, sg-block) / one forward + 3 backward, and 2b the same with 3 unstopped
variants (equal work); 3 peak step memory, inspect / bare; 4 junction detection on 1,000
junctions; 5 `gradflow --help` start-up; and the ONNX executor where gradflow.onnx provides it.

Ratios are medians of interleaved (bare, tool) pairs in one process. The timed figures run in
`--rounds` rounds, each over every model in turn (the models stay built), so a slow spell on a
shared machine falls on one round of each model rather than on all of one model: a row's
`spread` is the lowest and highest of its rounds' medians. The load average is recorded.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FIGURES = ("inspect", "repeat", "floor", "compare", "memory", "detect", "help", "onnx")
TIMED = ("inspect", "repeat", "floor", "compare")  # the figures timed in rounds
DEFAULT_ONNX_MODELS = ("resnet50", "deep_mlp")
ROOT = Path(__file__).resolve().parent.parent
# The benchmark's default set (benchmarks.models.ARCHITECTURES), repeated here so that --help
# does not import torch.
ARCHITECTURES = (
    "resnet50", "gpt2", "deep_mlp", "bert_tiny", "llama_tiny", "mobilenetv3", "efficientnet_b0",
    "convnext_atto", "vit_tiny", "resnet18", "regnety_002",
)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="gradflow against one bare forward and backward pass.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="small inputs and few repeats: proves the harness, not the targets")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--models", type=_csv, default=list(ARCHITECTURES),
                        help=f"comma-separated (default {', '.join(ARCHITECTURES)}; also "
                             "junctions1000, cut_mlp (a model whose blocks are all cut), mlp4/16/64)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed (bare, gradflow) pairs per model (default 7, quick 3); "
                             "millisecond-sized models run a multiple of this")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds over every model for the timed figures (default 3, quick 1)")
    parser.add_argument("--memory-repeats", type=int, default=None,
                        help="fresh processes per side for peak memory (default 2, quick 1)")
    parser.add_argument("--figures", type=_csv, default=list(FIGURES),
                        help=f"comma-separated, from {', '.join(FIGURES)}")
    parser.add_argument("--onnx-models", type=_csv, default=list(DEFAULT_ONNX_MODELS),
                        help="models exported to ONNX for the executor figure")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice, one per core)")
    parser.add_argument("--batch-multiplier", type=int, default=1,
                        help="repeat every probe batch N times (e.g. 8 for GPU-sized batches)")
    parser.add_argument("--json", type=Path, default=None, help="write every number to FILE")
    args = parser.parse_args(argv)
    from benchmarks.models import BENCHES

    for name in args.models + args.onnx_models:
        if name not in BENCHES:
            parser.error(f"unknown model {name!r}: choose from {', '.join(BENCHES)}")
    for figure in args.figures:
        if figure not in FIGURES:
            parser.error(f"unknown figure {figure!r}: choose from {', '.join(FIGURES)}")
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.memory_repeats is None:
        args.memory_repeats = 1 if args.quick else 2
    return args


def machine(device: str) -> dict[str, Any]:
    import torch

    import gradflow

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = None
    try:
        with open("/proc/meminfo") as info:
            memory = int(next(line for line in info if line.startswith("MemTotal")).split()[1]) * 1024
    except (OSError, StopIteration):
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=False).stdout.strip() or None
    # The measured code is gradflow/ as it is on disk, which may differ from the commit.
    changed = subprocess.run(["git", "status", "--porcelain", "--", "gradflow"], cwd=ROOT,
                             capture_output=True, text=True, check=False).stdout.strip()
    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "gradflow": gradflow.__version__,
        "commit": commit,
        "gradflow_uncommitted_changes": bool(changed),
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
    }


def _guarded(results: dict[str, Any], figure: str, key: str | None, work: Any) -> None:
    """Run one measurement; a failure is recorded in its place and the run goes on.

    With --json the file is rewritten after every measurement, so a run cut short keeps what
    it measured."""
    try:
        value = work()
    except Exception as e:  # the run reports every figure it can
        traceback.print_exc(file=sys.stderr)
        value = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"}
    if key is None:
        results[figure] = value
    else:
        results.setdefault(figure, {})[key] = value
    _save(results)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from benchmarks.models import BENCHES, build
    from benchmarks.workloads import COMPARE_VARIANTS, steps, synchronizer, to_device

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    device = torch.device(args.device)
    sync = synchronizer(device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "machine": machine(args.device),
        "settings": {"quick": args.quick, "device": args.device, "models": args.models,
                     "repeats": args.repeats, "rounds": args.rounds,
                     "memory_repeats": args.memory_repeats,
                     "batch_multiplier": args.batch_multiplier,
                     "k": len(COMPARE_VARIANTS), "figures": args.figures},
    }
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    timed_models = args.models if set(TIMED) & set(args.figures) else []
    built = {}
    for name in timed_models:
        model, inputs = build(name, args.quick, args.batch_multiplier)
        model.to(device)
        built[name] = (model, to_device(inputs, device))
    rounds: dict[tuple[str, str], list[Any]] = {}
    loads = []
    for k in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for name in timed_models:
            bench = BENCHES[name]
            model, inputs = built[name]
            pairs = args.repeats * bench.pairs
            warmup = 1 if bench.pairs == 1 else 3
            for figure, key, bare, tool in (("inspect", "inspect", "bare", "inspect"),
                                            ("repeat", "repeat", "bare", "repeat"),
                                            ("floor", "floor", "bare", "norms"),
                                            ("compare", "compare", "bare-k", "compare"),
                                            ("compare", "compare_equal", "bare-k", "compare-equal")):
                if figure in args.figures:
                    _log(f"round {k + 1}/{args.rounds}, {key}: {name} ({pairs} pairs)")
                    done = rounds.setdefault((key, name), [])
                    _guarded(results, key, name, functools.partial(
                        _rounds, done, steps(model, inputs, bare), steps(model, inputs, tool), pairs,
                        warmup, sync))
    results["machine"]["load_average_rounds"] = loads
    built.clear()
    if {"inspect", "repeat", "floor"} <= set(args.figures):
        from benchmarks.table import overhead

        results["overhead"] = overhead(results)
    if "memory" in args.figures:
        from benchmarks.memory import peak_ratio

        for name in args.models:
            _log(f"memory: {name} ({args.memory_repeats} processes per side)")
            _guarded(results, "memory", name, functools.partial(
                peak_ratio, name, "bare", "inspect", args.device, args.quick, args.memory_repeats,
                args.threads, args.batch_multiplier))
    if "detect" in args.figures:
        from benchmarks.detection import detection

        _log("detect: 1,000 junctions")
        model, inputs = build("junctions1000")
        _guarded(results, "detect", None, lambda: detection(model, inputs, 5 if args.quick else 15))
    if "help" in args.figures:
        from benchmarks.startup import startup

        _log("help: gradflow --help")
        _guarded(results, "help", None, lambda: startup(3 if args.quick else 9))
    if "onnx" in args.figures:
        from benchmarks import onnx_exec

        missing = onnx_exec.missing()
        for name in args.onnx_models:
            if missing:
                results.setdefault("onnx", {})[name] = {"skipped": missing}
                continue
            _log(f"onnx: {name}")
            model, inputs = build(name, args.quick)
            bench = BENCHES[name]
            _guarded(results, "onnx", name, functools.partial(
                onnx_exec.onnx_figures, model, inputs, args.repeats * bench.pairs,
                1 if bench.pairs == 1 else 3))
    results["machine"]["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}
    results["machine"]["elapsed_s"] = time.perf_counter() - started
    return results


def _paired(bare: Any, tool: Any, pairs: int, warmup: int, sync: Any) -> dict[str, Any]:
    from benchmarks.timing import interleaved

    return interleaved(bare, tool, pairs, warmup, sync).summary()


def _rounds(done: list[Any], bare: Any, tool: Any, pairs: int, warmup: int, sync: Any) -> dict[str, Any]:
    """One more round of pairs; the summary of every round so far."""
    from benchmarks.timing import interleaved, over_rounds

    done.append(interleaved(bare, tool, pairs, warmup, sync))
    return over_rounds(done)


_json_path: Path | None = None


def _save(results: dict[str, Any]) -> None:
    if _json_path is not None:
        _json_path.write_text(json.dumps(results, indent=2) + "\n")


def _log(message: str) -> None:
    print(f"… {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    global _json_path
    args = parse(argv)
    _json_path = args.json
    results = run(args)
    from benchmarks.table import render

    render(results)
    _save(results)
    failed = [f for f in (*FIGURES, "compare_equal") if isinstance(results.get(f), dict) and (
        "error" in results[f] or any(isinstance(v, dict) and "error" in v for v in results[f].values()))]
    if failed:
        print(f"figures with errors: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
