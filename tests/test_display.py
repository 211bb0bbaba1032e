"""Results that show themselves: a short repr, `__rich__` (the table the command prints) and
`_repr_html_` (the fragment an --html page is built around), each checked for its structure and
its numbers against the result's own fields; and each a one-line delegation to gradflow.render."""

from __future__ import annotations

import ast
import inspect as pyinspect
import io
import math
import re
import statistics
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections import Counter
from html.parser import HTMLParser

import pytest
import torch
from rich.console import Console

import gradflow
from gradflow.gate import settings_from
from gradflow.track import Track, track
from tests.fixtures.models import SmallResNet

DISPLAY = ("__repr__", "__rich__", "_repr_html_")
RESULT_TYPES = (gradflow.Report, gradflow.Comparison, gradflow.CheckResult, Track, gradflow.Watch,
                gradflow.WatchRecord, gradflow.WatchLog, gradflow.TrackArms)


@pytest.fixture(scope="module")
def model_and_input() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return SmallResNet(), torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def report(model_and_input) -> gradflow.Report:  # type: ignore[no-untyped-def]
    return gradflow.inspect(*model_and_input)


@pytest.fixture(scope="module")
def flagged(model_and_input) -> gradflow.Report:  # type: ignore[no-untyped-def]
    """b1's block stopped: block_ratio 0, so b1 is flagged dead."""
    return gradflow.inspect(*model_and_input, sg_block=True, at=["b1"])


@pytest.fixture(scope="module")
def comparison(model_and_input) -> gradflow.Comparison:  # type: ignore[no-untyped-def]
    return gradflow.compare(*model_and_input, sg_skip=True, sg_block=True)


@pytest.fixture(scope="module")
def failed_check(model_and_input) -> gradflow.CheckResult:  # type: ignore[no-untyped-def]
    """A dead limit above every block_ratio: both junctions violate it."""
    return gradflow.check(*model_and_input, seeds=2, settings=settings_from({}, dead_below=100.0))


@pytest.fixture(scope="module")
def trained(model_and_input) -> Track:  # type: ignore[no-untyped-def]
    return track(*model_and_input, steps=6, every=2)


def _rich_text(renderable: object, width: int = 140) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, highlight=False, soft_wrap=False).print(renderable)
    return buffer.getvalue()


def _close(text: str, value: float | None) -> bool:
    """A number as the tables print it (4 significant digits, or 3 for a ratio) is `value`."""
    if value is None:
        return text == "–"
    return math.isclose(float(text.rstrip("×")), value, rel_tol=6e-3, abs_tol=0.0)


# ---- repr ----------------------------------------------------------------------------------


def test_report_repr_is_one_short_line_of_its_numbers(report, flagged) -> None:  # type: ignore[no-untyped-def]
    for r in (report, flagged):
        text = repr(r)
        match = re.fullmatch(r"Report\((\d+) junctions, survival (\S+)×, flagged: (.+)\)", text)
        assert match, text
        assert int(match[1]) == len(r.junctions) == 2
        assert _close(match[2], r.summary.survival)
        counts = Counter(str(j.status) for j in r.junctions if j.status != "ok")
        assert match[3] == (", ".join(f"{n} {s}" for s, n in counts.items()) or "none")
    assert repr(flagged).endswith("flagged: 1 dead)")


def test_comparison_repr_gives_each_variants_median_ratio(comparison) -> None:  # type: ignore[no-untyped-def]
    text = repr(comparison)
    match = re.fullmatch(r"Comparison\(grad_in, 2 junctions, baseline vs (.+)\)", text)
    assert match, text
    medians = dict(part.split(": median ") for part in match[1].split(", "))
    assert list(medians) == ["sg-skip", "sg-block"]
    for variant, shown in medians.items():
        ratios = [row.values[variant] / row.values["baseline"] for row in comparison.rows]  # type: ignore[operator]
        assert _close(shown, statistics.median(ratios))


def test_check_and_track_reprs(failed_check, trained) -> None:  # type: ignore[no-untyped-def]
    text = repr(failed_check)
    n = len(failed_check.errors)
    assert n == 2 and not failed_check.passed  # one per junction, at its worst seed
    assert text.startswith(f"CheckResult(FAILED: {n} violations of dead ({n}) · ") and text.endswith(" · 2 seeds)")
    match = re.fullmatch(r"Track\((\d+) junctions, (\d+) steps, (\d+) recorded, loss (\S+) → (\S+)\)",
                         repr(trained))
    assert match, repr(trained)
    assert (int(match[1]), int(match[2]), int(match[3])) == (len(trained.junctions), 6, len(trained.losses)) == (2, 6, 3)
    assert _close(match[4], trained.losses[0][1]) and _close(match[5], trained.losses[-1][1])


