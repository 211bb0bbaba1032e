"""gradflow show: a watch log written by a real watch over a tiny model, read back and rendered
as track's table, JSON, CSV, HTML and a figure; a log still being written; bad files."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch

import gradflow
from gradflow.errors import LogError
from gradflow.track import SHOW_SCHEMA, WatchLog, read_watch_log
from tests.schemas import validate
from tests.test_watch import ResMLP, batches, ce

STEPS, EVERY = 7, 2


def watched_run(path: Path, steps: int = STEPS) -> gradflow.Watch:
    """A tiny residual MLP trained with SGD under a watch logging to `path`: steps 0, 2, 4, 6."""
    torch.manual_seed(0)
    model = ResMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    with gradflow.watch(model, every=EVERY, log=path) as w:
        for (x, y), in batches(steps):
            loss = ce(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            w.step(loss)
    return w


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> tuple[Path, gradflow.Watch]:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("show") / "flow.jsonl"
    return path, watched_run(path)


def test_the_log_reads_back_as_the_watchs_records(logged) -> None:  # type: ignore[no-untyped-def]
    path, w = logged
    log = read_watch_log(path)
    assert isinstance(log, WatchLog) and not log.partial
    assert log.records == tuple(w.records)  # every number survives the round trip exactly
    assert log.junctions == w.junctions == ("blocks.0", "blocks.1", "blocks.2")
    assert (log.model, log.every, log.accumulate) == ("ResMLP", EVERY, 1)
    assert log.steps() == [0, 2, 4, 6]
    assert log.losses == tuple((r.step, r.loss) for r in w.records if r.junction == "blocks.0")
    for name in log.junctions:
        mine = [(r.step, r.grad_skip, r.grad_block) for r in w.records if r.junction == name]
        assert log.series(name, "grad_block") == [(s, b) for s, _, b in mine]
        expected = None
        behind = False
        for step, skip, block in mine:
            if block > skip and behind and expected is None:
                expected = step
            behind = behind or not block > skip
        assert log.crossover(name) == expected
        assert log.leads_from_start(name) == (mine[0][2] > mine[0][1])


def _rows(text: str) -> dict[str, list[str]]:
    return {cells[1]: cells for line in text.splitlines()
            if len(cells := [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]) == 8
            and cells[1].startswith("blocks.")}


def test_the_table_holds_track_columns_and_the_records_numbers(gradflow_cli, logged, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path, w = logged
    monkeypatch.setenv("COLUMNS", "160")
    result = gradflow_cli("show", path)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"gradflow show · flow.jsonl · ResMLP · every {EVERY} steps · 4 measured, steps 0–6")
    rows = _rows(out)
    assert list(rows) == list(w.junctions)
    for name, cells in rows.items():
        mine = [r for r in w.records if r.junction == name]
        assert len(cells[2]) == len(cells[4]) == 4  # a sparkline point per measured step
        for cell, metric in ((cells[3], "grad_skip"), (cells[5], "grad_block")):
            first, last = cell.split("→")
            assert math.isclose(float(first), mine[0].metric(metric), rel_tol=6e-3)  # type: ignore[arg-type]
            assert math.isclose(float(last), mine[-1].metric(metric), rel_tol=6e-3)  # type: ignore[arg-type]
        assert math.isclose(float(cells[6].rstrip("×")), mine[-1].block_ratio, rel_tol=6e-3)  # type: ignore[arg-type]
        crossover = read_watch_log(path).crossover(name)
        assert cells[7] in ((f"step {crossover}",) if crossover is not None else ("never", "from the start"))
    losses = [r.loss for r in w.records if r.junction == "blocks.0"]
    loss_line = next(line for line in out.splitlines() if line.startswith("loss "))
    assert loss_line.split()[1] == f"{losses[0]:.4g}" and f"{losses[-1]:.4g}" in loss_line


def test_json_validates_and_holds_every_record(gradflow_cli, logged) -> None:  # type: ignore[no-untyped-def]
    path, w = logged
    result = gradflow_cli("show", path, "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    validate(document)
    assert document["schema"] == SHOW_SCHEMA
    assert document["log"]["model"] == "ResMLP" and document["log"]["every"] == EVERY
    assert document["records"] == [r.to_dict() for r in w.records]
    log = read_watch_log(path)
    assert [(j["name"], j["crossover"]) for j in document["junctions"]] == [
        (name, log.crossover(name)) for name in w.junctions]
    assert [row["loss"] for row in document["losses"]] == [v for _, v in log.losses]
    broken = {**document, "records": [{**document["records"][0], "status": "fine"}]}
    with pytest.raises(Exception, match="fine"):
        validate(broken)


def test_csv_has_one_row_per_record(gradflow_cli, logged, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, w = logged
    target = tmp_path / "flow.csv"
    result = gradflow_cli("show", path, "-o", target)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(rows) == len(w.records)
    for row, record in zip(rows, w.records):
        assert int(row["step"]) == record.step and row["junction"] == record.junction
        for metric in ("grad_skip", "grad_block", "block_ratio", "param_grad", "loss"):
            assert float(row[metric]) == getattr(record, metric)
        assert row["status"] == record.status and row["complete"] == "true"
    printed = gradflow_cli("show", path, "--format", "csv")
    assert printed.stdout == target.read_text()


def test_html_and_plot(gradflow_cli, logged, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    path, w = logged
    page, figure = tmp_path / "flow.html", tmp_path / "flow.png"
    result = gradflow_cli("show", path, "--html", page, "--plot", figure)
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<script" not in text
    assert all(f"<td class=name>{name}</td>" in text for name in w.junctions)
    assert text.count('<svg class="spark"') == 2 * len(w.junctions) + 1
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_growing_log(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Read while the watch still writes it, and with a last line cut off mid-write."""
    path = tmp_path / "flow.jsonl"
    torch.manual_seed(0)
    model = ResMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    seen: list[WatchLog] = []
    with gradflow.watch(model, every=EVERY, log=path) as w:
        for step, ((x, y),) in enumerate(batches(5)):
            loss = ce(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            w.step(loss)
            if step in (0, 3):
                seen.append(read_watch_log(path))
    assert [log.steps() for log in seen] == [[0], [0, 2]]
    assert seen[1].records == tuple(r for r in w.records if r.step <= 2)

    lines = path.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    log = read_watch_log(cut)
    assert log.partial and log.records == tuple(w.records[:-1])
    assert "last line partial" in repr(log)
    shown = gradflow_cli("show", cut)
    assert shown.exit_code == 0 and "the last line is still being written: left out" in shown.stdout
    document = json.loads(gradflow_cli("show", cut, "--format", "json").stdout)
    assert document["partial_last_line"] is True and len(document["records"]) == len(w.records) - 1
    no_newline = tmp_path / "whole.jsonl"
    no_newline.write_text("".join(lines).rstrip("\n"))  # the last record whole, its newline not yet
    whole = read_watch_log(no_newline)
    assert not whole.partial and whole.records == tuple(w.records)


def test_an_incomplete_step_shows_as_a_gap(gradflow_cli, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "flow.jsonl"
    torch.manual_seed(0)
    model = ResMLP()
    with gradflow.watch(model, every=2, log=path) as w:
        for (x, y), in batches(3):
            ce(model(x), y).backward()
        model(x)  # step 3
        model(x)  # step 4, measured: the watch ends before its backward pass
    log = read_watch_log(path)
    assert log.incomplete_steps() == [4] and log.steps() == [0, 2, 4]
    assert [r.complete for r in log.records] == [r.complete for r in w.records]
    monkeypatch.setenv("COLUMNS", "160")
    out = gradflow_cli("show", path).stdout
    assert "incomplete step(s) 4" in out
    for cells in _rows(out).values():
        assert len(cells[2]) == 2  # steps 0 and 2; step 4's place is blank (stripped here)


def test_a_log_with_no_measured_step(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "flow.jsonl"
    with gradflow.watch(ResMLP(), every=5, log=path):
        pass  # the header is written when the watch closes
    log = read_watch_log(path)
    assert log.records == () and log.junctions == () and log.steps() == []
    result = gradflow_cli("show", path)
    shown = " ".join(result.stdout.split())  # the title wraps where the terminal is narrow
    assert result.exit_code == 0 and "0 measured: no junction measured" in shown
    assert "no step was recorded" in shown


@pytest.mark.parametrize(("content", "message"), [
    (None, "watch log not found"),
    ("", "has no header yet"),
    ('{"schema": "gradflow/watch@1", "gradfl', "has no header yet"),
    ('{"schema": "gradflow/track@1"}\n', "is not a watch log: line 1 is a gradflow/track@1 document"),
    ("step,junction\n", "line 1 is not JSON"),
    ("HEADER\n" + '{"step": 0, "junc\n' + "RECORD\n", "line 2 is not JSON"),
    ("HEADER\n" + "RECORD\n" + '{"step": -1, "junction": "a"}\n', "line 3: step must be"),
    ("HEADER\n" + "HEADER\n", "line 2 is a second header"),
])
def test_a_bad_file_is_one_line_and_exit_2(gradflow_cli, logged, tmp_path, content, message) -> None:  # type: ignore[no-untyped-def]
    path, _ = logged
    header, record = path.read_text().splitlines()[:2]
    bad = tmp_path / "bad.jsonl"
    if content is not None:
        bad.write_text(content.replace("HEADER", header).replace("RECORD", record))
    with pytest.raises(LogError, match=re.escape(message)):
        read_watch_log(bad)
    result = gradflow_cli("show", bad)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert result.stderr.startswith("gradflow: error: ")


def test_a_plot_with_a_bad_suffix_fails_before_reading(gradflow_cli, logged, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, _ = logged
    copy = tmp_path / "flow.jsonl"
    shutil.copy(path, copy)
    result = gradflow_cli("show", copy, "--plot", tmp_path / "flow.gif")
    assert result.exit_code == 2 and "--plot flow.gif" in result.stderr
