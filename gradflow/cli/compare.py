"""gradflow compare: the baseline beside stop-gradient variants, or two models side by side."""

from __future__ import annotations

from typing import Annotated

import typer

from gradflow.cli.inspect import DepthPlotOpt, HtmlOpt, write_plot
from gradflow.cli.options import (
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
from gradflow.engine.report import METRICS
from gradflow.errors import OptionError

Second = Annotated[
    str | None,
    typer.Argument(
        help="A second model or checkpoint with the same junction names, compared against the first.",
        show_default=False,
    ),
]
Metric = Annotated[str, typer.Option("--metric", help=f"The number compared: {', '.join(METRICS)}.")]


@with_probe_options()
def compare_command(
    source: Source,
    other: Second = None,
    arch: Arch = None,
    trust: Trust = False,
    pretrained: Pretrained = False,
    sg_skip: SgSkip = False,
    sg_block: SgBlock = False,
    at: At = None,
    metric: Metric = "grad_in",
    probe: ProbeOptions = PROBE_OPTIONS,
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
    """Compare gradient flow: the baseline beside --sg-skip and/or --sg-block, or two models.

    Rows are junctions matched by name; each variant shows --metric and its ratio to the
    baseline; a junction nested inside another is marked ↳, as in `inspect`. Stop-gradient
    variants share one forward pass: k variants cost one forward and k backward passes.

    **Examples**

      gradflow compare model.py --sg-skip

      gradflow compare model.py --sg-skip --sg-block --at 'layer3.*'

      gradflow compare before.pt after.pt --arch net.py:Net

      gradflow compare model.py --sg-skip --plot depth.png
    """
    with session(probe, debug) as run:
        if metric not in METRICS:
            raise OptionError(f"unknown --metric {metric!r}: choose one of {', '.join(METRICS)}")
        if other is not None and (sg_skip or sg_block):
            raise OptionError(
                "compare takes either two sources or stop-gradient flags on one source, not both"
            )
        if other is None and not (sg_skip or sg_block):
            raise OptionError("nothing to compare: add --sg-skip and/or --sg-block, or give a second source")
        if plot is not None:
            from gradflow.render.plot import require_matplotlib

            require_matplotlib(plot)  # before measuring, not after it
        from gradflow.drivers.compare import compare, line_up, two_source_names
        from gradflow.engine.measure import measure

        device = run.device(probe.device)
        loaded, load_seconds = load(source, arch, trust, device, probe.seed, pretrained)
        batch = run.split(build_probe(loaded, probe))
        common = dict(
            loss=probe.loss.value,
            mode=probe.mode.value,
            seed=probe.seed,
            max_junctions=max_junctions,
            dtype=probe.precision,
            thresholds=thresholds(vanishing_below, exploding_above, dead_below),
        )
        if other is None:
            comparison = compare(
                run.wrap(loaded.module, batch, probe),
                batch,
                sg_skip=sg_skip,
                sg_block=sg_block,
                at=at,
                metric=metric,
                source=source,
                source_format=loaded.format,
                timings={"load": load_seconds},
                **common,
            )
        else:
            second, second_seconds = load(other, arch, trust, device, probe.seed, pretrained)
            first_name, second_name = two_source_names(source, other)
            (a,) = measure(
                run.wrap(loaded.module, batch, probe),
                batch,
                only=at,
                source=source,
                source_format=loaded.format,
                timings={"load": load_seconds},
                **common,
            )
            (b,) = measure(
                run.wrap(second.module, batch, probe),
                batch,
                only=at,
                source=other,
                source_format=second.format,
                timings={"load": second_seconds},
                **common,
            )
            comparison = line_up({first_name: a, second_name: b}, metric)
        if not run.lead:
            return
        emit_comparison(comparison, format, output)
        if html is not None:
            from gradflow.render.html import comparison_html

            write_output(html, comparison_html(comparison))
        if plot is not None:
            from gradflow.render.depth import comparison_depth

            write_plot(plot, comparison_depth(comparison))


def emit_comparison(comparison, format: Format, output) -> None:  # type: ignore[no-untyped-def]
    from gradflow.render.compare import comparison_markdown, print_comparison
    from gradflow.render.json import compare_json

    emit(
        format,
        output,
        table=lambda: print_comparison(comparison),
        json=lambda: compare_json(comparison.variants),
        markdown=lambda: comparison_markdown(comparison),
    )
