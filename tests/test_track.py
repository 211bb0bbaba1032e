"""gradflow track: training a copy, records against inspect and plain autograd, the CLI outputs."""

from __future__ import annotations

import copy
import csv
import io
import json
import sys

import pytest
import torch

import gradflow
from gradflow.errors import OptionError
from gradflow.track import Track, TrackRecord, TrackSettings, track
from tests.fixtures import models
from tests.reference import reference
from tests.test_measure import _inputs, mse
from tests.test_untouched import _assert_same, _prepared, _snapshot

REFERENCE_METRICS = ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad", "cosine")

TINY_MODEL = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 6))

    def forward(self, x):
        return x + self.f(x)


class Tiny(nn.Module):
    """Two residual junctions (b1, b2) on 6 features, 3 classes."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 6)
        self.b1 = Block()
        self.b2 = Block()
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        return self.out(self.b2(self.b1(torch.tanh(self.inp(x)))))


def build():
    torch.manual_seed(0)
    return Tiny()


def example_input():
    return torch.randn(16, 4, generator=torch.Generator().manual_seed(3))
'''


@pytest.fixture
def tiny(tmp_path):  # type: ignore[no-untyped-def]
    path = tmp_path / "tiny.py"
    path.write_text(TINY_MODEL)
    return path


@pytest.fixture
def dataset(tmp_path):  # type: ignore[no-untyped-def]
    """40 samples of 4 features, 3 classes that depend on the features (learnable)."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(40, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    path = tmp_path / "train.pt"
    torch.save({"inputs": x, "targets": y}, path)
    return path


# --- the verb ------------------------------------------------------------------------------


def test_records_every_n_steps_loss_goes_down_and_model_is_untouched() -> None:
    model = _prepared()  # stale grads, mixed modes, a frozen bias, a forward hook
    before = _snapshot(model)
    result = track(model, _inputs("SmallResNet"), steps=12, every=3, lr=1e-2)
    _assert_same(before, _snapshot(model))
    assert result.junctions == ("b1", "b2")
    assert result.steps() == [0, 3, 6, 9] and result.steps_run == 12
    for name in result.junctions:
        assert [step for step, _ in result.series(name, "grad_skip")] == [0, 3, 6, 9]
    assert len(result.records) == 12 // 3 * len(result.junctions)
    losses = [loss for _, loss in result.losses]
    assert losses[-1] < losses[0]
    assert not result.interrupted


@pytest.mark.parametrize("name", ["SmallResNet", "InputFork", "Nested", "TokenModel"])
def test_step_zero_equals_inspect_on_the_same_batch_and_seed(name: str) -> None:
    model = getattr(models, name)()
    inputs = _inputs(name)
    report = gradflow.inspect(model, inputs, seed=3)
    result = track(model, inputs, steps=1, seed=3)
    assert result.junctions == tuple(j.name for j in report.junctions)
    for junction in report.junctions:
        (record,) = [r for r in result.records if r.junction == junction.name]
        assert record.step == 0 and record.index == junction.index
        for metric in ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad", "cosine"):
            # inspect takes a plain junction's block part as the fork's gradient minus the add's
            # (gradflow.engine.taps.Captured), track from hooks: they agree to a few float32
            # rounding units of the fork's gradient.
            assert record.metric(metric) == pytest.approx(junction.metric(metric), rel=1e-5, abs=1e-6), metric
        assert record.loss == pytest.approx(report.summary.loss, rel=1e-6)


@pytest.mark.parametrize(("optimizer", "every"), [("sgd", 1), ("adam", 2), ("adamw", 3)])
def test_every_record_matches_autograd_after_the_same_training_by_hand(optimizer: str, every: int) -> None:
    """Independent: torch.optim steps a copy by hand; plain autograd.grad measures it."""
    name, steps, lr = "InputFork", 7, 0.05
    inputs = _inputs(name)
    model = getattr(models, name)()
    result = track(model, inputs, steps=steps, every=every, optimizer=optimizer, lr=lr, loss="mse")
    by_hand = copy.deepcopy(model)
    make = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optimizer]
    opt = make(by_hand.parameters(), lr=lr)
    for step in range(steps):
        if step % every == 0:
            expected = reference(by_hand, inputs, mse)
            for k, row in enumerate(expected):
                (record,) = [r for r in result.records if r.step == step and r.index == k]
                for metric in REFERENCE_METRICS:
                    assert record.metric(metric) == pytest.approx(row[metric], rel=1e-4, abs=1e-7), (step, k, metric)
        opt.zero_grad()
        mse(by_hand(inputs)).backward()
        opt.step()
    assert len(result.records) == len(range(0, steps, every)) * 2


