"""What every command does before measuring: load the model, build the probe, map errors.

`guard` is the one place where failures become exit codes: a GradflowError prints one line on
stderr and exits 2; anything else is an internal error, also one line unless --debug.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gradflow import memory
from gradflow.cli.options import ProbeOptions
from gradflow.errors import GradflowError, OptionError, ProbeError

if TYPE_CHECKING:
    from gradflow.loaders import LoadedModel
    from gradflow.probe import Probe


@contextmanager
def guard(debug: bool) -> Iterator[None]:
    """Turn failures into a one-line message and an exit code (tracebacks only with --debug)."""
    debug = debug or os.environ.get("GRADFLOW_DEBUG") == "1"
    try:
        yield
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except BaseException as e:
        line, code = failure(e)
        if debug and not isinstance(e, KeyboardInterrupt):
            raise
        print(line, file=sys.stderr)
        raise typer.Exit(code) from None


def failure(error: BaseException) -> tuple[str, int]:
    """The one line on stderr and the exit code for a failure that ends a command."""
    if isinstance(error, GradflowError):
        return f"gradflow: error: {_one_line(str(error))}", error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return "gradflow: interrupted", 130
    # a bug in gradflow, or a failure nobody anticipated
    return (
        f"gradflow: internal error: {type(error).__name__}: {_one_line(str(error))} "
        "(run again with --debug for the traceback)",
        2,
    )


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines[:1]) if lines else "(no message)"


def load(
    source: str,
    arch: str | None,
    trust: bool,
    device: str = "cpu",
    seed: int | None = None,
    pretrained: bool = False,
) -> tuple[LoadedModel, float]:
    """Load the model and put it on `device` (see resolve_device); "meta" builds it without
    weights. Code that builds the model runs with torch's global RNG seeded with `seed`."""
    from gradflow.loaders import load_source

    tick = time.perf_counter()
    if device == "meta":
        loaded = load_source(source, arch=arch, trust=trust, meta=True, seed=seed, pretrained=pretrained)
        return loaded, time.perf_counter() - tick
    target = resolve_device(device)
    loaded = load_source(source, arch=arch, trust=trust, seed=seed, pretrained=pretrained)
    if target.type != "cpu":
        try:
            loaded.module = loaded.module.to(target)
        except Exception as e:
            raise OptionError(f"cannot move the model to {target}: {_one_line(str(e))}") from e
    return loaded, time.perf_counter() - tick


