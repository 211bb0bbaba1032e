"""gradflow track: train a copy of the model and follow each junction's gradient flow."""

from __future__ import annotations

import enum
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from gradflow.cli.options import (
    OUTPUT,
    PROBE_OPTIONS,
    Arch,
    Debug,
    LossOption,
    Pretrained,
    ProbeOptions,
    Source,
    Trust,
    with_probe_options,
)
from gradflow.cli.session import build_probe, emit_history, guard, load
from gradflow.errors import OptionError
from gradflow.track.result import Optimizer  # no torch import: the option set the API uses

TRAINING = "Training"


class TrackFormat(str, enum.Enum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


DataFile = Annotated[Path | None, typer.Option(
    "--data", help="Train on this data set instead of the probe batch: .pt (dict with inputs/x and "
    "targets/y, or a tuple (inputs, targets)) or .npz (arrays x/y or inputs/targets).",
    rich_help_panel=TRAINING, show_default=False)]
Steps = Annotated[int, typer.Option("--steps", min=1, help="Training steps (optimizer updates).",
                                    rich_help_panel=TRAINING)]
Every = Annotated[int, typer.Option(
    "--every", min=1, help="Record every N steps (steps 0, N, 2N, ...); other steps are plain "
    "forward/backward passes with no hooks.", rich_help_panel=TRAINING)]
OptimizerOpt = Annotated[Optimizer, typer.Option(
    "--optimizer", help="sgd, adam or adamw (torch.optim defaults besides --lr).",
    rich_help_panel=TRAINING)]
Lr = Annotated[float, typer.Option("--lr", help="Learning rate.", rich_help_panel=TRAINING)]
TrackLoss = Annotated[LossOption, typer.Option(
    "--loss", help="With --data: ce (integer class targets), mse, or auto (ce for integer targets, "
    "else mse). Without: the probe loss of inspect (auto, sum, mean, mse, ce on seeded labels).",
    rich_help_panel=TRAINING)]
TrackBatch = Annotated[int | None, typer.Option(
    "--batch-size", min=1, help="Batch size drawn from --data (default 32), or of an inferred "
    "probe batch (default 8, as inspect).", rich_help_panel=TRAINING, show_default=False)]
PlotFile = Annotated[Path | None, typer.Option(
    "--plot", help="Write a figure: one panel per junction (grad_skip and grad_block against the "
    "step, log scale) and the loss. .png, .svg or .pdf; needs the `plot` extra (matplotlib).",
    rich_help_panel=OUTPUT, show_default=False)]
TrackFormatOpt = Annotated[TrackFormat, typer.Option(
    "--format", "-f", help="table, json (every record) or csv (one row per step and junction).",
    rich_help_panel=OUTPUT)]
TrackOutput = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Write the records to this file (json, or csv for a .csv file or "
    "--format csv).", rich_help_panel=OUTPUT, show_default=False)]
ARMS = "Arms: copies trained side by side from the same weights"
SgSkipArm = Annotated[bool, typer.Option(
    "--sg-skip", help="Also train a copy with sg(x) + f(x) at the selected junctions, on every step "
    "(no gradient over the skip path), and show it beside the baseline.", rich_help_panel=ARMS)]
SgBlockArm = Annotated[bool, typer.Option(
    "--sg-block", help="Also train a copy with x + sg(f(x)) at the selected junctions, on every "
    "step (no gradient through the block into x).", rich_help_panel=ARMS)]
NoResidualArm = Annotated[bool, typer.Option(
    "--no-residual", help="Also train a copy with y = f(x) at the selected junctions: the residual "
    "connection removed, in the forward pass too. Records the loss.", rich_help_panel=ARMS)]
TrackAt = Annotated[list[str] | None, typer.Option(
    "--at", help="Record and plot only these junctions: a glob on names, an index or a range "
    "(3:7); repeatable. Default: all.", show_default=False)]


