"""Options shared by the commands, declared once as Annotated types, and the probe options
parsed once into one `ProbeOptions` object that every command gets (`with_probe_options`)."""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from gradflow.choices import Loss, Mode

MODEL = "Model"
PROBE = "Probe"
DISTRIBUTED = "Data-parallel under torchrun"
VERDICT = "Verdict thresholds"
OUTPUT = "Output"


class Shard(str, enum.Enum):
    """How each rank holds the model under torchrun."""

    DDP = "ddp"
    FSDP = "fsdp"


class Format(str, enum.Enum):
    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"


# The API's option sets, under the names the commands use.
LossOption = Loss
ModeOption = Mode


SOURCE_HELP = (
    "The model: file.py[:NAME] (NAME: a Module class or a function; default `build`), "
    "package.module:NAME or timm:NAME, each optionally with constructor arguments "
    "NAME(key=value, ...); a Hugging Face model directory or hf:ORG/NAME; a checkpoint "
    ".pt/.pth/.ckpt or .safetensors (a state dict needs --arch); a TorchScript archive, a "
    "torch.export .pt2, or an .onnx graph."
)

Source = Annotated[str, typer.Argument(help=SOURCE_HELP, show_default=False)]
Arch = Annotated[
    str | None,
    typer.Option(
        "--arch",
        help=(
            "Code that builds the model for a state-dict checkpoint (.pt/.pth/.ckpt/.safetensors): "
            "file.py[:NAME], package.module:NAME or timm:NAME, optionally with constructor arguments, "
            "e.g. 'torchvision.models:resnet18(num_classes=10)'."
        ),
        rich_help_panel=MODEL,
    ),
]
Trust = Annotated[
    bool,
    typer.Option(
        "--trust",
        help=(
            "Allow what runs code from the source: unpickling a pickled module or checkpoint, a "
            "Hugging Face config's custom code (auto_map). Only for sources you trust."
        ),
        rich_help_panel=MODEL,
    ),
]
Pretrained = Annotated[
    bool,
    typer.Option(
        "--pretrained",
        help=(
            "timm:NAME: build it with timm's pretrained weights (from the Hugging Face Hub, or "
            "its local cache when offline)."
        ),
        rich_help_panel=MODEL,
    ),
]
InputFile = Annotated[
    Path | None,
    typer.Option(
        "--input",
        help=(
            "Probe inputs from a file: .pt (tensor, tuple of positional inputs, or dict of "
            "keyword inputs), .npy, .npz."
        ),
        rich_help_panel=PROBE,
        show_default=False,
    ),
]
InputShape = Annotated[
    list[str] | None,
    typer.Option(
        "--input-shape",
        help=("Shape of a probe input, e.g. 8,3,224,224; repeat once per positional input."),
        rich_help_panel=PROBE,
        show_default=False,
    ),
]
InputDtype = Annotated[
    str | None,
    typer.Option(
        "--input-dtype",
        help=("dtype of --input-shape inputs: float32 (the default), float16, bfloat16, int64, ..."),
        rich_help_panel=PROBE,
        show_default=False,
    ),
]
InputHigh = Annotated[
    int | None,
    typer.Option(
        "--input-high",
        min=1,
        help=(
            "Integer inputs (--input-shape with an integer --input-dtype, an ONNX graph's integer "
            "inputs, inferred token ids) are drawn from [0, HIGH); default: the first embedding's "
            "vocabulary size."
        ),
        rich_help_panel=PROBE,
        show_default=False,
    ),
]
Dims = Annotated[
    list[str] | None,
    typer.Option(
        "--dim",
        help=("Value of a named (symbolic) input dimension of an ONNX graph, NAME=VALUE; repeatable."),
        rich_help_panel=PROBE,
        show_default=False,
    ),
]
BatchSize = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        min=1,
        help=(
            "Batch size of an inferred probe input or of an ONNX graph's unknown batch dimension "
            "(default 8); with --input-shape, the first size is the batch."
        ),
        rich_help_panel=PROBE,
        show_default=False,
    ),
]
Seed = Annotated[
    int,
    typer.Option(
        "--seed",
        help=(
            "Seeds the probe batch, dropout and `ce` labels, and torch's RNG right before code "
            "(file.py, package.module:NAME, --arch) builds the model, so that a build() that "
            "does not seed itself gives the same weights every run."
        ),
        rich_help_panel=PROBE,
    ),
]
LossOpt = Annotated[
    LossOption,
    typer.Option(
        "--loss",
        help=(
            "Scalar to differentiate: sum, mean, mse (mean of squares), ce (cross entropy on "
            "seeded labels), auto (ce for class scores, else mse)."
        ),
        rich_help_panel=PROBE,
    ),
]
ModeOpt = Annotated[
    ModeOption,
    typer.Option(
        "--mode",
        help=(
            "Run the probe in train or eval mode (an ONNX graph or torch.export program runs in the "
            "mode it was exported in)."
        ),
        rich_help_panel=PROBE,
    ),
]
# The verdict thresholds: the same flag means the same in every command that measures. Left out,
# each is None and takes the default of `gradflow.engine.verdicts.Thresholds` (or, in `check`,
# the configuration's value first).
VanishingBelow = Annotated[
    float | None,
    typer.Option(
        "--vanishing-below",
        help=("A junction is `vanishing` when grad_in / |dL/d output| is below this."),
        rich_help_panel=VERDICT,
        show_default="0.001",
    ),
]
ExplodingAbove = Annotated[
    float | None,
    typer.Option(
        "--exploding-above",
        help=("A junction is `exploding` when grad_in or grad_out / |dL/d output| is above this."),
        rich_help_panel=VERDICT,
        show_default="1000",
    ),
]
DeadBelow = Annotated[
    float | None,
    typer.Option(
        "--dead-below",
        help=("A junction is `dead` when block_ratio (grad_block / grad_skip) is below this."),
        rich_help_panel=VERDICT,
        show_default="0.001",
    ),
]
SurvivalBelow = Annotated[
    float | None,
    typer.Option(
        "--survival-below",
        help=(
            "The `vanishing` rule of check: fail when grad_in at the first junction / grad_out "
            "at the last (the survival) is below this."
        ),
        rich_help_panel=VERDICT,
        show_default="0.01",
    ),
]
SgSkip = Annotated[bool, typer.Option("--sg-skip", help="Stop the gradient on the skip path: sg(x) + f(x).")]
SgBlock = Annotated[
    bool, typer.Option("--sg-block", help="Stop the gradient on the block path: x + sg(f(x)).")
]
At = Annotated[
    list[str] | None,
    typer.Option(
        "--at",
        help=(
            "Select junctions: a glob on names (layer3.*), an index (3) or a range (3:7, end "
            "excluded); repeatable. With --sg-skip/--sg-block: where the stop-gradient goes "
            "(every junction is still reported). Alone: the only junctions measured."
        ),
        show_default=False,
    ),
]
MaxJunctions = Annotated[
    int | None,
    typer.Option(
        "--max-junctions",
        min=1,
        help=("Measure at most N junctions, evenly spread over depth (keeps a 100-layer model cheap)."),
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        help=("Where the probe runs: auto (cuda if present, else cpu), cpu, cuda, cuda:N, mps."),
        rich_help_panel=PROBE,
    ),
]
DtypeOpt = Annotated[
    str,
    typer.Option(
        "--dtype",
        help=(
            "Probe precision: float32, or bfloat16 / float16 under torch.autocast (norms are "
            "always accumulated in float32; the report records it)."
        ),
        rich_help_panel=PROBE,
    ),
]
FormatOpt = Annotated[
    Format,
    typer.Option("--format", "-f", help="table, json (the report only) or markdown.", rich_help_panel=OUTPUT),
]
OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help=(
            "Also write the report to this file: as --format json or markdown; with --format "
            "table, Markdown for a .md file, else JSON."
        ),
        rich_help_panel=OUTPUT,
        show_default=False,
    ),
]
Debug = Annotated[
    bool,
    typer.Option("--debug", help="Show the full traceback when something fails.", rich_help_panel=OUTPUT),
]
MemoryLimit = Annotated[
    str,
    typer.Option(
        "--memory-limit",
        help=(
            "Refuse a probe whose batch, or batch plus parameter gradients, would not fit: auto "
            "(memory free on the device), a size such as 8GiB, or none."
        ),
        rich_help_panel=PROBE,
    ),
]

