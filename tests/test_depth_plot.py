"""The depth picture: its lines and rings come from the result's own numbers; matplotlib draws
exactly those (inspect --plot, compare --plot); the command writes the file it is asked for."""

from __future__ import annotations

import json
import math
import sys
import xml.etree.ElementTree as ET

import pytest
import torch

import gradflow
from gradflow.render.depth import comparison_depth, report_depth
from gradflow.render.depth_plot import depth_figure
from tests.conftest import SAMPLES
from tests.fixtures.models import SmallResNet


@pytest.fixture(scope="module")
def model_and_input() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return SmallResNet(), torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_report_picture_is_the_junctions_numbers_by_depth(model_and_input) -> None:  # type: ignore[no-untyped-def]
    report = gradflow.inspect(*model_and_input, sg_block=True, at=["b1"])
    picture = report_depth(report)
    assert picture.depths == tuple(j.index for j in report.junctions) == (0, 1)
    assert [line.label for line in picture.lines] == ["grad_skip", "grad_block", "grad_in"]
    for line in picture.lines:
        assert line.values == tuple(j.metric(line.label) for j in report.junctions)
    assert [(m.junction, m.status) for m in picture.marks] == [(f.name, f.status) for f in report.summary.flagged]
    assert picture.marks[0].value == report.junctions[0].grad_in  # the ring sits on grad_in
    low, high = picture.span()  # every drawable value inside the y range
    drawn = [v for line in picture.lines for v in line.values if v]
    assert all(low < math.log10(v) < high for v in drawn)


def test_matplotlib_draws_the_picture(model_and_input) -> None:  # type: ignore[no-untyped-def]
    report = gradflow.inspect(*model_and_input, sg_block=True, at=["b1"])
    figure = depth_figure(report_depth(report))
    (ax,) = figure.axes
    assert ax.get_yscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["grad_skip", "grad_block (0 or undefined at 1: not drawn)", "grad_in", "flagged dead"]
    assert list(lines["grad_skip"].get_xdata()) == [0, 1]
    assert list(lines["grad_skip"].get_ydata()) == [j.grad_skip for j in report.junctions]
    assert list(lines["grad_in"].get_ydata()) == [j.grad_in for j in report.junctions]
    block = lines["grad_block (0 or undefined at 1: not drawn)"]
    assert list(block.get_xdata()) == [1] and list(block.get_ydata()) == [report.junctions[1].grad_block]
    ring = lines["flagged dead"]
    assert (list(ring.get_xdata()), list(ring.get_ydata())) == ([0], [report.junctions[0].grad_in])
    assert ring.get_linestyle() == "None" and ring.get_markerfacecolor() == "none"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["b1", "b2"]


def test_compare_picture_draws_one_line_per_variant(model_and_input) -> None:  # type: ignore[no-untyped-def]
    comparison = gradflow.compare(*model_and_input, sg_skip=True, sg_block=True)
    picture = comparison_depth(comparison)
    assert [line.label for line in picture.lines] == list(comparison.variants)
    for line in picture.lines:
        assert line.values == tuple(row.values[line.label] for row in comparison.rows)
    ax = depth_figure(picture).axes[0]
    drawn = [line for line in ax.get_lines() if not line.get_label().startswith("flagged")]
    assert [line.get_label() for line in drawn] == ["baseline", "sg-skip", "sg-block"]
    for line, variant in zip(drawn, comparison.variants):
        assert list(line.get_ydata()) == [row.values[variant] for row in comparison.rows]
    flagged = {(f.name, str(f.status)) for r in comparison.variants.values() for f in r.summary.flagged}
    assert {(m.junction, m.status) for m in picture.marks} == flagged


def test_a_cosine_is_drawn_on_a_linear_scale(model_and_input) -> None:  # type: ignore[no-untyped-def]
    comparison = gradflow.compare(*model_and_input, sg_skip=True, metric="cosine")
    picture = comparison_depth(comparison)
    assert not picture.log and picture.span() == (-1.05, 1.05)
    assert depth_figure(picture).axes[0].get_yscale() == "linear"


def test_inspect_plot_writes_png_and_svg(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    png, svg = tmp_path / "depth.png", tmp_path / "depth.svg"
    result = gradflow_cli("inspect", SAMPLES / "tiny_resnet.py", "--plot", png, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["schema"].startswith("gradflow/report@")  # stdout stays JSON
    assert f"wrote {png}" in result.stderr
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    result = gradflow_cli("inspect", SAMPLES / "tiny_resnet.py", "--plot", svg)
    assert result.exit_code == 0, result.output
    text = "".join(ET.parse(svg).getroot().itertext())
    assert all(name in text for name in ("layer1.0", "layer3.1", "grad_skip", "grad_block", "grad_in"))


def test_compare_plot_writes_a_file(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "compare.svg"
    result = gradflow_cli("compare", SAMPLES / "tiny_resnet.py", "--sg-skip", "--plot", target)
    assert result.exit_code == 0, result.output
    text = "".join(ET.parse(target).getroot().itertext())
    assert "baseline" in text and "sg-skip" in text


def test_plot_is_refused_before_measuring(gradflow_cli, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    result = gradflow_cli("inspect", SAMPLES / "tiny_resnet.py", "--plot", tmp_path / "depth.gif")
    assert result.exit_code == 2 and "--plot depth.gif: the file must end in .png, .svg, .pdf" in result.stderr
    assert result.stdout == ""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the plot extra were not installed
    result = gradflow_cli("compare", SAMPLES / "tiny_resnet.py", "--sg-skip", "--plot", tmp_path / "d.png")
    assert result.exit_code == 2 and "pip install 'gradflow-cli[plot]'" in result.stderr
    assert result.stdout == "" and not (tmp_path / "d.png").exists()
