"""Nested junctions: a residual whose fork and add lie on a path of another junction, between its
fork and add (the score add inside DeBERTa's attention, a branch of HRNet's fuse add). The report names the
junction that holds each one, and the survival and the `vanishing` verdict are judged on the
stream's junctions alone. Numbers against plain torch.autograd.grad on the tensors the model
exposes."""

from __future__ import annotations

import io
import json
import re

import pytest
import torch
from rich.console import Console
from torch import nn

import gradflow
from gradflow.engine.measure import locate
from gradflow.engine.report import Report, Status, on_stream
from gradflow.render.numbers import ratio
from gradflow.render.table import NESTED, report_table, summary_lines
from tests.conftest import ROOT
from tests.schemas import validate

WIDTH = 16


class Layer(nn.Module):
    """`x + o(a + p(b + v(b)))` with `a = q(norm(x))`, `b = k(a)`: a residual (fork b) inside the
    block of a residual (fork a) inside the block of the layer's residual (fork x). The output
    projection is small, so what reaches the two inner junctions is below a thousandth of the
    gradient at the output, as in DeBERTa's attention; `q` is large, so the layer's block still
    passes back well above the dead threshold."""

    def __init__(self, seen: dict[str, list[torch.Tensor]]) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(WIDTH)
        self.q, self.k, self.v, self.p, self.o = (nn.Linear(WIDTH, WIDTH) for _ in range(5))
        with torch.no_grad():
            self.o.weight.mul_(1e-4)
            self.o.bias.zero_()
            self.q.weight.mul_(100.0)
        self.seen = seen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.q(self.norm(x))
        b = self.k(a)
        c = b + self.v(b)
        s = a + self.p(c)
        y = x + self.o(s)
        for key, value in zip("xabcsy", (x, a, b, c, s, y)):
            self.seen[key].append(value)
        return y


