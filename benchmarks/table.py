"""The benchmark's tables: one Rich table per figure, each row against its target."""

from __future__ import annotations

import statistics
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

TARGETS = {
    "inspect": 1.05,      # inspect / bare forward+backward, median ratio of pairs
    "inspect_median": 1.15,  # the median over the models of inspect's ratio
    "inspect_worst": 1.30,   # the worst model's
    "inspect_large": 1.05,   # ResNet-50's and GPT-2 small's
    "repeat": 1.10,       # a repeated measurement, on every model
    "compare": 1.05,      # compare (k variants) / one forward + k backward
    "memory": 1.05,       # peak step memory, inspect / bare
    "detect_s": 0.5,      # find_junctions on 1,000 junctions
    "help_s": 0.3,        # gradflow --help
}


FLOOR_ROOM = 0.03  # a target the floor leaves no room for counts as met within this of the floor
LARGE = ("resnet50", "gpt2")


def overhead(results: dict[str, Any]) -> dict[str, Any]:
    """The overhead targets, each with its figure, the floor it is allowed (the target, or the
    floor's ratio plus FLOOR_ROOM where the floor leaves less room) and whether it is met."""
    inspect, repeat, floor = (results.get(k) or {} for k in ("inspect", "repeat", "floor"))

    def ratio(rows: dict[str, Any], name: str) -> float | None:
        row = rows.get(name)
        return None if not row or "error" in row else row["ratio_median"]

    def check(value: float | None, target: float, floor_ratio: float | None) -> dict[str, Any]:
        allowed = target if floor_ratio is None else max(target, floor_ratio + FLOOR_ROOM)
        return {"value": value, "target": target, "floor": floor_ratio, "allowed": allowed,
                "met": value is not None and value <= allowed}

    names = [n for n in inspect if ratio(inspect, n) is not None]
    out: dict[str, Any] = {}
    if names:
        values = sorted((ratio(inspect, n), n) for n in names)
        floors = [ratio(floor, n) for n in names]
        known = [f for f in floors if f is not None]
        out["inspect median"] = check(statistics.median(v for v, _ in values),
                                      TARGETS["inspect_median"],
                                      statistics.median(known) if known else None)
        worst, worst_name = values[-1]
        out[f"inspect worst ({worst_name})"] = check(worst, TARGETS["inspect_worst"],
                                                     ratio(floor, worst_name))
        for name in LARGE:
            if name in names:
                out[f"inspect {name}"] = check(ratio(inspect, name), TARGETS["inspect_large"],
                                               ratio(floor, name))
    for name in repeat:
        if ratio(repeat, name) is not None:
            out[f"repeat {name}"] = check(ratio(repeat, name), TARGETS["repeat"], ratio(floor, name))
    return out


def _targeted(figure: str, model: str) -> bool:
    """Whether a row of `figure` has a target of its own: the floor has none, and inspect's
    1.05x is ResNet-50's and GPT-2 small's (the other models count in the median and worst)."""
    if figure == "floor":
        return False
    return figure != "inspect" or model in LARGE


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return "[yellow]n/a[/]"
    return "[green]met[/]" if value <= target else "[red]missed[/]"


def _s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _mib(n: float | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.0f} MiB" if abs(n) >= 100 * 2**20 else f"{n / 2**20:.1f} MiB"


def _x(r: float | None) -> str:
    return "-" if r is None else f"{r:.3f}x"


