"""gradflow check: a CI gate on gradient flow. Exit 0 when every rule passes, 1 when one fails."""

from __future__ import annotations

import enum
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gradflow.cli.options import (
    OUTPUT,
    PROBE_OPTIONS,
    Arch,
    DeadBelow,
    Debug,
    ExplodingAbove,
    Pretrained,
    ProbeOptions,
    Source,
    SurvivalBelow,
    Trust,
    VanishingBelow,
    with_probe_options,
)
from gradflow.cli.session import build_probe, load, write_output
from gradflow.cli.torchrun import session

if TYPE_CHECKING:
    from gradflow.gate import CheckResult

RULES = "Rules"
BASELINE = "Baseline"


class CheckFormat(str, enum.Enum):
    TABLE = "table"
    JSON = "json"
    JUNIT = "junit"
    GITHUB = "github"
    MARKDOWN = "markdown"


Seeds = Annotated[int | None, typer.Option(
    "--seeds", min=1, help="Run the probe with seeds `--seed` to `--seed`+N-1 (a new batch per "
    "seed unless the input comes from `--input` or `example_input()`; new dropout and labels "
    "always) and judge the worst case.", show_default="1", rich_help_panel=RULES)]
WarmupSteps = Annotated[int | None, typer.Option(
    "--warmup-steps", min=0, help="When a junction is dead or vanishing at initialisation and no "
    "gate explains it, or the gradient does not survive the depth, measure again after this many "
    "Adam steps (lr 0.01) on a copy of the model with the probe batch: what is alive then is "
    "dormant, not dead. 0 turns the warm-up off.", show_default="3", rich_help_panel=RULES)]
AllowUnused = Annotated[list[str] | None, typer.Option(
    "--allow-unused", metavar="PATTERN", help="unused, no-grad: parameters allowed to get no "
    "gradient, a glob on names (`pooler.*`, `*.alpha`) or a module name; repeatable.",
    show_default=False,
    rich_help_panel=RULES)]
Enable = Annotated[list[str] | None, typer.Option(
    "--enable", metavar="RULE", help="Make a rule fail the check again (one the configuration "
    "turned off or to a warning); repeatable.", show_default=False, rich_help_panel=RULES)]
Warn = Annotated[list[str] | None, typer.Option(
    "--warn", metavar="RULE", help="Report a rule's violations as warnings: shown, exit 0; "
    "repeatable.", show_default=False, rich_help_panel=RULES)]
Disable = Annotated[list[str] | None, typer.Option(
    "--disable", metavar="RULE", help="Turn a rule off; repeatable.", show_default=False,
    rich_help_panel=RULES)]
Config = Annotated[Path | None, typer.Option(
    "--config", help="Read `[tool.gradflow.check]` from this TOML file (or its top-level keys) "
    "instead of the pyproject.toml found from the working directory.", show_default=False,
    rich_help_panel=RULES)]
BaselineOpt = Annotated[Path | None, typer.Option(
    "--baseline", help="regression: compare with this report (from `--write-baseline`, "
    "or `gradflow inspect --format json`); fail on a junction missing or new, or a metric moved by "
    "more than --tolerance times.", show_default=False, rich_help_panel=BASELINE)]
Tolerance = Annotated[float | None, typer.Option(
    "--tolerance", help="regression: the factor a metric may move by, in either direction.",
    show_default="4", rich_help_panel=BASELINE)]
WriteBaseline = Annotated[Path | None, typer.Option(
    "--write-baseline", help="Write this run's report (gradflow/report@2, first seed) to this "
    "file; the rules still decide the exit code.", show_default=False, rich_help_panel=BASELINE)]
CheckFormatOpt = Annotated[CheckFormat, typer.Option(
    "--format", "-f", help="table (for people), json (the report plus violations), junit (JUnit "
    "XML), github (workflow-command annotations) or markdown (a pull-request comment).",
    rich_help_panel=OUTPUT)]
CheckOutput = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Write --format to this file and the table to stdout (with --format "
    "table, the file's suffix picks: .xml junit, .md markdown, else json).", show_default=False,
    rich_help_panel=OUTPUT)]