ShardOpt = Annotated[
    Shard | None,
    typer.Option(
        "--shard",
        help=(
            "Run data-parallel, one process per rank started by torchrun (torchrun "
            "--nproc-per-node N -m gradflow ...): each rank builds the model, wraps it in "
            "DistributedDataParallel (ddp) or shards it with FSDP2's fully_shard on each layer "
            "that carries junctions and on the root (fsdp), and measures its slice of the probe "
            "batch; the report is the one of the loss the ranks optimise together, printed by rank 0."
        ),
        rich_help_panel=DISTRIBUTED,
        show_default=False,
    ),
]
CollectiveTimeout = Annotated[
    float,
    typer.Option(
        "--collective-timeout",
        min=1,
        help=(
            "With --shard: seconds a rank waits for the others in a collective before every rank "
            "stops with exit code 2 (a rank that fails stops the others at once)."
        ),
        rich_help_panel=DISTRIBUTED,
    ),
]


DEFAULT_BATCH = 8
DEFAULT_COLLECTIVE_TIMEOUT = 300.0


@dataclass(frozen=True)
class ProbeOptions:
    """The probe options as given, parsed once and shared by every command: how the probe batch
    is built (None where the user left an option out, so that an option the chosen probe source
    would ignore can be refused instead) and how it runs."""

    input_file: Path | None = None
    input_shapes: tuple[str, ...] | None = None
    input_dtype: str | None = None  # float32 when left out
    input_high: int | None = None
    dims: tuple[str, ...] | None = None
    batch_size: int | None = None  # DEFAULT_BATCH when left out
    seed: int = 0
    memory_limit: str = "auto"
    device: str = "auto"
    precision: str = "float32"  # --dtype: float32, or bfloat16/float16 under torch.autocast
    loss: Loss = Loss.AUTO
    mode: Mode = Mode.TRAIN
    shard: Shard | None = None  # data-parallel ranks under torchrun (gradflow.cli.torchrun)
    collective_timeout: float = DEFAULT_COLLECTIVE_TIMEOUT

    @property
    def batch(self) -> int:
        return self.batch_size or DEFAULT_BATCH