def render(results: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    machine = results["machine"]
    console.print(
        f"[bold]gradflow benchmark[/] {machine['date']}  {machine['cpu']} ({machine['cores']} cores, "
        f"torch {machine['torch']} with {machine['torch_threads']} threads, device "
        f"{machine['device']}){'  [yellow]--quick[/]' if results['settings']['quick'] else ''}"
        + (f"  batch x{results['settings']['batch_multiplier']}"
           if results["settings"].get("batch_multiplier", 1) != 1 else "")
    )
    for title, key, target_key, label in (
        ("1. inspect, a first measurement / bare forward+backward", "inspect", "inspect_large",
         "inspect"),
        ("1r. inspect, a repeated measurement (as watch makes) / bare forward+backward", "repeat",
         "repeat", "repeat"),
        ("1b. floor: bare + only the parameter gradients' norms (no hooks, no detection) / bare", "floor",
         "inspect", "norms"),
        (f"2. compare (k={results['settings']['k']}: baseline, sg-skip, sg-block) / forward + k "
         "backward", "compare", "compare", "compare"),
        (f"2b. compare, k={results['settings']['k']} unstopped variants (equal work) / forward + k "
         "backward", "compare_equal", "compare", "compare"),
    ):
        rows = results.get(key)
        if not rows:
            continue
        table = Table(title=title, title_justify="left")
        for column in ("model", "pairs", "bare", label, "ratio (median)", "rounds' spread", "range",
                       "cpu ratio", f"≤{TARGETS[target_key]}"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for name, row in rows.items():
            if "error" in row:
                table.add_row(name, "", "", "", f"[red]{row['error']}[/]", "", "", "", "")
                continue
            spread = (f"{row['spread_min']:.3f}–{row['spread_max']:.3f} ({row['rounds']})"
                      if "spread_min" in row else "-")
            table.add_row(
                name, str(row["pairs"]), _s(row["bare_median_s"]), _s(row["tool_median_s"]),
                _x(row["ratio_median"]), spread, f"{row['ratio_min']:.2f}–{row['ratio_max']:.2f}",
                _x(row["cpu_ratio_median"]),
                verdict(row["ratio_median"], TARGETS[target_key]) if _targeted(key, name) else "-",
            )
        console.print(table)
    checks = results.get("overhead")
    if checks:
        table = Table(title=f"overhead: the targets (met within {FLOOR_ROOM}x of the floor where the floor "
                      "leaves less room)", title_justify="left")
        for column in ("target", "value", "≤", "floor", "allowed", "verdict"):
            table.add_column(column, justify="left" if column == "target" else "right")
        for name, check in checks.items():
            table.add_row(name, _x(check["value"]), f"{check['target']:.2f}x", _x(check["floor"]),
                          _x(check["allowed"]), "[green]met[/]" if check["met"] else "[red]missed[/]")
        console.print(table)
    memory = results.get("memory")
    if memory:
        table = Table(title="3. peak step memory, inspect / bare (fresh process each)",
                      title_justify="left")
        for column in ("model", "workers", "bare", "inspect", "extra", "ratio",
                       "process peak ratio", f"target ≤{TARGETS['memory']}"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for name, row in memory.items():
            if "error" in row:
                table.add_row(name, "", "", "", "", f"[red]{row['error']}[/]", "", "")
                continue
            table.add_row(name, str(row["workers"]), _mib(row["bare_step_peak_bytes"]),
                          _mib(row["tool_step_peak_bytes"]), _mib(row["extra_bytes"]),
                          _x(row["ratio"]), _x(row["process_ratio"]),
                          verdict(row["ratio"], TARGETS["memory"]) if row["ratio"] is not None
                          else "[yellow]n/a: bare < 16 MiB[/]")
        console.print(table)
    detect = results.get("detect")
    if detect:
        table = Table(title="4. junction detection", title_justify="left")
        table.add_column("measure")
        table.add_column("value", justify="right")
        table.add_column("target", justify="right")
        if "error" in detect:
            table.add_row("error", f"[red]{detect['error']}[/]", "")
        else:
            fwd = detect["forward"]
            table.add_row(f"find_junctions ({detect['junctions_found']} junctions)",
                          _s(detect["find_junctions_median_s"]),
                          f"<{TARGETS['detect_s']} s "
                          + verdict(detect["find_junctions_median_s"], TARGETS["detect_s"]))
            table.add_row("bare forward + loss", _s(fwd["bare_median_s"]), "")
            table.add_row("recorded forward + loss", _s(fwd["tool_median_s"]),
                          f"{_x(fwd['ratio_median'])} bare")
            table.add_row("locate (forward, detect, name)", _s(detect["locate_median_s"]), "")
            table.add_row("naming (locate - forward - detect)", _s(detect["naming_estimate_s"]), "")
        console.print(table)
    startup = results.get("help")
    if startup:
        table = Table(title="5. command-line start-up", title_justify="left")
        table.add_column("measure")
        table.add_column("median", justify="right")
        table.add_column("target", justify="right")
        if "error" in startup:
            table.add_row("error", f"[red]{startup['error']}[/]", "")
        else:
            table.add_row(f"{startup['command']} ({startup['runs']} runs)", _s(startup["median_s"]),
                          f"<{TARGETS['help_s']} s " + verdict(startup["median_s"], TARGETS["help_s"]))
            table.add_row("python -c pass", _s(startup["python_startup_median_s"]), "")
        console.print(table)
    onnx = results.get("onnx")
    if onnx:
        table = Table(title="ONNX executor (gradflow.onnx.load_onnx_model)", title_justify="left")
        for column in ("model", "executor bare", "inspect", "inspect ratio", "executor / torch bare",
                       f"target ≤{TARGETS['inspect']}"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for name, row in onnx.items():
            if "error" in row or "skipped" in row:
                table.add_row(name, "", "", f"[yellow]{row.get('skipped') or row['error']}[/]", "", "")
                continue
            ins, exe = row["inspect"], row["executor_vs_torch"]
            table.add_row(name, _s(ins["bare_median_s"]), _s(ins["tool_median_s"]),
                          _x(ins["ratio_median"]), _x(exe["ratio_median"]),
                          verdict(ins["ratio_median"], TARGETS["inspect"]))
        console.print(table)
    load = machine.get("load_average")
    if load:
        console.print(f"load average (1 min) before {load['before']:.2f}, after {load['after']:.2f}")