@with_probe_options(leave_out=("mode", "dtype", "shard", "collective_timeout"))
def track_command(
    source: Source,
    data: DataFile = None,
    steps: Steps = 100,
    every: Every = 1,
    optimizer: OptimizerOpt = Optimizer.ADAM,
    lr: Lr = 1e-3,
    loss: TrackLoss = LossOption.AUTO,
    batch_size: TrackBatch = None,
    at: TrackAt = None,
    sg_skip: SgSkipArm = False,
    sg_block: SgBlockArm = False,
    no_residual: NoResidualArm = False,
    arch: Arch = None,
    trust: Trust = False,
    pretrained: Pretrained = False,
    probe: ProbeOptions = PROBE_OPTIONS,
    plot: PlotFile = None,
    format: TrackFormatOpt = TrackFormat.TABLE,
    output: TrackOutput = None,
    debug: Debug = False,
) -> None:
    """Train a copy of the model and record every junction's gradient flow over the steps.

    Each step is one forward and one backward pass; on recorded steps the measurement rides on
    that backward pass. The model (object or file) is never modified. At the end: a table with
    sparklines of grad_skip and grad_block per junction, the step where the block path first
    overtook the skip path, and the loss curve. Ctrl-C stops and keeps what was recorded.

    With --sg-skip, --sg-block or --no-residual, copies are trained side by side from the same
    weights on the same batches, a baseline and one per arm, and their losses and junction flows
    are shown side by side: does training with sg(x) + f(x) behave like the network without its
    residual connection?

    **Examples**

      gradflow track model.py --steps 200 --lr 1e-3 --optimizer adam

      gradflow track model.py --data train.pt --batch-size 64 --steps 500 --every 5 --plot flow.png

      gradflow track model.onnx --steps 100 --format csv -o flow.csv

      gradflow track model.py --steps 300 --sg-skip --no-residual
    """
    with guard(debug):
        if data is not None and (probe.input_file is not None or probe.input_shapes):
            raise OptionError("--data gives the training inputs: drop --input / --input-shape")
        if output is not None and output.suffix.lower() == ".csv" and format is TrackFormat.JSON:
            raise OptionError(f"--format json with -o {output.name}: use a .json file or --format csv")
        if plot is not None:
            from gradflow.render.plot import require_matplotlib

            require_matplotlib(plot)  # before training, not after it
        loaded, _ = load(source, arch, trust, probe.device, probe.seed, pretrained)
        from gradflow.track.data import load_data
        from gradflow.track.train import track, track_arms

        if data is not None:
            training = load_data(data)
            batch = None
        else:
            training = None
            batch = build_probe(loaded, probe)
        options: dict[str, Any] = dict(
            data=training, steps=steps, every=every, optimizer=optimizer.value, lr=lr,
            loss=probe.loss.value, batch_size=probe.batch_size or 32, seed=probe.seed, at=at,
            source=source)
        arms = sg_skip or sg_block or no_residual
        with _Progress(steps * (1 + sg_skip + sg_block + no_residual)) as progress:
            if arms:
                both = track_arms(loaded.module, batch, sg_skip=sg_skip, sg_block=sg_block,
                                  no_residual=no_residual, on_step=progress.update, **options)
            else:
                result = track(loaded.module, batch, on_step=progress.update, **options)
        if arms:
            if any(arm.interrupted for arm in both.arms.values()):
                print("gradflow: interrupted; keeping the arms trained so far", file=sys.stderr)
            _emit_arms(both, format, output, plot)
            return
        if result.interrupted:
            print(f"gradflow: interrupted after {result.steps_run} of {steps} steps; keeping "
                  f"{len(result.losses)} recorded step(s)", file=sys.stderr)
        _emit(result, format, output, plot)


def _emit(result: Any, format: TrackFormat, output: Path | None, plot: Path | None) -> None:
    from gradflow.render.plot import plot_track
    from gradflow.render.track import print_track, track_csv, track_json

    emit_history(format, output, plot, table=lambda: print_track(result),
                 json=lambda: track_json(result), csv=lambda: track_csv(result),
                 draw=lambda path: plot_track(result, path))


def _emit_arms(arms: Any, format: TrackFormat, output: Path | None, plot: Path | None) -> None:
    from gradflow.render.arms import arms_csv, arms_json, print_arms
    from gradflow.render.plot import plot_arms

    emit_history(format, output, plot, table=lambda: print_arms(arms),
                 json=lambda: arms_json(arms), csv=lambda: arms_csv(arms),
                 draw=lambda path: plot_arms(arms, path))


class _Progress:
    """A Rich progress bar on stderr with the latest recorded loss and steps per second; shown
    only on a terminal, so piped output and logs stay clean."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} steps/s"),
            TimeRemainingColumn(), console=console, transient=True,
            disable=not console.is_terminal,
        )
        self.task = self.progress.add_task("training", total=total, loss="–", rate="–")
        self.started = time.perf_counter()

    def __enter__(self) -> _Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, step: Any) -> None:
        from gradflow.render.numbers import num

        elapsed = time.perf_counter() - self.started
        rate = f"{step.done / elapsed:.1f}" if elapsed > 0 else "–"
        self.progress.update(self.task, completed=step.done, loss=num(step.loss), rate=rate)