@with_probe_options()
def check_command(
    source: Source,
    arch: Arch = None,
    trust: Trust = False,
    pretrained: Pretrained = False,
    probe: ProbeOptions = PROBE_OPTIONS,
    seeds: Seeds = None,
    survival_below: SurvivalBelow = None,
    vanishing_below: VanishingBelow = None,
    dead_below: DeadBelow = None,
    exploding_above: ExplodingAbove = None,
    warmup_steps: WarmupSteps = None,
    allow_unused: AllowUnused = None,
    enable: Enable = None,
    warn: Warn = None,
    disable: Disable = None,
    config: Config = None,
    baseline: BaselineOpt = None,
    tolerance: Tolerance = None,
    write_baseline: WriteBaseline = None,
    format: CheckFormatOpt = CheckFormat.TABLE,
    output: CheckOutput = None,
    debug: Debug = False,
) -> None:
    """Fail the build when gradient flow breaks: run the probe and judge it by rules.

    **Exit codes**: 0 every rule passes, 1 a rule fails, 2 the run could not be made (bad source,
    bad input, bad option, unreadable baseline or configuration).

    **Rules**, each on by default (`--disable RULE`, `--warn RULE`). Settings come from the
    defaults, then `[tool.gradflow.check]` in the pyproject.toml found from the working directory
    (or `--config FILE`), then the flags.

    - **nonfinite**: a NaN or Inf in the loss, a junction metric or a parameter gradient.
    - **unused**: a trainable parameter the forward pass never used (a layer built and never
      called); `--allow-unused PATTERN` for one unused on purpose (a mask token).
    - **no-grad**: a trainable parameter the forward pass used but no gradient reaches (a stray
      `.detach()`, `no_grad` or `.data` on the way); `--allow-unused PATTERN`.
    - **zero-grad**: a trainable parameter whose gradient is exactly 0 (a zero-initialised gate,
      dead ReLUs, a bias right before a norm): reported as a warning, does not fail.
    - **cut**: a junction's skip or block reaches the add as a detached copy (`x.detach() + f(x)`,
      `x + f(x).detach()`): no gradient passes that path.
    - **vanishing**: `grad_in` at the first junction / `grad_out` at the last (the survival)
      below 0.01 (`--survival-below`; healthy models measure 0.9 to 11).
    - **dead**: a junction's block passes back below 0.001 of what its skip does, to its fork
      (`block_ratio`) and to anything else it reads (`--dead-below`; healthy models measure from
      about 0.006). A dormant junction passes: one held closed by a gate (a zero-initialised norm
      scale or gain, a 1e-6 layer scale) or alive after the warm-up (`--warmup-steps`).
    - **exploding**: a junction's `grad_out` or `grad_in` above 1000 times the gradient at the
      output (`--exploding-above`; healthy models measure up to 36).
    - **regression**: with `--baseline`, a junction missing or new, or a metric moved by more
      than 4 times either way (`--tolerance`; a new init or probe batch moves them up to 2.7x).

    `--seeds N` runs the probe with N seeds and judges the worst case. `--vanishing-below`,
    `--dead-below` and `--exploding-above` set each junction's status as in `inspect`; a junction
    `vanishing` or `dead` with no gate to explain it is measured again after the warm-up.

    **Examples**

      gradflow check model.py

      gradflow check model.py --format junit -o gradflow.xml

      gradflow check model.py --format github --seeds 3

      gradflow check model.py --write-baseline gradflow-baseline.json

      gradflow check model.py --baseline gradflow-baseline.json --tolerance 4
    """
    with session(probe, debug) as run:
        from gradflow.gate import settings_from
        from gradflow.gate.config import load_config

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FutureWarning)
            configured = load_config(config).values
        for warning in caught if run.lead else ():  # a renamed key, read under its new name
            typer.echo(f"gradflow: warning: {warning.message}", err=True)
        settings = settings_from(
            configured, survival_below=survival_below, vanishing_below=vanishing_below,
            dead_below=dead_below,
            exploding_above=exploding_above, tolerance=tolerance, warmup_steps=warmup_steps,
            allow_unused=allow_unused,
            enable=enable, warn=warn, disable=disable,
        )
        baseline_path = baseline or (Path(configured["baseline"]) if "baseline" in configured else None)
        count = seeds if seeds is not None else int(configured.get("seeds", 1))

        from gradflow.drivers.check import measure_seeds, read_baseline, save_baseline, seed_range
        from gradflow.gate.evaluate import evaluate

        chosen = seed_range(probe.seed, count)
        before = read_baseline(baseline_path) if baseline_path is not None else None
        loaded, load_seconds = load(source, arch, trust, run.device(probe.device), probe.seed, pretrained)

        def inputs_for(probe_seed: int):  # type: ignore[no-untyped-def]
            return run.split(build_probe(loaded, replace(probe, seed=probe_seed)))

        model = run.wrap(loaded.module, inputs_for(chosen[0]), probe)
        reports = measure_seeds(
            model, inputs_for, chosen, settings=settings, loss=probe.loss.value,
            mode=probe.mode.value, dtype=probe.precision, source=source, source_format=loaded.format,
            timings={"load": load_seconds},
        )
        result = evaluate(reports, settings, before,
                          None if baseline_path is None else str(baseline_path))
        if run.lead:
            if write_baseline is not None:
                save_baseline(write_baseline, reports[0])
                typer.echo(f"gradflow: wrote baseline {write_baseline}", err=True)
            emit_check(result, format, output)
        if result.exit_code:
            raise typer.Exit(result.exit_code)


def emit_check(result: CheckResult, format: CheckFormat, output: Path | None) -> None:
    """--format goes to stdout, or with --output to the file while the table goes to stdout."""
    from gradflow.render.check import check_json, print_check
    from gradflow.render.check_markdown import check_markdown
    from gradflow.render.github import check_github
    from gradflow.render.junit import check_junit

    renderers = {
        CheckFormat.JSON: check_json,
        CheckFormat.JUNIT: check_junit,
        CheckFormat.GITHUB: check_github,
        CheckFormat.MARKDOWN: check_markdown,
    }
    if output is not None:
        chosen = format
        if format is CheckFormat.TABLE:
            suffix = output.suffix.lower()
            chosen = {".xml": CheckFormat.JUNIT, ".md": CheckFormat.MARKDOWN}.get(suffix, CheckFormat.JSON)
        write_output(output, renderers[chosen](result))
        print_check(result)
    elif format is CheckFormat.TABLE:
        print_check(result)
    else:
        text = renderers[format](result)
        print(text, end="" if text.endswith("\n") else "\n")