# What a command declares as its `probe` parameter; `with_probe_options` replaces it.
PROBE_OPTIONS = ProbeOptions()

# Each probe option: the command-line parameter, its declaration, its default, and the
# ProbeOptions field it fills.
_PROBE_PARAMETERS: tuple[tuple[str, Any, Any, str], ...] = (
    ("input_file", InputFile, None, "input_file"),
    ("input_shape", InputShape, None, "input_shapes"),
    ("input_dtype", InputDtype, None, "input_dtype"),
    ("input_high", InputHigh, None, "input_high"),
    ("dim", Dims, None, "dims"),
    ("batch_size", BatchSize, None, "batch_size"),
    ("seed", Seed, 0, "seed"),
    ("loss", LossOpt, LossOption.AUTO, "loss"),
    ("mode", ModeOpt, ModeOption.TRAIN, "mode"),
    ("device", DeviceOpt, "auto", "device"),
    ("dtype", DtypeOpt, "float32", "precision"),
    ("memory_limit", MemoryLimit, "auto", "memory_limit"),
    ("shard", ShardOpt, None, "shard"),
    ("collective_timeout", CollectiveTimeout, DEFAULT_COLLECTIVE_TIMEOUT, "collective_timeout"),
)

Command = TypeVar("Command", bound=Callable[..., Any])


def with_probe_options(*, leave_out: Collection[str] = ()) -> Callable[[Command], Command]:
    """Give a command every probe option, declared once here, as one `probe: ProbeOptions`.

    The command declares a parameter `probe: ProbeOptions`; its place in the signature is taken
    by the probe options' parameters, so they show in `--help` and parse as usual, and the
    command is called with them gathered into one object. `leave_out` names options that do
    not apply to the command; a command that declares a parameter of the same name itself (a
    `--device` that also takes `meta`) keeps its own, and receives it in the object too.
    """

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        own = set(signature.parameters)
        group = [
            (name, declared, default, field)
            for name, declared, default, field in _PROBE_PARAMETERS
            if name not in leave_out
        ]
        parameters: list[inspect.Parameter] = []
        for parameter in signature.parameters.values():
            if parameter.name != "probe":
                parameters.append(parameter)
                continue
            parameters += [
                inspect.Parameter(
                    name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=declared
                )
                for name, declared, default, _ in group
                if name not in own
            ]
        if "probe" not in own:
            raise TypeError(f"{command.__name__} declares no `probe` parameter")

        @functools.wraps(command)
        def run(**given: Any) -> Any:
            fields = {field: given[name] for name, _, _, field in group if name in given}
            for name in ("input_shapes", "dims"):
                if fields.get(name) is not None:
                    fields[name] = tuple(fields[name])
            rest = {k: v for k, v in given.items() if k in own}
            return command(probe=ProbeOptions(**fields), **rest)

        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run  # type: ignore[return-value]

    return decorate
