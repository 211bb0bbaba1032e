"""`gradflow.watch` in a training loop: every record against an independent torch.autograd
reference taken on a copy of the model trained side by side with plain PyTorch; training
unchanged (weights bit-identical); nothing left behind; incomplete steps; the live rules and what
a flag does; the sinks."""

from __future__ import annotations

import copy
import io
import json
import math
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import gradflow
from gradflow.errors import GradientFlowWarning
from tests.fixtures.models import LoggingModel
from tests.reference import _grad, _through

REL = 1e-5


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d))

    def forward(self, x: torch.Tensor, owner: LoggingModel, scale: float) -> torch.Tensor:
        return owner.junction(x, x, scale * self.f(x), self.f.parameters())  # type: ignore[no-any-return]


class ResMLP(LoggingModel):
    """Residual blocks on a linear stem; `scales` multiplies each block's output (0: dead)."""

    def __init__(self, d: int = 8, depth: int = 3, scales: tuple[float, ...] | None = None) -> None:
        super().__init__()
        self.stem = nn.Linear(4, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(depth))
        self.head = nn.Linear(d, 3)
        self.scales = scales or (1.0,) * depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log = []
        h = self.stem(x)
        for block, scale in zip(self.blocks, self.scales):
            h = block(h, self, scale)
        return self.head(h)  # type: ignore[no-any-return]