class _ScaledFork(torch.nn.Module):
    """One junction whose fork h = 2x has no parameter upstream."""

    def __init__(self) -> None:
        super().__init__()
        self.f = torch.nn.Linear(4, 4)
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x * 2))

    def body(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.f(h)


def test_fork_with_no_parameter_upstream_gets_its_gradient() -> None:
    """A backward pass that asks only for parameter gradients would skip the node of h = 2x and
    its hooks; the measured pass must reach it (autograd.grad on the same tensors decides)."""
    torch.manual_seed(0)
    model = _ScaledFork()
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    (record,) = track(model, x, steps=1, loss="sum").records
    h = (x * 2).requires_grad_()
    y = model.body(h)
    loss = model.head(y).sum()
    g_y, g_h = torch.autograd.grad(loss, [y, h])
    (junction,) = gradflow.inspect(model, x, loss="sum").junctions
    for measured in (record, junction):
        assert measured.grad_out == pytest.approx(g_y.norm().item(), rel=1e-5)
        assert measured.grad_in == pytest.approx(g_h.norm().item(), rel=1e-5)


def test_training_data_with_cross_entropy_matches_autograd_at_step_zero() -> None:
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(10, 6, generator=g), torch.randint(0, 6, (10,), generator=g)
    model = models.InputFork()
    result = track(model, data=(x, y), steps=1, batch_size=10, seed=4)
    assert result.settings.loss == "ce" and result.settings.samples == 10
    # The batch is the whole set in a seeded order; cross entropy (a mean) does not depend on it.
    order = torch.randperm(10, generator=torch.Generator().manual_seed(4))
    expected = reference(model, x[order], lambda out: torch.nn.functional.cross_entropy(out, y[order]))
    for k, row in enumerate(expected):
        record = result.records[k]
        for metric in REFERENCE_METRICS:
            assert record.metric(metric) == pytest.approx(row[metric], rel=1e-5, abs=1e-8), metric


def test_junction_names_are_stable_and_at_selects_by_name() -> None:
    model = models.Shared()  # both adds run in the root module: junctions #0 and #1
    result = track(model, _inputs("Shared"), steps=6, every=2, at=["1"], loss="mse")
    assert result.junctions == ("#1",)
    assert {r.junction for r in result.records} == {"#1"}
    assert len(result.records) == 3
    full = track(model, _inputs("Shared"), steps=4, every=1, loss="mse")
    for step in full.steps():
        assert [r.junction for r in full.records if r.step == step] == ["#0", "#1"]


def test_ctrl_c_keeps_what_was_recorded() -> None:
    def stop_at_five(update):  # type: ignore[no-untyped-def]
        if update.done == 5:
            raise KeyboardInterrupt

    model = models.InputFork()
    before = _snapshot(model)
    result = track(model, _inputs("InputFork"), steps=50, every=2, on_step=stop_at_five)
    assert result.interrupted and result.steps_run == 5
    assert result.steps() == [0, 2, 4]
    _assert_same(before, _snapshot(model))


def test_a_model_holding_activations_from_its_last_forward_can_be_copied() -> None:
    model = models.SmallResNet()
    model(_inputs("SmallResNet"))  # model.log now holds non-leaf tensors
    result = track(model, _inputs("SmallResNet"), steps=2)
    assert len(result.records) == 4


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"steps": 0}, "--steps"),
        ({"every": 0}, "--every"),
        ({"lr": 0.0}, "--lr"),
        ({"optimizer": "lbfgs"}, "sgd, adam, adamw"),
    ],
)
def test_bad_settings_are_option_errors(kwargs, needle) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OptionError, match=needle):
        track(models.InputFork(), _inputs("InputFork"), **kwargs)


# --- the result ----------------------------------------------------------------------------


def _track(pairs: list[tuple[float, float]]) -> Track:
    records = tuple(
        TrackRecord(step=2 * i, junction="j", index=0, grad_out=1.0, grad_skip=s, grad_block=b,
                    grad_in=1.0, block_ratio=b / s, cosine=None, param_grad=1.0, loss=1.0)
        for i, (s, b) in enumerate(pairs)
    )
    settings = TrackSettings(steps=2 * len(pairs), every=2, optimizer="sgd", lr=0.1, loss="mse",
                             seed=0, batch_size=4)
    return Track("m.py", settings, ("j",), records, tuple((r.step, r.loss) for r in records),
                 2 * len(pairs))


