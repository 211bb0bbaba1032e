"""inspect --html and compare --html: one self-contained page with the table and a chart per junction."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import gradflow
from gradflow.render.html import report_html
from tests.conftest import SAMPLES
from tests.fixtures import models
from tests.test_measure import _inputs

# Anything a browser would fetch: a URL with a scheme or protocol-relative, a src/href, CSS imports.
EXTERNAL = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://|//[a-z0-9]|\bsrc\s*=|\bhref\s*=|@import|url\()")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.cells: list[str] = []

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        self.tags.append(tag)

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        self.cells.append(data)


def _parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    return parser


def _svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(fragment) for fragment in re.findall(r"<svg.*?</svg>", page, re.S)]


def _charts(page: str) -> list[ET.Element]:
    """The bar charts, one per junction: every SVG but the depth picture at the top."""
    return [svg for svg in _svgs(page) if svg.get("class") != "depth"]


def test_inspect_html_has_the_table_a_chart_per_junction_and_no_external_url(gradflow_cli, tmp_path) -> None:
    target = tmp_path / "report.html"
    result = gradflow_cli("inspect", SAMPLES / "tiny_resnet.py", "--html", target, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "layer1.0" in result.stdout  # the table still goes to the terminal
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert EXTERNAL.search(page) is None, EXTERNAL.search(page)
    parsed = _parse(page)
    assert parsed.tags.count("table") == 1 and parsed.tags.count("tr") == 1 + 6
    for name in ("layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1"):
        assert name in parsed.cells
    svgs = _svgs(page)  # well-formed: the depth picture first, then one per junction, a bar per metric
    assert svgs[0].get("class") == "depth"
    charts = _charts(page)
    assert len(charts) == 6 == len(svgs) - 1
    assert all(len(svg.findall("rect")) == 4 for svg in charts)
    assert "<script" not in page and "<link" not in page and "<img" not in page


def test_compare_html_has_each_variant_and_ratio(gradflow_cli, tmp_path) -> None:
    target = tmp_path / "compare.html"
    result = gradflow_cli("compare", SAMPLES / "deep_mlp.py", "--sg-skip", "--html", target, "--device", "cpu")
    assert result.exit_code == 0, result.output
    page = target.read_text(encoding="utf-8")
    assert EXTERNAL.search(page) is None
    parsed = _parse(page)
    assert {"baseline", "sg-skip", "ratio"} <= set(parsed.cells)
    rows = parsed.tags.count("tr") - 1
    assert _svgs(page)[0].get("class") == "depth"
    svgs = _charts(page)
    assert len(svgs) == rows > 0
    assert all(len(svg.findall("rect")) == 2 for svg in svgs)  # baseline and sg-skip


def test_model_strings_are_escaped() -> None:
    report = gradflow.inspect(models.InputFork(), _inputs("InputFork"))
    hostile = "<script>alert(1)</script>"
    junctions = (dataclasses.replace(report.junctions[0], name=hostile), *report.junctions[1:])
    page = report_html(dataclasses.replace(report, junctions=junctions))
    assert hostile not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert len(_charts(page)) == 2 and len(_svgs(page)) == 3


def test_bar_lengths_follow_a_shared_log_scale() -> None:
    report = gradflow.inspect(models.InputFork(), _inputs("InputFork"))
    page = report_html(report)
    widths = [float(rect.get("width", "0")) for svg in _charts(page) for rect in svg.findall("rect")]
    values = [j.metric(m) for j in report.junctions for m in ("grad_out", "grad_skip", "grad_block", "grad_in")]
    # A larger value never gets a shorter bar, across every chart of the page.
    pairs = sorted(zip(values, widths))
    assert all(w1 <= w2 + 1e-9 for (_, w1), (_, w2) in zip(pairs, pairs[1:]))