class InputForkMLP(LoggingModel):
    """The first junction forks at the model input."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log = []
        return self.head(self.junction(x, x, self.f(x), self.f.parameters()))  # type: ignore[no-any-return]


def ce(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(output, target)


def batches(steps: int, micro: int = 1, seed: int = 0) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(seed)
    return [[(torch.randn(6, 4, generator=generator), torch.randint(0, 3, (6,), generator=generator))
             for _ in range(micro)] for _ in range(steps)]


def reference_step(model: LoggingModel, micro: list[tuple[torch.Tensor, torch.Tensor]]) -> list[dict[str, float]]:
    """One training step of `model` (its backward passes made here), and per junction the numbers
    a watch should record: squared norms and dot products over the micro-batches, parameter
    gradients summed."""
    sums: list[dict[str, Any]] = []
    for x, y in micro:
        x = x.clone().requires_grad_(True)
        loss = ce(model(x), y)
        for k, rec in enumerate(model.log):
            g_y = _grad(loss, rec.y)
            g_skip, g_block = _through(rec.skip, rec.x, g_y), _through(rec.block, rec.x, g_y)
            g_in = _grad(loss, rec.x)
            g_params = torch.autograd.grad(loss, rec.params, retain_graph=True)
            if len(sums) <= k:
                sums.append({"out": 0.0, "skip": 0.0, "block": 0.0, "in": 0.0, "dot": 0.0, "params": None})
            row = sums[k]
            row["out"] += g_y.double().pow(2).sum().item()
            row["skip"] += g_skip.double().pow(2).sum().item()
            row["block"] += g_block.double().pow(2).sum().item()
            row["in"] += g_in.double().pow(2).sum().item()
            row["dot"] += torch.dot(g_skip.double().flatten(), g_block.double().flatten()).item()
            grads = [g.double() for g in g_params]
            row["params"] = grads if row["params"] is None else [a + b for a, b in zip(row["params"], grads)]
        loss.backward()
    rows = []
    for row in sums:
        skip, block = math.sqrt(row["skip"]), math.sqrt(row["block"])
        rows.append({
            "grad_out": math.sqrt(row["out"]), "grad_skip": skip, "grad_block": block,
            "grad_in": math.sqrt(row["in"]),
            "block_ratio": block / skip,
            "cosine": row["dot"] / (skip * block) if skip and block else None,
            "param_grad": math.sqrt(sum(g.pow(2).sum().item() for g in row["params"])),
        })
    return rows


def train_side_by_side(
    make: Callable[[], LoggingModel], optimizer: Callable[[Any], torch.optim.Optimizer], *,
    steps: int = 5, every: int = 2, accumulate: int = 1, **options: Any,
) -> tuple[gradflow.Watch, dict[int, list[dict[str, float]]], LoggingModel, LoggingModel]:
    """Train a watched model and a plain copy on the same batches; the reference numbers of the
    copy at each measured step."""
    torch.manual_seed(0)
    watched = make()
    plain = copy.deepcopy(watched)
    opt_w, opt_p = optimizer(watched.parameters()), optimizer(plain.parameters())
    expected: dict[int, list[dict[str, float]]] = {}
    data = batches(steps, accumulate)
    with gradflow.watch(watched, every=every, accumulate=accumulate, **options) as w:
        for micro in data:
            for x, y in micro:
                loss = ce(watched(x), y)
                loss.backward()
            opt_w.step()
            opt_w.zero_grad()
            w.step(loss)
    for step, micro in enumerate(data):
        rows = reference_step(plain, micro)
        if step % every == 0:
            expected[step] = rows
        opt_p.step()
        opt_p.zero_grad()
    return w, expected, watched, plain


def assert_matches(w: gradflow.Watch, expected: dict[int, list[dict[str, float]]]) -> None:
    assert sorted({r.step for r in w.records}) == sorted(expected)
    for step, rows in expected.items():
        records = [r for r in w.records if r.step == step]
        assert len(records) == len(rows)
        for record, row in zip(records, rows):
            assert record.complete
            for name, value in row.items():
                assert record.metric(name) == pytest.approx(value, rel=REL, abs=1e-9), (step, record.junction, name)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("optimizer", [
    lambda p: torch.optim.SGD(p, lr=0.1),
    lambda p: torch.optim.AdamW(p, lr=1e-2),
], ids=["sgd", "adamw"])
def test_every_record_equals_the_reference_and_training_is_unchanged(optimizer) -> None:  # type: ignore[no-untyped-def]
    w, expected, watched, plain = train_side_by_side(ResMLP, optimizer)
    assert w.junctions == ("blocks.0", "blocks.1", "blocks.2")
    assert_matches(w, expected)
    assert same_weights(watched, plain)
    losses = {r.step: r.loss for r in w.records}
    assert all(loss is not None and math.isfinite(loss) for loss in losses.values())


def test_accumulated_steps_add_over_micro_batches() -> None:
    w, expected, watched, plain = train_side_by_side(
        ResMLP, lambda p: torch.optim.SGD(p, lr=0.1), steps=5, every=2, accumulate=2)
    assert_matches(w, expected)
    assert same_weights(watched, plain)


def test_a_junction_forking_at_the_input() -> None:
    w, expected, watched, plain = train_side_by_side(InputForkMLP, lambda p: torch.optim.SGD(p, lr=0.1))
    assert len(w.junctions) == 1
    assert_matches(w, expected)
    assert same_weights(watched, plain)


def test_step_zero_equals_inspect_with_the_same_loss() -> None:
    torch.manual_seed(0)
    model = ResMLP()
    (x, y), = batches(1)[0]
    report = gradflow.inspect(copy.deepcopy(model), x, loss=lambda out: ce(out, y))
    assert report.probe.loss == "custom"
    with gradflow.watch(model, every=10) as w:
        ce(model(x), y).backward()
    assert [r.junction for r in w.records] == [j.name for j in report.junctions]
    for record, junction in zip(w.records, report.junctions):
        for name in ("grad_out", "grad_skip", "grad_block", "grad_in", "block_ratio", "cosine", "param_grad"):
            assert record.metric(name) == pytest.approx(junction.metric(name), rel=REL)
        assert record.status == junction.status


def test_the_settings_per_junction_vanishing_threshold_is_the_one_a_status_uses() -> None:
    """A threshold between the junctions' grad_in / |dL/d output|: the ones under it are
    vanishing, as inspect says with the same threshold."""
    torch.manual_seed(0)
    model = ResMLP()
    (x, y), = batches(1)[0]
    report = gradflow.inspect(copy.deepcopy(model), x, loss=lambda out: ce(out, y))
    assert report.summary.grad_output
    ratios = sorted(j.grad_in / report.summary.grad_output for j in report.junctions)
    between = math.sqrt(ratios[0] * ratios[-1])
    assert ratios[0] < between < ratios[-1]
    expected = gradflow.inspect(copy.deepcopy(model), x, loss=lambda out: ce(out, y),
                                thresholds=gradflow.Thresholds(vanishing_below=between))
    settings = gradflow.CheckSettings(vanishing_below=between)
    with gradflow.watch(model, every=10, settings=settings, on_flag=lambda record, rule: None) as w:
        ce(model(x), y).backward()
    assert [r.status for r in w.records] == [j.status for j in expected.junctions]
    assert "vanishing" in [r.status for r in w.records] and "ok" in [r.status for r in w.records]


def _patchable() -> dict[str, Any]:
    """Everything the forward recorder replaces while it records."""
    return {
        **{name: torch.Tensor.__dict__.get(name) for name in ("__add__", "__radd__", "__iadd__", "add", "add_",
                                                              "detach", "requires_grad")},
        "torch.add": torch.add, "torch.detach": torch.detach,
        "_call_impl": torch.nn.Module._call_impl, "__getattr__": torch.nn.Module.__getattr__,
    }


def test_a_step_not_measured_costs_one_hook_call_and_installs_nothing() -> None:
    torch.manual_seed(0)
    model = ResMLP()
    before = _patchable()
    (x, y), = batches(1)[0]
    with gradflow.watch(model, every=3) as w:
        assert len(model._forward_pre_hooks) == 1 and not model._forward_hooks
        out = model(x)  # step 0: measured
        assert out._backward_hooks  # the taps ride on this step's graph (a positive control)
        ce(out, y).backward()
        for _ in range(2):  # steps 1 and 2: not measured
            out = model(x)
            assert _patchable() == before
            assert len(model._forward_pre_hooks) == 1 and not model._forward_hooks
            assert out._backward_hooks is None
            assert all(t._backward_hooks is None for rec in model.log for t in (rec.x, rec.y, rec.block))
            ce(out, y).backward()
        with torch.no_grad():  # not counted
            model(x)
        assert w.steps == 3
        model(x)  # step 3: measured
        assert out is not None
    assert {r.step for r in w.records} == {0, 3}
    assert not model._forward_pre_hooks and not model._forward_hooks
    assert _patchable() == before


def test_leaving_the_block_by_an_exception_removes_every_hook() -> None:
    torch.manual_seed(0)
    model = ResMLP()
    before = _patchable()
    (x, y), = batches(1)[0]
    reference = copy.deepcopy(model)
    with pytest.raises(KeyError), gradflow.watch(model, every=1) as w:
        out = model(x)  # measured, its backward pass never comes
        raise KeyError("interrupted")
    assert not model._forward_pre_hooks and not model._forward_hooks
    assert _patchable() == before
    assert out._backward_hooks is not None  # hooks on a graph: removed handles stay as empty dicts
    assert not any(out._backward_hooks.values())
    ce(out, y).backward()  # nothing of the watch runs in it
    assert [r.complete for r in w.records] == [False] * 3
    assert same_weights(model, reference)
    # A forward pass that raises inside the block leaves nothing either.
    with gradflow.watch(model, every=1), pytest.raises(RuntimeError):
        model(torch.randn(2, 5))
    assert _patchable() == before and not model._forward_pre_hooks and not model._forward_hooks


def test_a_forward_pass_before_the_backward_pass_leaves_the_step_incomplete() -> None:
    torch.manual_seed(0)
    model = ResMLP()
    data = batches(4)
    with gradflow.watch(model, every=2) as w:
        x, y = data[0][0]
        first = model(x)  # step 0, measured: its backward pass comes too late
        ce(model(data[1][0][0]), data[1][0][1]).backward()  # step 1
        ce(first, y).backward()
        ce(model(data[2][0][0]), data[2][0][1]).backward()  # step 2, measured and complete
    incomplete = [r for r in w.records if r.step == 0]
    assert [r.complete for r in incomplete] == [False] * 3
    assert all(r.grad_block is None and r.status is None for r in incomplete)
    assert "before this step's backward pass" in (incomplete[0].note or "")
    assert all(r.complete and r.grad_block is not None for r in w.records if r.step == 2)


def _dead_loop(on_flag: Any, steps: int = 6, every: int = 1) -> gradflow.Watch:
    """A model whose second block is multiplied by 1e-6: it barely passes anything back."""
    torch.manual_seed(0)
    model = ResMLP(scales=(1.0, 1e-6, 1.0))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradflow.watch(model, every=every, on_flag=on_flag) as w:
        for (x, y), in batches(steps):
            ce(model(x), y).backward()
            opt.step()
            opt.zero_grad()
            w.step()
    return w


def test_dead_is_flagged_only_on_two_measured_steps_in_a_row() -> None:
    seen: list[tuple[int, str, str]] = []
    w = _dead_loop(lambda record, rule: seen.append((record.step, record.junction, rule)), every=2)
    assert [r.status for r in w.records if r.junction == "blocks.1"] == ["dead"] * 3
    assert seen == [(2, "blocks.1", "dead"), (4, "blocks.1", "dead")]


def test_the_gates_other_rules_run_live_too() -> None:
    """A block multiplied by exactly 0: its parameters' gradients are exactly zero."""
    seen: list[tuple[int, str]] = []
    torch.manual_seed(0)
    model = ResMLP(scales=(1.0, 0.0, 1.0))
    with gradflow.watch(model, every=1, on_flag=lambda record, rule: seen.append((record.step, rule))):
        ce(model(torch.randn(3, 4)), torch.tensor([0, 1, 2])).backward()
    assert (0, "zero-grad") in seen and all(rule != "dead" for _, rule in seen)