def resolve_device(option: str) -> Any:
    """auto: cuda if present, else cpu (loaded models start on the cpu). Named devices must exist."""
    import torch

    option = option.strip().lower()
    if option == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(option)
    except RuntimeError:
        raise OptionError(f"unknown --device {option!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError(f"--device {option}: no CUDA device is available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise OptionError(f"--device {option}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise OptionError(f"--device {option}: MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise OptionError(f"--device {option}: use auto, cpu, cuda, cuda:N or mps")
    return device


def build_probe(loaded: LoadedModel, options: ProbeOptions) -> Probe:
    """Probe inputs, by precedence: --input, --input-shape, example_input(), the ONNX graph's
    input signature, inference from the model's first layer. The memory guard runs before the
    batch is allocated and again before the model runs."""
    probe = _probe(loaded, options, _limit(options.memory_limit, loaded.module))
    memory.check_run(loaded.module, probe.tensors(), _limit(options.memory_limit, loaded.module))
    return probe


def _probe(loaded: LoadedModel, options: ProbeOptions, limit: int | None) -> Probe:
    from gradflow import probe as p

    dtype = _input_dtype(options)
    if options.input_file is not None and options.input_shapes:
        raise OptionError("--input and --input-shape both give the probe input: use one of them")
    if options.input_dtype is not None and not options.input_shapes:
        raise OptionError(
            f"--input-dtype {options.input_dtype} sets the dtype of --input-shape inputs, and none "
            "is given: add --input-shape, or drop --input-dtype"
        )
    _refuse_dims(loaded, options)
    if options.input_file is not None:
        _refuse_given(options, "--input gives the probe batch")
        return p.from_file(options.input_file)
    if options.input_shapes:
        return _from_shapes(loaded, options, dtype, limit)
    if loaded.example_input is not None:
        _refuse_given(options, "the source's example_input() gives the probe batch")
        return p.from_example(loaded.example_input)
    if loaded.input_specs:
        return _from_specs(loaded.input_specs, options, limit)
    return _inferred(loaded, options, limit)


def _refuse_dims(loaded: LoadedModel, options: ProbeOptions) -> None:
    """--dim names dimensions of an ONNX graph's inputs; anywhere else it would be ignored."""
    if not options.dims:
        return
    if options.input_file is not None or options.input_shapes:
        given = "--input" if options.input_file is not None else "--input-shape"
        raise OptionError(f"--dim sets the named dimensions of an ONNX graph's inputs, and {given} "
                          "gives the probe shape: drop --dim")
    if not loaded.input_specs:
        raise OptionError("--dim sets the named dimensions of an ONNX graph's inputs, and this source "
                          "is not an ONNX graph: drop --dim")


def _from_shapes(loaded: LoadedModel, options: ProbeOptions, dtype: Any, limit: int | None) -> Probe:
    from gradflow import probe as p

    shapes = [p.parse_shape(s) for s in options.input_shapes or ()]
    example = ",".join(str(size) for size in _batched(shapes[0], options.batch))
    _refuse_batch_size(options, f"the first size of --input-shape is the batch, e.g. {example}")
    if options.input_high is not None and not _draws_integers(dtype):
        raise _floats_with_high(f"the --input-shape inputs are {str(dtype).replace('torch.', '')}")
    memory.check_probe(((s, dtype.itemsize) for s in shapes), limit)
    high = options.input_high or _vocabulary(loaded.module) or 2
    return p.from_shapes(shapes, dtype, options.seed, high)


def _inferred(loaded: LoadedModel, options: ProbeOptions, limit: int | None) -> Probe:
    from gradflow import probe as p

    one = p.infer(loaded.module, 1, options.seed, options.input_high)
    if options.input_high is not None and not any(_draws_integers(t.dtype) for t in one.tensors()):
        raise _floats_with_high("the inferred probe input is floating-point")
    memory.check_probe(((_batched(t.shape, options.batch), t.element_size()) for t in one.tensors()), limit)
    return p.infer(loaded.module, options.batch, options.seed, options.input_high)


def _input_dtype(options: ProbeOptions) -> Any:
    """--input-dtype as a torch dtype; an unknown name is an error whether or not it is used."""
    from gradflow import probe as p

    try:
        return p.parse_dtype(options.input_dtype or "float32")
    except ProbeError as e:
        raise OptionError(f"--input-dtype: {e}") from None


def _draws_integers(dtype: Any) -> bool:
    """Whether random inputs of this dtype are drawn from [0, --input-high)."""
    return not (dtype.is_floating_point or dtype.is_complex) and str(dtype) != "torch.bool"


def _floats_with_high(inputs: str) -> OptionError:
    return OptionError(
        f"--input-high sets the range of integer inputs, but {inputs}: drop --input-high, or "
        "give integer inputs with --input-shape and --input-dtype int64"
    )


def _refuse_given(options: ProbeOptions, reason: str) -> None:
    """--batch-size and --input-high shape random inputs; refused where the batch is given."""
    _refuse_batch_size(options, reason)
    if options.input_high is not None:
        raise OptionError(f"--input-high does not apply: {reason}; drop --input-high")


def _refuse_batch_size(options: ProbeOptions, reason: str) -> None:
    if options.batch_size is not None:
        raise OptionError(f"--batch-size does not apply: {reason}; drop --batch-size")


def _batched(shape: Sequence[int], batch: int) -> tuple[int, ...]:
    return (batch, *shape[1:]) if len(shape) else ()


def _limit(option: str, module: Any) -> int | None:
    """--memory-limit: auto is the memory free on the model's device now."""
    if option.strip().lower() != "auto":
        return memory.parse_size(option)
    device = next((t.device for t in module.parameters()), None)
    if device is not None and device.type == "meta":
        return None
    return memory.available(device or "cpu")


def _vocabulary(module: Any) -> int | None:
    import torch

    for sub in module.modules():
        if isinstance(sub, torch.nn.Embedding):
            return int(sub.num_embeddings)
    return None


def parse_dims(dims: Sequence[str] | None) -> dict[str, int]:
    parsed: dict[str, int] = {}
    for item in dims or ():
        name, sep, value = item.partition("=")
        if not sep or not name or not value.strip().isdigit():
            raise OptionError(f"bad --dim {item!r}: write NAME=VALUE, e.g. --dim seq_len=128")
        parsed[name.strip()] = int(value)
    return parsed


def _spec_shapes(specs: Sequence[Any], options: ProbeOptions) -> list[tuple[int, ...]]:
    """Input shapes from an ONNX graph's signature, without allocating: named dimensions from
    --dim, the first from --batch-size, other unknown ones refused with the flag to set them."""
    dims = parse_dims(options.dims)
    _refuse_unknown_dims(dims, specs)
    shapes = []
    for spec in specs:
        shape = []
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int) and dim > 0:
                shape.append(dim)
            elif isinstance(dim, str) and dim in dims:
                shape.append(dims[dim])
            elif axis == 0:
                shape.append(options.batch)
            else:
                raise ProbeError(
                    f"input {spec.name!r} has an unknown dimension {dim or '?'} at axis {axis}: "
                    f"set it with --dim {dim or 'NAME'}=VALUE or give --input-shape"
                )
        shapes.append(tuple(shape))
    return shapes


def _refuse_unknown_dims(dims: dict[str, int], specs: Sequence[Any]) -> None:
    """A --dim name the graph's inputs do not use (a misspelling) is an error, not ignored."""
    named = sorted({dim for spec in specs for dim in spec.shape if isinstance(dim, str) and dim != "?"})
    unknown = [name for name in dims if name not in named]
    if not unknown:
        return
    what = f"its named dimensions are {', '.join(named)}" if named else "it has no named dimension"
    raise OptionError(
        f"--dim {unknown[0]}: the ONNX graph's inputs have no dimension named {unknown[0]!r} ({what}); "
        "fix the name or drop the --dim"
    )


def _needs_batch(specs: Sequence[Any], dims: dict[str, int]) -> bool:
    """Whether some input's first dimension is unknown and not set by --dim: --batch-size sets it."""
    firsts = [spec.shape[0] for spec in specs if spec.shape]
    return any(not (isinstance(dim, int) and dim > 0) and dim not in dims for dim in firsts)


def _from_specs(specs: Sequence[Any], options: ProbeOptions, limit: int | None) -> Probe:
    import torch

    from gradflow import probe as p

    shapes = _spec_shapes(specs, options)
    if not _needs_batch(specs, parse_dims(options.dims)):
        _refuse_batch_size(options, "the ONNX graph's inputs have a fixed or --dim batch dimension")
    if options.input_high is not None and not any(_draws_integers(spec.dtype) for spec in specs):
        raise _floats_with_high("every input of the ONNX graph is floating-point")
    memory.check_probe(((shape, spec.dtype.itemsize) for shape, spec in zip(shapes, specs)), limit)
    generator = torch.Generator().manual_seed(options.seed)
    high = options.input_high or 2
    return p.Probe(
        (),
        {
            spec.name: p.random_tensor(shape, spec.dtype, generator, high)
            for shape, spec in zip(shapes, specs)
        },
    )


def thresholds(vanishing_below: float | None, exploding_above: float | None,
               dead_below: float | None) -> Any:
    """The verdict thresholds the flags give, each left out (None) at its default."""
    from gradflow.engine.report import Thresholds

    given = {"vanishing_below": vanishing_below, "exploding_above": exploding_above,
             "dead_below": dead_below}
    return Thresholds(**{name: value for name, value in given.items() if value is not None})


def write_output(path: Path, text: str) -> None:
    try:
        path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as e:
        raise OptionError(f"cannot write {path}: {e.strerror or e}") from e
    print(f"gradflow: wrote {path}", file=sys.stderr)


def emit(
    format: Any,
    output: Path | None,
    *,
    table: Callable[[], None],
    json: Callable[[], str],
    markdown: Callable[[], str],
) -> None:
    """The output rule of inspect and compare: stdout carries --format (table, json or markdown);
    --output also writes the result to a file, as --format json or markdown, or for a table as
    Markdown for a .md file and JSON otherwise."""
    kind = str(getattr(format, "value", format))
    renderers = {"json": json, "markdown": markdown}
    text = renderers[kind]() if kind in renderers else None
    if output is not None:
        as_file = markdown if output.suffix == ".md" else json
        write_output(output, text if text is not None else as_file())
    if text is None:
        table()
    else:
        print(text, end="" if text.endswith("\n") else "\n")


def emit_history(
    format: Any,
    output: Path | None,
    plot: Path | None,
    *,
    table: Callable[[], None],
    json: Callable[[], str],
    csv: Callable[[], str],
    draw: Callable[[Path], None],
) -> None:
    """The output rule of track and show, whose results are flows over steps: --output writes
    the csv (for --format csv, or a .csv file) or else the json; --plot draws the figure; stdout
    carries the table, or the document --format names when no --output took it."""
    kind = str(getattr(format, "value", format))
    if output is not None:
        as_csv = kind == "csv" or (kind == "table" and output.suffix.lower() == ".csv")
        write_output(output, csv() if as_csv else json())
    if plot is not None:
        draw(plot)
        print(f"gradflow: wrote {plot}", file=sys.stderr)
    if kind == "table":
        table()
    elif output is None:
        print(csv() if kind == "csv" else json(), end="" if kind == "csv" else "\n")