def test_crossover_is_the_first_step_where_block_overtakes_skip() -> None:
    assert _track([(1.0, 0.1), (1.0, 0.5), (1.0, 2.0), (1.0, 0.5), (1.0, 3.0)]).crossover("j") == 4
    behind = _track([(1.0, 0.1), (1.0, 0.9)])
    assert behind.crossover("j") is None and not behind.leads_from_start("j")
    ahead = _track([(1.0, 2.0), (1.0, 3.0)])
    assert ahead.crossover("j") is None and ahead.leads_from_start("j")
    assert _track([(1.0, 2.0), (1.0, 0.5), (1.0, 2.0)]).crossover("j") == 4


# --- the command ---------------------------------------------------------------------------


def test_cli_table_has_sparklines_crossover_and_loss(gradflow_cli, tiny) -> None:
    result = gradflow_cli("track", tiny, "--steps", "8", "--every", "2", "--lr", "0.01", "--device", "cpu")
    assert result.exit_code == 0, result.output
    for needle in ("gradflow track", "b1", "b2", "grad_skip", "grad_block", "block overtook", "loss "):
        assert needle in result.stdout
    assert any(ch in result.stdout for ch in "▁▂▃▄▅▆▇█")


def test_cli_json_and_csv_hold_every_record(gradflow_cli, tiny, dataset, tmp_path) -> None:
    result = gradflow_cli("track", tiny, "--data", dataset, "--batch-size", "8", "--steps", "9",
                          "--every", "3", "--optimizer", "sgd", "--lr", "0.1", "--format", "json",
                          "--device", "cpu")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["schema"] == "gradflow/track@1"
    assert document["settings"]["loss"] == "ce" and document["settings"]["samples"] == 40
    assert [j["name"] for j in document["junctions"]] == ["b1", "b2"]
    assert len(document["records"]) == 9 // 3 * 2
    assert {r["step"] for r in document["records"]} == {0, 3, 6}
    assert set(document["records"][0]) == {"step", "junction", "index", "grad_out", "grad_skip",
                                           "grad_block", "grad_in", "block_ratio", "cosine",
                                           "param_grad", "loss"}
    target = tmp_path / "flow.csv"
    result = gradflow_cli("track", tiny, "--steps", "4", "--every", "2", "--format", "csv",
                          "-o", target, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(rows) == 4 and [r["step"] for r in rows] == ["0", "0", "2", "2"]
    assert float(rows[0]["grad_skip"]) > 0 and float(rows[0]["loss"]) > 0


def test_cli_npz_data_and_mse(gradflow_cli, tiny, tmp_path) -> None:
    import numpy as np

    g = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=g.normal(size=(12, 4)), y=g.normal(size=(12, 3)))
    result = gradflow_cli("track", tiny, "--data", tmp_path / "d.npz", "--steps", "2",
                          "--format", "json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["settings"]["loss"] == "mse" and len(document["records"]) == 4


def test_cli_plot_writes_a_png_and_an_svg(gradflow_cli, tiny, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    png, svg = tmp_path / "flow.png", tmp_path / "flow.svg"
    for target in (png, svg):
        result = gradflow_cli("track", tiny, "--steps", "6", "--every", "2", "--plot", target,
                              "--device", "cpu")
        assert result.exit_code == 0, result.output
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()


def test_cli_plot_without_matplotlib_names_the_extra_before_training(gradflow_cli, tiny, tmp_path,
                                                                     monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    result = gradflow_cli("track", tiny, "--steps", "100000", "--plot", tmp_path / "f.png")
    assert result.exit_code == 2
    assert "gradflow-cli[plot]" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "f.png").exists()


@pytest.mark.parametrize(
    ("content", "args", "needle"),
    [
        ({"inputs": torch.randn(5, 4)}, [], "no targets found"),
        ({"x": torch.randn(5, 4), "y": torch.zeros(4, dtype=torch.long)}, [], "5 samples but targets have 4"),
        ({"x": torch.randn(5, 4), "y": torch.randn(5)}, ["--loss", "ce"], "integer class targets"),
        ({"x": torch.randn(5, 4), "y": torch.full((5,), 7)}, [], "output has 3 classes"),
        ({"x": torch.randn(5, 4), "y": torch.zeros(5, dtype=torch.long)}, ["--loss", "sum"], "takes no targets"),
        ([1, 2, 3], [], "expected a dict"),
        (b"not a torch file", [], "cannot read data file"),
        (None, [], "data file not found"),
        ({"x": torch.randn(5, 4), "y": torch.zeros(5, dtype=torch.long)}, ["--plot", "f.gif"], "must end in"),
        ({"x": torch.randn(5, 4), "y": torch.zeros(5, dtype=torch.long)}, ["--input-shape", "2,4"], "drop --input"),
    ],
)
def test_bad_data_is_one_line_and_exit_2(gradflow_cli, tiny, tmp_path, content, args, needle) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    result = gradflow_cli("track", tiny, "--data", path, "--steps", "2", "--device", "cpu", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradflow: error:"), result.stderr
    assert needle in lines[0]


def test_cli_unsupported_data_suffix(gradflow_cli, tiny, tmp_path) -> None:
    (tmp_path / "d.csv").write_text("1,2\n")
    result = gradflow_cli("track", tiny, "--data", tmp_path / "d.csv", "--device", "cpu")
    assert result.exit_code == 2 and "use .pt or .npz" in result.stderr


def test_cli_leaves_the_model_file_alone(gradflow_cli, tiny) -> None:
    before = tiny.read_bytes()
    assert gradflow_cli("track", tiny, "--steps", "2", "--device", "cpu").exit_code == 0
    assert tiny.read_bytes() == before


def _tiny_module(path):  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_for_track", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_torchscript_records_every_step_like_the_eager_model(tiny) -> None:
    """TorchScript's optimizing executor would fuse the graph after a few calls and hide the
    junctions; track turns it off, so every step is measured and equals the eager model's."""
    source = _tiny_module(tiny)
    eager = source.build()
    scripted = torch.jit.script(source.build())
    inputs = source.example_input()
    a = track(eager, inputs, steps=6, loss="mse")
    b = track(scripted, inputs, steps=6, loss="mse")
    assert len(b.records) == len(a.records) == 12
    assert all(p.is_leaf and p.grad is None for p in scripted.parameters())
    for x, y in zip(a.records, b.records):
        assert x.step == y.step
        for metric in ("grad_skip", "grad_block", "grad_in", "param_grad"):
            assert y.metric(metric) == pytest.approx(x.metric(metric), rel=1e-5), metric


def test_cli_ctrl_c_still_writes_the_records(gradflow_cli, tiny, tmp_path, monkeypatch) -> None:
    from gradflow.cli import track as command

    update = command._Progress.update

    def interrupting(self, step):  # type: ignore[no-untyped-def]
        update(self, step)
        if step.done == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(command._Progress, "update", interrupting)
    target = tmp_path / "flow.json"
    result = gradflow_cli("track", tiny, "--steps", "50", "-o", target, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "interrupted after 3 of 50 steps" in result.stderr
    assert "interrupted after 3 of 50 steps" in result.stdout  # the table's note
    document = json.loads(target.read_text())
    assert document["interrupted"] is True and document["steps_run"] == 3
    assert [entry["step"] for entry in document["losses"]] == [0, 1, 2]


def test_table_fits_a_narrow_terminal() -> None:
    from rich.console import Console

    from gradflow.render.track import render_track

    result = _track([(1.0, 0.1), (1.0, 0.5), (1.0, 2.0)])
    for width, wide in ((80, False), (140, True)):
        out = io.StringIO()
        Console(file=out, width=width, color_system=None).print(render_track(result, width))
        text = out.getvalue()
        assert max(len(line) for line in text.splitlines()) <= width
        assert ("first → last" in text) is wide
        assert "step 4" in text and any(tick in text for tick in "▁▂▃▄▅▆▇█")


def test_an_eager_model_trains_under_watch_and_gets_its_records() -> None:
    """One code path: track's records are those of gradflow.watch over the same plain loop."""
    from tests.test_watch import ResMLP

    torch.manual_seed(0)
    model = ResMLP()
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    result = track(model, x, steps=5, every=2, optimizer="sgd", lr=0.1, loss="mse")
    plain = copy.deepcopy(model)
    opt = torch.optim.SGD(plain.parameters(), lr=0.1)
    with gradflow.watch(plain, every=2) as w:
        for _ in range(5):
            opt.zero_grad(set_to_none=True)
            loss = plain(x.clone()).float().pow(2).mean()
            loss.backward()
            opt.step()
            w.step(loss)
    assert [(r.step, r.junction) for r in result.records] == [(r.step, r.junction) for r in w.records]
    for mine, theirs in zip(result.records, w.records):
        for metric in ("grad_out", "grad_skip", "grad_block", "grad_in", "block_ratio", "cosine", "param_grad", "loss"):
            assert getattr(mine, metric) == getattr(theirs, metric), metric
    assert [r.index for r in result.records if r.step == 0] == [0, 1, 2]


def test_an_at_that_matches_nothing_is_an_option_error() -> None:
    with pytest.raises(OptionError, match="--at 'nope' matches no junction"):
        track(models.InputFork(), _inputs("InputFork"), steps=2, at=["nope"])