def test_a_flag_warns_once_per_junction_and_rule() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _dead_loop("warn")
    flags = [c for c in caught if issubclass(c.category, GradientFlowWarning)]
    assert len(flags) == len({str(c.message) for c in flags})
    assert len(flags) == 1
    assert "dead at blocks.1" in str(flags[0].message) and "step 1" in str(flags[0].message)


def test_a_flag_raises_with_the_junction_and_the_rule() -> None:
    torch.manual_seed(0)
    model = ResMLP(scales=(1.0, 1e-6, 1.0))
    before = _patchable()
    with pytest.raises(gradflow.GradientFlowError) as raised, gradflow.watch(model, every=1, on_flag="raise") as w:
        for (x, y), in batches(4):
            ce(model(x), y).backward()
            w.step()
    error = raised.value
    assert isinstance(error, RuntimeError)
    assert (error.junction, error.rule, error.step) == ("blocks.1", "dead", 1)
    assert not model._forward_pre_hooks and _patchable() == before


def test_bad_options_are_one_line_errors() -> None:
    model = ResMLP()
    for options, words in (({"every": 0}, "every must be"), ({"accumulate": 1.5}, "accumulate must be"),
                           ({"on_flag": "shout"}, "on_flag must be"), ({"sink": 3}, "sink must be")):
        with pytest.raises(gradflow.errors.OptionError, match=words):
            gradflow.watch(model, **options)
    assert not model._forward_pre_hooks