class Nested(nn.Module):
    def __init__(self, layers: int = 2) -> None:
        super().__init__()
        self.seen: dict[str, list[torch.Tensor]] = {k: [] for k in "xabcsy"}
        self.layers = nn.ModuleList(Layer(self.seen) for _ in range(layers))
        self.head = nn.Linear(WIDTH, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for values in self.seen.values():
            values.clear()
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def _model() -> Nested:
    torch.manual_seed(0)
    return Nested()


def _input() -> torch.Tensor:
    return torch.randn(4, WIDTH, generator=torch.Generator().manual_seed(1))


def _reference(model: Nested, x: torch.Tensor) -> dict[str, list[float]]:
    """Sum loss: per layer, |dL/d| of every tensor the layer exposes, and |dL/d output|."""
    out = model(x.clone().requires_grad_(True))
    loss = out.sum()
    seen = model.seen
    keys = list(seen)
    tensors = [t for k in keys for t in seen[k]]
    grads = torch.autograd.grad(loss, [out, *tensors])
    norms: dict[str, list[float]] = {"output": [grads[0].norm().item()]}
    rest = iter(grads[1:])
    for k in keys:
        norms[k] = [next(rest).norm().item() for _ in seen[k]]
    return norms


def test_a_nested_junction_names_the_junction_that_holds_it() -> None:
    model, x = _model(), _input()
    report = gradflow.inspect(model, x, loss="sum")
    assert [(j.name, j.nested_in) for j in report.junctions] == [
        ("layers.0#0", "layers.0#1"),  # c = b + v(b), inside the block of s = a + p(c)
        ("layers.0#1", "layers.0#2"),  # s = a + p(c), inside the block of y = x + o(s)
        ("layers.0#2", None),
        ("layers.1#0", "layers.1#1"),
        ("layers.1#1", "layers.1#2"),
        ("layers.1#2", None),
    ]
    assert [j.nested_in for j in locate(model, x)] == [j.nested_in for j in report.junctions]
    assert [j.name for j in on_stream(report.junctions)] == ["layers.0#2", "layers.1#2"]
    # A second measurement of the same shapes replays the first search, nesting included.
    again = gradflow.inspect(model, x, loss="sum")
    assert [j.nested_in for j in again.junctions] == [j.nested_in for j in report.junctions]


def test_survival_and_vanishing_are_judged_on_the_stream() -> None:
    model, x = _model(), _input()
    ref = _reference(model, x)
    report = gradflow.inspect(model, x, loss="sum")
    output = ref["output"][0]
    assert report.summary.grad_output == pytest.approx(output, rel=1e-5)
    # Each junction: grad_out at its add, grad_in at its fork.
    forks, adds = ("b", "a", "x"), ("c", "s", "y")
    for junction, (layer, k) in zip(report.junctions, [(i, k) for i in range(2) for k in range(3)]):
        assert junction.grad_out == pytest.approx(ref[adds[k]][layer], rel=1e-4), junction.name
        assert junction.grad_in == pytest.approx(ref[forks[k]][layer], rel=1e-4), junction.name
    # What reaches the inner junctions is below a thousandth of the gradient at the output: on
    # the stream that would be `vanishing`; nested, it is what the block holding them passes.
    for layer in range(2):
        for fork in ("a", "b"):
            assert ref[fork][layer] / output < 1e-3
    assert all(j.status is Status.OK for j in report.junctions), [j.status for j in report.junctions]
    # The survival: grad_in at the first stream junction (x of layer 0) over grad_out at the last
    # (y of layer 1); over every junction it would start at b of layer 0, and fail.
    survival = ref["x"][0] / ref["y"][1]
    assert report.summary.survival == pytest.approx(survival, rel=1e-4)
    assert survival > 0.5 and ref["b"][0] / ref["y"][1] < 1e-2
    result = gradflow.check(model, x, loss="sum")
    assert result.passed, result.verdict()
    assert result.outcome("vanishing").worst == pytest.approx(survival, rel=1e-4)
    assert result.outcome("vanishing").worst_subject == "layers.0#2 … layers.1#2"


def test_nested_in_is_in_the_json_and_the_table() -> None:
    report = gradflow.inspect(_model(), _input(), loss="sum")
    document = json.loads(json.dumps(report.to_dict()))
    validate(document)
    assert [j["nested_in"] for j in document["junctions"]] == [j.nested_in for j in report.junctions]
    assert Report.from_dict(document).junctions == report.junctions

    console = Console(width=200, record=True)
    console.print(report_table(report))
    for line in summary_lines(report):
        console.print(line)
    text = console.export_text()
    assert f"    {NESTED}layers.0#0" in text  # two enclosing junctions: indented once
    assert f" {NESTED}layers.0#1" in text and f"{NESTED}layers.0#2" not in text
    assert "4 nested inside another junction (↳), left out of the survival" in text


def test_a_nested_junction_that_nothing_reaches_is_vanishing() -> None:
    """A stop-gradient on the layer's block leaves the junctions inside it without any gradient
    (autograd: the block's output is a constant), which no design explains."""
    model, x = _model(), _input()
    report = gradflow.inspect(model, x, loss="sum", sg_block=True, at=["layers.0#2"])
    assert [(j.name, j.grad_in, j.status) for j in report.junctions[:2]] == [
        ("layers.0#0", 0.0, Status.VANISHING), ("layers.0#1", 0.0, Status.VANISHING)]
    assert [j.status for j in report.junctions[2:]] == [Status.DEAD] + [Status.OK] * 3


class TwoBranches(nn.Module):
    """`long(x) + (u + r(u))` with `u = short(x)`: a fuse add of two branches that both train,
    as in HRNet, with a residual on the shorter branch, which the search calls the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.long = nn.Sequential(*(m for _ in range(4) for m in (nn.Linear(WIDTH, WIDTH), nn.Tanh())))
        self.short = nn.Linear(WIDTH, WIDTH)
        self.r = nn.Linear(WIDTH, WIDTH)
        self.seen: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.short(x)
        v = u + self.r(u)
        y = self.long(x) + v
        self.seen.update(x=x, u=u, v=v, y=y)
        return y


def test_a_junction_on_the_skip_path_of_a_fuse_add_is_nested_too() -> None:
    torch.manual_seed(0)
    model, x = TwoBranches(), _input()
    report = gradflow.inspect(model, x.clone().requires_grad_(True), loss="sum")
    inner, fuse = report.junctions
    assert (fuse.skip, fuse.block_modules) == ("projection", ("long",))
    assert set(fuse.skip_modules) >= {"short", "r"}
    assert (inner.nested_in, fuse.nested_in) == (fuse.name, None)
    # The survival is the fuse add's own: grad_in at x over grad_out at y, by autograd.
    leaf = x.clone().requires_grad_(True)
    loss = model(leaf).sum()
    g_x, g_u, g_y = torch.autograd.grad(loss, [leaf, model.seen["u"], model.seen["y"]])
    assert inner.grad_in == pytest.approx(g_u.norm().item(), rel=1e-5)
    assert report.summary.survival == pytest.approx((g_x.norm() / g_y.norm()).item(), rel=1e-5)


def _depth(report: Report, name: str) -> int:
    """How many junctions hold `name`, following nested_in to the stream."""
    holder = {j.name: j.nested_in for j in report.junctions}[name]
    return 0 if holder is None else 1 + _depth(report, holder)


SENTENCE = "4 nested inside another junction (↳), left out of the survival"


def test_the_html_report_marks_exactly_the_nested_junctions() -> None:
    from html import unescape

    from gradflow.render.html import report_fragment

    report = gradflow.inspect(_model(), _input(), loss="sum")
    fragment = report_fragment(report)
    cells = re.findall(r"<tr><td>(\d+)</td><td class=name([^>]*)>(.*?)</td>", fragment)
    assert [int(index) for index, _, _ in cells] == [j.index for j in report.junctions]
    for j, (_, attributes, cell) in zip(report.junctions, cells):
        text = unescape(re.sub(r"<[^>]+>", "", cell))
        if j.nested_in is None:
            assert (attributes, text) == ("", j.name)
        else:
            # indented one step per enclosing junction beyond the first, the holder named on hover
            indent = 0.6 + 1.2 * (_depth(report, j.name) - 1)
            assert attributes == f' style="padding-left:{indent:.1f}rem" title="nested in {j.nested_in}"'
            assert text == f"{NESTED.strip()} {j.name}"
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", fragment)
    assert captions == [j.name if j.nested_in is None else f"{NESTED}{j.name} · nested in {j.nested_in}"
                        for j in report.junctions]
    assert fragment.count(SENTENCE) == 1


def test_the_markdown_report_marks_exactly_the_nested_junctions() -> None:
    from gradflow.render.markdown import report_markdown

    report = gradflow.inspect(_model(), _input(), loss="sum")
    text = report_markdown(report)
    cells = [line.split(" | ")[1] for line in text.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(cells) == len(report.junctions)
    for j, cell in zip(report.junctions, cells):
        depth = _depth(report, j.name)
        assert cell == (f"`{j.name}`" if j.nested_in is None
                        else "&emsp;" * (depth - 1) + f"{NESTED}`{j.name}`")
    assert f"survival {ratio(report.summary.survival)} · {SENTENCE} · flagged: none" in text


def test_blocks_marks_exactly_the_nested_junctions(gradflow_cli) -> None:  # type: ignore[no-untyped-def]
    report = gradflow.inspect(_model(), _input(), loss="sum")
    source = f"{ROOT / 'tests' / 'test_nested.py'}:_model"
    args = ("blocks", source, "--input-shape", f"4,{WIDTH}")
    listed = json.loads(gradflow_cli(*args, "--format", "json").stdout)["junctions"]
    assert [(r["name"], r["nested_in"]) for r in listed] == [(j.name, j.nested_in) for j in report.junctions]

    table = gradflow_cli(*args)
    assert table.exit_code == 0, table.output
    rows = [line.split("│")[2] for line in table.stdout.splitlines() if line.count("│") > 2]
    rows = [cell for cell in rows if "layers." in cell]
    for j, cell in zip(report.junctions, rows, strict=True):
        depth = _depth(report, j.name)
        assert cell.rstrip() == " " + ("  " * (depth - 1) + NESTED if depth else "") + j.name
    assert SENTENCE in table.stdout

    markdown = gradflow_cli(*args, "--format", "markdown").stdout
    cells = [line.split(" | ")[1] for line in markdown.splitlines() if re.match(r"\| \d+ \|", line)]
    assert cells == [f"`{j.name}`" if j.nested_in is None
                     else "&emsp;" * (_depth(report, j.name) - 1) + f"{NESTED}`{j.name}`"
                     for j in report.junctions]
    assert markdown.rstrip().endswith(SENTENCE)


class CutLayer(Layer):
    """The innermost residual's block is a detached copy: a `cut` violation at a nested junction."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.q(self.norm(x))
        b = self.k(a)
        c = b + self.v(b).detach()
        return x + self.o(a + self.p(c))


def test_check_outputs_mark_a_violation_at_a_nested_junction() -> None:
    from gradflow.render.check import check_text
    from gradflow.render.check_html import check_fragment
    from gradflow.render.check_markdown import check_markdown

    model = _model()
    model.layers[0] = CutLayer(model.seen)
    result = gradflow.check(model, _input(), loss="sum")
    (cut,) = result.outcome("cut").violations
    holders = {j.name: j.nested_in for j in result.report.junctions}
    assert holders[cut.subject] == "layers.0#1"  # the innermost junction of the first layer
    others = [v.subject for v in result.violations if v is not cut]
    assert others and not any(s in holders for s in others)  # v's parameters: no gradient

    text = check_text(result, width=200)
    assert f"{NESTED}{cut.subject} (nested in {holders[cut.subject]})" in text
    assert text.count(NESTED.strip()) == 2 and SENTENCE in text  # the marked row, the summary

    markdown = check_markdown(result)
    assert f"| {NESTED}`{cut.subject}` (nested in `{holders[cut.subject]}`) |" in markdown
    assert markdown.count(NESTED.strip()) == 2 and SENTENCE in markdown

    fragment = check_fragment(result)
    marked = re.findall(r"<td class=name><span class=nested>↳</span> (.*?) <span class=nested>"
                        r"\(nested in (.*?)\)</span></td>", fragment)
    assert marked == [(cut.subject, holders[cut.subject])]
    assert all(f"<td class=name>{s}</td>" in fragment for s in others)
    assert f"<p class=dim>{SENTENCE}</p>" in fragment


def _marked(report: Report, name: str, indent: str) -> str:
    """`name` as a junction cell marks it: ↳ after `indent` once per enclosing junction beyond
    the first, when the report says it is nested."""
    depth = _depth(report, name)
    return indent * (depth - 1) + NESTED + name if depth else name


def test_compare_outputs_mark_exactly_the_nested_junctions() -> None:
    from html import unescape

    from gradflow.render.compare import compare_table, comparison_markdown, comparison_rich
    from gradflow.render.html import comparison_fragment

    comparison = gradflow.compare(_model(), _input(), sg_skip=True, sg_block=True, loss="sum")
    base = comparison.variants["baseline"]
    # The variants share one graph: every one holds the same junctions in the same places.
    assert all([(j.name, j.nested_in) for j in r.junctions] == [(j.name, j.nested_in) for j in base.junctions]
               for r in comparison.variants.values())
    assert [row.name for row in comparison.rows] == [j.name for j in base.junctions]

    console = Console(width=200, record=True)
    console.print(compare_table(comparison))
    cells = [line.split("│")[1] for line in console.export_text().splitlines() if "layers." in line]
    assert [cell.rstrip() for cell in cells] == [_marked(base, j.name, "  ") for j in base.junctions]
    console = Console(width=200, record=True)
    console.print(comparison_rich(comparison))
    text = console.export_text()
    assert text.count(SENTENCE) == 1 and text.count(NESTED.strip()) == 5  # 4 rows, the sentence

    markdown = comparison_markdown(comparison)
    cells = [line.split(" | ")[0][2:] for line in markdown.splitlines() if "layers." in line
             and line.startswith("| ")]
    assert cells == [_marked(base, j.name, "&emsp;").replace(j.name, f"`{j.name}`")
                     for j in base.junctions]
    assert f"\n- {SENTENCE}\n" in markdown

    fragment = comparison_fragment(comparison)
    rows = re.findall(r"<tr><td class=name([^>]*)>(.*?)</td>", fragment)
    assert len(rows) == len(base.junctions)
    for j, (attributes, cell) in zip(base.junctions, rows):
        text = unescape(re.sub(r"<[^>]+>", "", cell))
        if j.nested_in is None:
            assert (attributes, text) == ("", j.name)
        else:
            indent = 0.6 + 1.2 * (_depth(base, j.name) - 1)
            assert attributes == f' style="padding-left:{indent:.1f}rem" title="nested in {j.nested_in}"'
            assert text == f"{NESTED.strip()} {j.name}"
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", fragment)
    assert captions == [j.name if j.nested_in is None else f"{NESTED}{j.name} · nested in {j.nested_in}"
                        for j in base.junctions]
    assert fragment.count(f"<li>{SENTENCE}</li>") == 1


def test_compare_of_two_models_marks_a_junction_as_the_model_that_has_it() -> None:
    """Rows only the second model has are marked as that model reports them."""
    from gradflow.drivers.compare import line_up
    from gradflow.render.compare import comparison_markdown

    torch.manual_seed(0)
    one, two = (gradflow.inspect(Nested(layers), _input(), loss="sum") for layers in (1, 2))
    comparison = line_up({"one": one, "two": two})
    assert [row.name for row in comparison.rows] == [j.name for j in two.junctions]
    assert [row.has("one") for row in comparison.rows] == [True] * 3 + [False] * 3
    cells = [line.split(" | ")[0][2:] for line in comparison_markdown(comparison).splitlines()
             if "layers." in line and line.startswith("| ")]
    assert cells == [_marked(two, j.name, "&emsp;").replace(j.name, f"`{j.name}`")
                     for j in two.junctions]


def test_compare_cli_marks_the_nested_junctions(gradflow_cli) -> None:  # type: ignore[no-untyped-def]
    report = gradflow.inspect(_model(), _input(), loss="sum")
    source = f"{ROOT / 'tests' / 'test_nested.py'}:_model"
    args = ("compare", source, "--sg-skip", "--input-shape", f"4,{WIDTH}", "--loss", "sum")
    table = gradflow_cli(*args)
    assert table.exit_code == 0, table.output
    cells = [line.split("│")[1] for line in table.stdout.splitlines() if "layers." in line and "│" in line]
    assert [cell.rstrip() for cell in cells] == [_marked(report, j.name, "  ") for j in report.junctions]
    assert SENTENCE in table.stdout
    markdown = gradflow_cli(*args, "--format", "markdown")
    assert markdown.exit_code == 0, markdown.output
    assert f"| {NESTED}`layers.0#1` |" in markdown.stdout and f"\n- {SENTENCE}\n" in markdown.stdout


def test_the_depth_picture_names_nested_junctions_as_the_tables_do() -> None:
    from gradflow.render.depth import comparison_depth, report_depth
    from gradflow.render.depth_plot import depth_figure
    from gradflow.render.depth_svg import depth_svg

    comparison = gradflow.compare(_model(), _input(), sg_skip=True, loss="sum")
    report = comparison.variants["baseline"]
    labels = [f"{NESTED}{j.name}" if j.nested_in else j.name for j in report.junctions]
    for picture in (report_depth(report), comparison_depth(comparison)):
        assert picture.junctions == tuple(j.name for j in report.junctions)
        assert [picture.label(k) for k in range(len(report.junctions))] == labels
        svg = depth_svg(picture)
        ticks = re.findall(r'transform="rotate\(-25 [^"]*"\>(.*?)</text>', svg)
        assert ticks == labels
        for k, j in enumerate(report.junctions):  # each point names its junction on hover
            assert f"<title>{labels[k]} · " in svg, j.name
        figure = depth_figure(picture)
        assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == labels
        figure.savefig(io.BytesIO(), format="png")  # a glyph missing from the font warns


def test_compare_says_what_changed_at_the_first_junction_on_the_stream() -> None:
    from gradflow.drivers.compare import describe

    comparison = gradflow.compare(_model(), _input(), sg_skip=True, loss="sum")
    base, stopped = (comparison.variants[v] for v in ("baseline", "sg-skip"))
    # the first junction in forward order is nested (layers.0#0); the stream's first is layers.0#2
    assert base.junctions[0].nested_in is not None
    first = next(j for j in base.junctions if j.nested_in is None).name
    assert first == "layers.0#2"
    said = describe(comparison, "sg-skip")
    assert said.startswith(f"sg-skip: grad_in at the first junction ({first}) is ")
    ratio = stopped.junction(first).grad_in / base.junction(first).grad_in
    assert f"{ratio:.3g}" in said or f"{ratio:.2g}" in said, (said, ratio)
