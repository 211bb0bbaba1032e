"""gradflow blocks: list the junctions without measuring anything."""

from __future__ import annotations

from typing import Annotated

import typer

from gradflow.cli.options import (
    PROBE_OPTIONS,
    Arch,
    Debug,
    Format,
    FormatOpt,
    Pretrained,
    ProbeOptions,
    Source,
    Trust,
    with_probe_options,
)
from gradflow.cli.session import build_probe, guard, load

BlocksDevice = Annotated[
    str,
    typer.Option(
        "--device",
        help="cpu, cuda, ... or meta: build the model without memory for its weights and find the "
        "junctions from a forward pass on meta tensors (for models too large to materialise).",
    ),
]


@with_probe_options(leave_out=("loss", "mode", "dtype", "shard", "collective_timeout"))
def blocks_command(
    source: Source,
    arch: Arch = None,
    trust: Trust = False,
    pretrained: Pretrained = False,
    probe: ProbeOptions = PROBE_OPTIONS,
    device: BlocksDevice = "cpu",
    format: FormatOpt = Format.TABLE,
    debug: Debug = False,
) -> None:
    """List every residual junction: its name, skip kind, block modules and parameter count; a
    junction nested inside another is marked ↳, as in `inspect`.

    PyTorch sources run one forward pass (no backward); an .onnx graph is read statically,
    without running anything, so the probe options do not apply to it.

    **Examples**

      gradflow blocks sample_models/prenorm_transformer.py

      gradflow blocks model.onnx --format json

      gradflow blocks llama.py:build --device meta --input-shape 1,64 --input-dtype int64
    """
    with guard(debug):
        from gradflow.render.blocks import print_blocks

        rows = _static_onnx(source) if source.lower().endswith(".onnx") else None
        if rows is not None:
            _refuse_probe_options(
                {"--input": probe.input_file, "--input-shape": probe.input_shapes,
                 "--input-dtype": probe.input_dtype, "--input-high": probe.input_high,
                 "--dim": probe.dims, "--batch-size": probe.batch_size}
            )
        else:
            loaded, _ = load(source, arch, trust, device, probe.seed, pretrained)
            batch = build_probe(loaded, probe)
            from gradflow.engine.measure import locate

            located = locate(loaded.module, batch, seed=probe.seed)
            rows = [
                {
                    "index": j.index,
                    "name": j.name,
                    "module": j.module,
                    "skip": j.skip,
                    "block_modules": list(j.block_modules),
                    "skip_modules": list(j.skip_modules),
                    "params": j.params,
                    "location": j.location,
                    "nested_in": j.nested_in,
                }
                for j in located
            ]
        print_blocks(source, rows, format)


def _refuse_probe_options(given: dict[str, object]) -> None:
    """An .onnx graph is listed without running it: probe options would be ignored."""
    named = [option for option, value in given.items() if value]
    if named:
        from gradflow.errors import OptionError

        raise OptionError(
            f"gradflow blocks reads an .onnx graph without running it, so {', '.join(named)} "
            "would change nothing: drop them"
        )


def _static_onnx(source: str) -> list[dict] | None:
    """Junctions read from the ONNX graph itself, named like `inspect` names them."""
    from pathlib import Path

    from gradflow.engine.naming import junction_names
    from gradflow.loaders._files import check_file

    try:
        from gradflow.onnx.static import static_junctions
    except ImportError:
        return None
    check_file(Path(source), source)
    found = static_junctions(source)
    names = junction_names([j.module for j in found])
    return [
        {
            "index": i,
            "name": name,
            "module": j.module,
            "skip": str(j.skip.value if hasattr(j.skip, "value") else j.skip),
            "block_modules": list(j.block_nodes),
            "skip_modules": list(j.skip_nodes),
            "params": j.params,
            "location": j.name,
            "fork": j.fork,
        }
        for i, (j, name) in enumerate(zip(found, names))
    ]
