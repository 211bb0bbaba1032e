"""Start-up time of the command line: `gradflow --help` as a user runs it, in a fresh process."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def gradflow_command() -> list[str]:
    """The installed `gradflow` script next to this interpreter, else `python -m gradflow`."""
    script = Path(sys.executable).with_name("gradflow")
    if script.exists():
        return [str(script)]
    found = shutil.which("gradflow")
    return [found] if found else [sys.executable, "-m", "gradflow"]


def wall(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        tick = time.perf_counter()
        subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
        times.append(time.perf_counter() - tick)
    return times


def startup(runs: int) -> dict[str, Any]:
    """Median wall time of `gradflow --help` and, for scale, of a bare `python -c pass`."""
    command = gradflow_command() + ["--help"]
    wall(command, 1)  # page cache
    help_times = wall(command, runs)
    python_times = wall([sys.executable, "-c", "pass"], runs)
    timings = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import gradflow.cli.app"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    ).stderr
    modules = []  # (cumulative microseconds, module) per line of -X importtime
    for line in timings.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
            modules.append((int(parts[1]), parts[2].strip()))
    heavy = sorted(modules)[-5:]
    return {
        "command": " ".join(Path(command[0]).name if i == 0 else c for i, c in enumerate(command)),
        "runs": runs,
        "median_s": statistics.median(help_times),
        "min_s": min(help_times),
        "max_s": max(help_times),
        "python_startup_median_s": statistics.median(python_times),
        "torch_imported": any(name == "torch" for _, name in modules),
        "heaviest_imports_us": [[name, us] for us, name in reversed(heavy)],
    }