def test_the_log_and_the_callable_sink_get_every_record(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.schemas import validate

    got: list[gradflow.WatchRecord] = []
    path = tmp_path / "flow.jsonl"
    torch.manual_seed(0)
    model = ResMLP(scales=(1.0, 0.0, 1.0))
    with gradflow.watch(model, every=2, log=path, sink=got.append, on_flag=lambda r, rule: None) as w:
        for (x, y), in batches(3):
            loss = ce(model(x), y)
            loss.backward()
            w.step(loss)
    assert got == w.records
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    header, rows = lines[0], lines[1:]
    assert header["schema"] == "gradflow/watch@1"
    assert (header["model"], header["every"], header["accumulate"]) == ("ResMLP", 2, 1)
    assert header["junctions"] == list(w.junctions)
    assert len(rows) == len(w.records)
    for row, record in zip(rows, w.records):
        assert row["junction"] == record.junction and row["step"] == record.step
        assert row["grad_block"] == record.grad_block and row["status"] == record.status
        assert row["loss"] == record.loss
    assert rows[4]["block_ratio"] == 0.0 and rows[4]["cosine"] is None
    for line in lines:
        validate(line, "gradflow/watch@1")


def test_tensorboard_scalars(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    model = ResMLP()
    with gradflow.watch(model, every=2, tensorboard=tmp_path) as w:
        for (x, y), in batches(5):
            loss = ce(model(x), y)
            loss.backward()
            w.step(loss)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"gradflow/blocks.0/grad_skip", "gradflow/blocks.2/block_ratio", "gradflow/loss"} <= tags
    skips = events.Scalars("gradflow/blocks.1/grad_skip")
    assert [e.step for e in skips] == [0, 2, 4]
    expected = [r.grad_skip for r in w.records if r.junction == "blocks.1"]
    assert [e.value for e in skips] == pytest.approx(expected, rel=1e-6)


def test_a_compiled_model_is_counted_on_the_wrapper_and_measured_eager() -> None:
    torch.manual_seed(0)
    model = ResMLP()
    plain_w, expected, _, _ = train_side_by_side(ResMLP, lambda p: torch.optim.SGD(p, lr=0.1), steps=3)
    compiled = torch.compile(model, backend="eager")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradflow.watch(compiled, every=2) as w:
        for (x, y), in batches(3):
            ce(compiled(x), y).backward()
            opt.step()
            opt.zero_grad()
    assert any("torch.compile" in note for note in w.notes)
    assert_matches(w, {step: rows for step, rows in expected.items() if step < 3})
    assert not compiled._forward_pre_hooks and "forward" in compiled.__dict__


def test_display() -> None:
    from rich.console import Console

    w = _dead_loop(lambda r, rule: None, steps=3)
    assert repr(w) == "Watch(3 junctions, every 1, 3 measured steps up to step 2, flagged: 1 dead)"
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(w)
    text = console.export_text()
    assert "step 2" in text and "blocks.1" in text and "dead" in text
    assert "<table>" in w._repr_html_()


@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device")]),
])
def test_a_grad_scaler_gives_unscaled_numbers(device: str) -> None:
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    model = ResMLP().to(device)
    plain = copy.deepcopy(model)
    scaler = torch.amp.GradScaler(device, init_scale=1024.0, growth_interval=1)  # the scale moves
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = [[(x.to(device), y.to(device)) for x, y in micro] for micro in batches(5)]
    scales = []
    with gradflow.watch(model, every=2, scaler=scaler) as w:
        for (x, y), in data:
            scales.append(scaler.get_scale())
            scaler.scale(ce(model(x), y)).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
    assert scales[0] < scales[2] < scales[4]
    opt_p = torch.optim.SGD(plain.parameters(), lr=0.1)
    expected = {}
    for step, micro in enumerate(data):
        rows = reference_step(plain, micro)
        if step % 2 == 0:
            expected[step] = rows
        opt_p.step()
        opt_p.zero_grad()
    assert_matches(w, expected)