# ---- __rich__ ------------------------------------------------------------------------------


def test_rich_is_what_each_command_prints(report, comparison, failed_check, trained, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from gradflow.render.check import print_check
    from gradflow.render.compare import print_comparison
    from gradflow.render.table import print_report
    from gradflow.render.track import print_track

    monkeypatch.delenv("COLUMNS", raising=False)  # the CLI then prints 140 columns into a file
    for result, print_it in ((report, print_report), (failed_check, print_check), (trained, print_track)):
        printed = io.StringIO()
        print_it(result, printed)  # type: ignore[operator]
        assert _rich_text(result) == printed.getvalue()
    print_comparison(comparison)
    assert _rich_text(comparison) == capsys.readouterr().out


def test_rich_report_rows_hold_the_junctions_numbers(report) -> None:  # type: ignore[no-untyped-def]
    lines = _rich_text(report).splitlines()
    header = next(line.split() for line in lines if line.split()[:2] == ["#", "junction"])
    for j in report.junctions:
        row = next(line.split() for line in lines if line.split()[1:2] == [j.name])
        cells = dict(zip(header, row))
        for metric in ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad"):
            assert _close(cells[metric], j.metric(metric)), (j.name, metric, cells[metric])
        assert _close(cells["ratio"], j.block_ratio) and cells["status"] == j.status


def test_rich_report_fits_a_narrow_console(report) -> None:  # type: ignore[no-untyped-def]
    text = _rich_text(report, width=72)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 72
    assert all(j.name in text for j in report.junctions) and "status" in text


def test_rich_comparison_check_and_track_hold_their_numbers(comparison, failed_check, trained) -> None:  # type: ignore[no-untyped-def]
    text = _rich_text(comparison)
    for row in comparison.rows:
        cells = next(line.strip("│ ").split("│") for line in text.splitlines() if f"│{row.name} " in line)
        cells = [c.strip() for c in cells]
        assert _close(cells[1], row.values["baseline"])
        assert _close(cells[2], row.values["sg-skip"]) and _close(cells[3], comparison.ratio(row, "sg-skip"))
        assert _close(cells[4], row.values["sg-block"]) and _close(cells[5], comparison.ratio(row, "sg-block"))
    text = _rich_text(failed_check)
    for outcome in failed_check.outcomes:
        row = next(line for line in text.splitlines() if line.startswith(f"│{outcome.rule} "))
        assert outcome.status in row
    assert "✗ gradflow check " + failed_check.verdict() in text
    text = _rich_text(trained)
    for name in trained.junctions:
        row = next(line for line in text.splitlines() if f"│ {name} " in line)
        first, last = trained.series(name, "grad_skip")[0][1], trained.series(name, "grad_skip")[-1][1]
        shown = re.search(r"(\S+)→(\S+)", row)
        assert shown and _close(shown[1], first) and _close(shown[2], last)


# ---- _repr_html_ ---------------------------------------------------------------------------


class _Table(HTMLParser):
    """The rows of every <table>, each a list of its cells' text, and the start tags seen."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        if self._cell is not None:
            self._cell.append(data)


def _parse(fragment: str) -> _Table:
    parser = _Table()
    parser.feed(fragment)
    return parser


def _depth_svg(fragment: str) -> ET.Element:
    (svg,) = re.findall(r'<svg class="depth".*?</svg>', fragment, re.S)
    return ET.fromstring(svg)


def _is_fragment(fragment: str) -> None:
    assert fragment.startswith("<div class=gradflow><style>") and fragment.endswith("</div>")
    assert "<!DOCTYPE" not in fragment and "<body" not in fragment and "<script" not in fragment
    # the style is scoped: every rule starts with the fragment's class
    style = re.search(r"<style>(.*?)</style>", fragment, re.S)[1]  # type: ignore[index]
    selectors = [s.strip() for rule in re.findall(r"([^{}]+)\{", style) for s in rule.split(",")]
    assert selectors and all(s.startswith(".gradflow") for s in selectors), selectors


def test_report_html_is_the_pages_fragment_with_the_junctions_numbers(report) -> None:  # type: ignore[no-untyped-def]
    from gradflow.render.html import report_html

    fragment = report._repr_html_()
    _is_fragment(fragment)
    assert fragment in report_html(report)  # what --html writes
    (table,) = _parse(fragment).tables
    header, *rows = table
    assert len(rows) == len(report.junctions)
    for j, row in zip(report.junctions, rows):
        cells = dict(zip(header, row))
        assert cells["junction"] == j.name and cells["status"] == j.status
        for metric in ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad"):
            assert _close(cells[metric], j.metric(metric))


def test_report_html_depth_picture_draws_each_metric_and_rings_the_flagged(flagged) -> None:  # type: ignore[no-untyped-def]
    svg = _depth_svg(flagged._repr_html_())
    points = {p.get("data-label"): [tuple(map(float, xy.split(","))) for xy in p.get("points", "").split()]
              for p in svg.iter("polyline")}
    assert set(points) == {"grad_skip", "grad_block", "grad_in"}
    assert len(points["grad_block"]) == 1  # 0 at b1 has no place on a log scale: b2 only
    xs = sorted({x for line in points.values() for x, _ in line})
    junction_at = dict(zip(xs, flagged.junctions))
    # y grows downwards: a larger value sits higher, on one log scale for every line
    drawn = [(junction_at[x].metric(label), y) for label, line in points.items() for x, y in line]
    assert len(drawn) == 5
    by_value = sorted(drawn)
    assert [y for _, y in by_value] == sorted((y for _, y in by_value), reverse=True)
    rings = [c for c in svg.iter("circle") if c.get("class") == "flag"]
    assert len(rings) == len(flagged.summary.flagged) == 1
    (ring,) = rings
    assert "b1: dead" in (ring.findtext("title") or "")
    b1 = points["grad_in"][0]  # the ring sits on b1's grad_in point
    assert (float(ring.get("cx", "0")), float(ring.get("cy", "0"))) == pytest.approx(b1, abs=0.11)
    assert "grad_block (0 or undefined at 1: not drawn)" in "".join(svg.itertext())


def test_comparison_html_is_the_pages_fragment_with_a_line_per_variant(comparison) -> None:  # type: ignore[no-untyped-def]
    from gradflow.render.html import comparison_html

    fragment = comparison._repr_html_()
    _is_fragment(fragment)
    assert fragment in comparison_html(comparison)
    (table,) = _parse(fragment).tables
    header, *rows = table
    assert header == ["junction", "baseline", "sg-skip", "ratio", "sg-block", "ratio"]
    for row, cells in zip(comparison.rows, rows):
        assert cells[0] == row.name and _close(cells[1], row.values["baseline"])
        assert _close(cells[2], row.values["sg-skip"]) and _close(cells[3], comparison.ratio(row, "sg-skip"))
    svg = _depth_svg(fragment)
    labels = [p.get("data-label") for p in svg.iter("polyline")]
    assert labels == list(comparison.variants)
    flagged = sum(len(r.summary.flagged) for r in comparison.variants.values())
    assert len([c for c in svg.iter("circle") if c.get("class") == "flag"]) == flagged


def test_check_html_has_each_rule_each_violation_and_the_verdict(failed_check) -> None:  # type: ignore[no-untyped-def]
    fragment = failed_check._repr_html_()
    _is_fragment(fragment)
    rules, violations = _parse(fragment).tables
    assert [row[:2] for row in rules[1:]] == [
        [o.rule, o.status + (f" ({len(o.violations)})" if o.violations else "")] for o in failed_check.outcomes
    ]
    assert violations[0][:5] == ["rule", "junction / parameter", "value", "threshold", "seed"]
    assert len(violations) - 1 == len(failed_check.violations) == 2
    for v, row in zip(failed_check.violations, violations[1:]):
        assert row[1] == v.subject and _close(row[2], v.value) and row[4] == str(v.seed)
    assert f"✗ gradflow check {failed_check.verdict()}" in fragment


def test_passed_check_html_has_no_violations_table(model_and_input) -> None:  # type: ignore[no-untyped-def]
    result = gradflow.check(*model_and_input)
    assert result.passed
    fragment = result._repr_html_()
    assert len(_parse(fragment).tables) == 1 and "✓ gradflow check passed" in fragment


def test_track_html_has_a_row_and_two_sparklines_per_junction(trained) -> None:  # type: ignore[no-untyped-def]
    fragment = trained._repr_html_()
    _is_fragment(fragment)
    (table,) = _parse(fragment).tables
    header, *rows = table
    assert [row[1] for row in rows] == list(trained.junctions)
    assert header[2:6] == ["grad_skip", "first → last", "grad_block", "first → last"]
    for name, row in zip(trained.junctions, rows):
        for metric, cell in (("grad_skip", row[3]), ("grad_block", row[5])):
            series = trained.series(name, metric)
            first, last = cell.split("→")
            assert _close(first, series[0][1]) and _close(last, series[-1][1])
    sparks = [ET.fromstring(s) for s in re.findall(r'<svg class="spark".*?</svg>', fragment, re.S)]
    assert len(sparks) == 2 * len(trained.junctions) + 1  # skip and block per junction, the loss
    for spark in sparks:
        (line,) = spark.iter("polyline")
        assert len(line.get("points", "").split()) == len(trained.losses) == 3


# ---- the delegations -----------------------------------------------------------------------


def _display_methods(cls: type) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(textwrap.dedent(pyinspect.getsource(cls)))
    (body,) = tree.body
    assert isinstance(body, ast.ClassDef)
    return {f.name: f for f in body.body if isinstance(f, ast.FunctionDef) and f.name in DISPLAY}


def test_each_display_method_is_a_lazy_one_line_delegation_to_render() -> None:
    exported = [getattr(gradflow, name) for name in gradflow.__all__ if not name.startswith("_")]
    shown = {cls for cls in exported if isinstance(cls, type) and _display_methods(cls)}
    assert set(RESULT_TYPES) <= shown  # and any result type exported later is held to the same
    for cls in shown:
        methods = _display_methods(cls)
        assert set(methods) == set(DISPLAY), cls
        for name, method in methods.items():
            imported, returned = method.body  # an import from gradflow.render, then a return
            assert isinstance(imported, ast.ImportFrom) and imported.module, (cls, name)
            assert imported.module.startswith("gradflow.render."), (cls, name)
            assert isinstance(returned, ast.Return) and isinstance(returned.value, ast.Call)
            call = returned.value
            assert isinstance(call.func, ast.Name) and call.func.id == imported.names[0].name
            assert [ast.unparse(a) for a in call.args] == ["self"] and not call.keywords


def test_importing_and_repr_load_neither_rich_nor_torch() -> None:
    code = ("import sys, gradflow; from gradflow.engine.report import Report; "
            "from gradflow.render.short import report_repr; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'torch') "
            "or m.startswith('gradflow.render.table')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- a watch log ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def watch_log(tmp_path_factory) -> gradflow.WatchLog:  # type: ignore[no-untyped-def]
    from gradflow.track import read_watch_log
    from tests.test_show import watched_run

    path = tmp_path_factory.mktemp("log") / "flow.jsonl"
    watched_run(path)
    return read_watch_log(path)


def test_watch_log_shows_itself(watch_log, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gradflow.render.show import print_show

    losses = [v for _, v in watch_log.losses]
    match = re.fullmatch(r"WatchLog\(flow\.jsonl: (\d+) junctions, (\d+) measured steps up to step "
                         r"(\d+), loss (\S+) → (\S+)\)", repr(watch_log))
    assert match, repr(watch_log)
    assert (int(match[1]), int(match[2]), int(match[3])) == (3, 4, 6)
    assert _close(match[4], losses[0]) and _close(match[5], losses[-1])
    monkeypatch.delenv("COLUMNS", raising=False)
    printed = io.StringIO()
    print_show(watch_log, printed)
    assert _rich_text(watch_log) == printed.getvalue()
    fragment = watch_log._repr_html_()
    _is_fragment(fragment)
    (table,) = _parse(fragment).tables
    header, *rows = table
    assert [row[1] for row in rows] == list(watch_log.junctions)
    for name, row in zip(watch_log.junctions, rows):
        for metric, cell in (("grad_skip", row[3]), ("grad_block", row[5])):
            series = watch_log.series(name, metric)
            first, last = cell.split("→")
            assert _close(first, series[0][1]) and _close(last, series[-1][1])
        assert _close(row[6], watch_log.series(name, "block_ratio")[-1][1])


# ---- training arms -------------------------------------------------------------------------


def test_track_arms_show_themselves(model_and_input, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gradflow.render.arms import print_arms
    from gradflow.track import track_arms

    arms = track_arms(*model_and_input, sg_skip=True, no_residual=True, steps=4, every=2)
    assert repr(arms).startswith("TrackArms(2 junctions, 4 steps, loss baseline ")
    monkeypatch.delenv("COLUMNS", raising=False)
    printed = io.StringIO()
    print_arms(arms, printed)
    text = _rich_text(arms)
    assert text == printed.getvalue()
    for name, arm in arms.arms.items():
        row = next(line for line in text.splitlines() if line.startswith(f"│{name} "))
        first, last = row.split("│")[4].split("→")
        assert _close(first.strip(), arm.losses[0][1]) and _close(last.strip(), arm.losses[-1][1])
    fragment = arms._repr_html_()
    _is_fragment(fragment)
    losses, flows = _parse(fragment).tables
    assert [row[0] for row in losses[1:]] == list(arms.arms)
    assert [row[1] for row in flows[1:]] == list(arms.junctions)
    assert flows[0][2:] == ["baseline", "sg-skip"]  # the no-residual arm has no junction
