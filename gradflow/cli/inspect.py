"""gradflow inspect: the report for one model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gradflow.cli.options import (
    OUTPUT,
    PROBE_OPTIONS,
    Arch,
    At,
    DeadBelow,
    Debug,
    ExplodingAbove,
    Format,
    FormatOpt,
    MaxJunctions,
    OutputOpt,
    Pretrained,
    ProbeOptions,
    SgBlock,
    SgSkip,
    Source,
    Trust,
    VanishingBelow,
    with_probe_options,
)
from gradflow.cli.session import build_probe, emit, load, thresholds, write_output
from gradflow.cli.torchrun import session

if TYPE_CHECKING:
    from gradflow.render.depth import DepthPicture

HtmlOpt = Annotated[
    Path | None,
    typer.Option(
        "--html",
        help="Also write a self-contained HTML page: the depth picture, the table and a bar chart "
        "per junction (it fetches nothing, so it opens offline and travels as one file).",
        rich_help_panel=OUTPUT,
        show_default=False,
    ),
]
DepthPlotOpt = Annotated[
    Path | None,
    typer.Option(
        "--plot",
        help="Also write the depth picture: grad_skip, grad_block and grad_in against junction "
        "depth, log scale, flagged junctions ringed (compare: --metric, one line per variant). "
        ".png, .svg or .pdf; needs the `plot` extra (matplotlib).",
        rich_help_panel=OUTPUT,
        show_default=False,
    ),
]


@with_probe_options()
def inspect_command(
    source: Source,
    arch: Arch = None,
    trust: Trust = False,
    pretrained: Pretrained = False,
    probe: ProbeOptions = PROBE_OPTIONS,
    sg_skip: SgSkip = False,
    sg_block: SgBlock = False,
    at: At = None,
    max_junctions: MaxJunctions = None,
    vanishing_below: VanishingBelow = None,
    exploding_above: ExplodingAbove = None,
    dead_below: DeadBelow = None,
    format: FormatOpt = Format.TABLE,
    output: OutputOpt = None,
    html: HtmlOpt = None,
    plot: DepthPlotOpt = None,
    debug: Debug = False,
) -> None:
    """Measure the gradient on the skip and block path of every residual junction.

    One row per junction in forward order. grad_out: gradient arriving at the add.
    grad_skip / grad_block: what reaches the fork x through each path. grad_in: dL/dx from
    every consumer. param_grad: the block's parameter gradients. All are L2 norms over the batch.

    **Examples**

      gradflow inspect sample_models/tiny_resnet.py

      gradflow inspect my_net.py:build --input-shape 8,3,224,224

      gradflow inspect checkpoint.pt --arch my_net.py:Net --format json

      gradflow inspect model.py --sg-block --at 'layer3.*'

      gradflow inspect model.py --html report.html --plot depth.png

      gradflow inspect big_model.py --max-junctions 12 --device cuda --dtype bfloat16
    """
    with session(probe, debug) as run:
        stopping = sg_skip or sg_block
        if plot is not None:
            from gradflow.render.plot import require_matplotlib

            require_matplotlib(plot)  # before measuring, not after it
        loaded, load_seconds = load(source, arch, trust, run.device(probe.device), probe.seed, pretrained)
        batch = run.split(build_probe(loaded, probe))
        model = run.wrap(loaded.module, batch, probe)
        from gradflow.engine.measure import VariantSpec, measure

        name = "-".join(n for n, on in (("sg-skip", sg_skip), ("sg-block", sg_block)) if on)
        (report,) = measure(
            model,
            batch,
            [VariantSpec(name or "baseline", sg_skip, sg_block)],
            loss=probe.loss.value,
            mode=probe.mode.value,
            seed=probe.seed,
            at=at if stopping else None,
            only=None if stopping else at,
            max_junctions=max_junctions,
            dtype=probe.precision,
            thresholds=thresholds(vanishing_below, exploding_above, dead_below),
            source=source,
            source_format=loaded.format,
            timings={"load": load_seconds},
        )
        if not run.lead:
            return
        emit_report(report, format, output)
        if html is not None:
            from gradflow.render.html import report_html

            write_output(html, report_html(report))
        if plot is not None:
            from gradflow.render.depth import report_depth

            write_plot(plot, report_depth(report))


def write_plot(path: Path, picture: DepthPicture) -> None:
    from gradflow.render.depth_plot import plot_depth

    plot_depth(picture, path)
    print(f"gradflow: wrote {path}", file=sys.stderr)


def emit_report(report, format: Format, output: Path | None) -> None:  # type: ignore[no-untyped-def]
    from gradflow.render.json import report_json
    from gradflow.render.markdown import report_markdown
    from gradflow.render.table import print_report

    emit(
        format,
        output,
        table=lambda: print_report(report),
        json=lambda: report_json(report),
        markdown=lambda: report_markdown(report),
    )