def test_under_autocast_the_numbers_are_float32_sums_of_bfloat16_gradients() -> None:
    """The watched forward pass runs under torch.autocast (bfloat16 on the CPU); the reference
    takes the same passes under autocast and its norms in float64, so only rounding differs."""
    torch.manual_seed(0)
    model = ResMLP()
    plain = copy.deepcopy(model)
    data = batches(1)
    with gradflow.watch(model, every=1) as w, torch.autocast("cpu", dtype=torch.bfloat16):
        (x, y), = data[0]
        ce(model(x), y).backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rows = reference_step(plain, data[0])
    for record, row in zip(w.records, rows, strict=True):
        assert record.complete
        for name, value in row.items():
            assert record.metric(name) == pytest.approx(value, rel=2e-2), (record.junction, name)


def test_a_step_that_cannot_be_measured_says_why_and_training_goes_on() -> None:
    class Labels(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = ResMLP()

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"labels": self.inner(x).argmax(-1)}

    model = Labels()
    with gradflow.watch(model, every=1) as w:
        for _ in range(3):
            model(torch.randn(2, 4))
    assert w.records == []
    assert w.notes == ["the step could not be measured: the model output has no floating-point tensor to "
                       "take a loss on (got dict); return the tensor to differentiate"]
    assert not model._forward_pre_hooks and not model._forward_hooks


def test_at_measures_the_junctions_it_names() -> None:
    w, expected, _, _ = train_side_by_side(ResMLP, lambda p: torch.optim.SGD(p, lr=0.1), steps=3,
                                           at=["blocks.1", "2"])
    assert w.junctions == ("blocks.1", "blocks.2")
    assert_matches(w, {step: rows[1:] for step, rows in expected.items()})


def test_a_loss_function_must_give_one_number() -> None:
    model, x = ResMLP(), torch.randn(4, 4)
    with pytest.raises(gradflow.errors.ProbeError, match="one element, got shape \\[4, 3\\]"):
        gradflow.inspect(model, x, loss=lambda out: out.square())
    with pytest.raises(gradflow.errors.ProbeError, match="the loss function raised ZeroDivisionError"):
        gradflow.inspect(model, x, loss=lambda out: 1 / 0)
