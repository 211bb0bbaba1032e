"""gradflow track with arms: a baseline and stopped or rewired copies trained side by side from
the same weights. Each arm's training equals a hand-written plain-PyTorch training of the same
model (`.detach()` at the junctions, or `y = f(x)`): its losses and its weights after N steps."""

from __future__ import annotations

import copy
import csv
import io
import json

import pytest
import torch

import gradflow
from gradflow.errors import OptionError
from gradflow.track import TrackArms, track, track_arms
from tests.schemas import validate
from tests.test_watch import ResMLP

STEPS, EVERY, LR = 6, 2, 0.2


class ArmsMLP(ResMLP):
    """ResMLP whose junctions can also be rewritten by hand as `y = f(x)` (`no_residual`)."""

    def __init__(self) -> None:
        super().__init__()
        self.no_residual: set[int] = set()

    def junction(self, x, skip, block, params):  # type: ignore[no-untyped-def]
        y = super().junction(x, skip, block, params)
        return block if len(self.log) - 1 in self.no_residual else y


@pytest.fixture(scope="module")
def model_and_input() -> tuple[ArmsMLP, torch.Tensor]:
    torch.manual_seed(0)
    return ArmsMLP(), torch.randn(16, 4, generator=torch.Generator().manual_seed(3))


def labels(rows: int) -> torch.Tensor:
    """The probe's ce labels: drawn with the seed, as `gradflow.probe.probe_loss` draws them."""
    return torch.randint(0, 3, (rows,), generator=torch.Generator().manual_seed(0))


def copied(model: ArmsMLP) -> ArmsMLP:
    model.log = []  # a forward pass of the model (inspect's, say) left graph tensors there
    return copy.deepcopy(model)


def by_hand(model: ArmsMLP, x: torch.Tensor, arm: str) -> tuple[ArmsMLP, list[float]]:
    """Plain PyTorch: SGD on the probe batch with the ce loss, the arm's change written into the
    model (`skip.detach()`, `block.detach()`, `y = block`) at every junction."""
    plain = copied(model)
    everywhere = {0, 1, 2}
    if arm == "sg-skip":
        plain.detach_skip = everywhere
    elif arm == "sg-block":
        plain.detach_block = everywhere
    elif arm == "no-residual":
        plain.no_residual = everywhere
    opt = torch.optim.SGD(plain.parameters(), lr=LR)
    y = labels(len(x))
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(plain(x.clone()), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return plain, losses


@pytest.fixture(scope="module")
def arms(model_and_input) -> TrackArms:  # type: ignore[no-untyped-def]
    model, x = model_and_input
    return track_arms(model, x, sg_skip=True, sg_block=True, no_residual=True, steps=STEPS,
                      every=EVERY, optimizer="sgd", lr=LR, loss="ce", source="ArmsMLP")


@pytest.mark.parametrize("arm", ["baseline", "sg-skip", "sg-block", "no-residual"])
def test_each_arm_trains_as_plain_pytorch_does(arms, model_and_input, arm: str) -> None:  # type: ignore[no-untyped-def]
    model, x = model_and_input
    plain, losses = by_hand(model, x, arm)
    result = arms.arms[arm]
    assert result.steps() == list(range(0, STEPS, EVERY)) and result.steps_run == STEPS
    for step, loss in result.losses:
        assert loss == pytest.approx(losses[step], rel=1e-6), (arm, step)
    for (name, mine), theirs in zip(arms.trained[arm].named_parameters(), plain.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7, msg=f"{arm}: {name}")


def test_the_arms_differ_and_the_original_is_untouched(arms, model_and_input) -> None:  # type: ignore[no-untyped-def]
    model, _ = model_and_input
    finals = {name: arm.losses[-1][1] for name, arm in arms.arms.items()}
    assert len(set(finals.values())) == 4
    fresh = ArmsMLP.__new__(ArmsMLP)  # the fixture's weights, as built
    torch.manual_seed(0)
    fresh.__init__()  # type: ignore[misc]
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), fresh.parameters()))


def test_baseline_is_track_and_stopped_step_zero_is_compare(arms, model_and_input) -> None:  # type: ignore[no-untyped-def]
    model, x = model_and_input
    alone = track(model, x, steps=STEPS, every=EVERY, optimizer="sgd", lr=LR, loss="ce")
    assert arms.baseline.records == alone.records and arms.baseline.losses == alone.losses
    comparison = gradflow.compare(model, x, sg_skip=True, sg_block=True, loss="ce", mode="train")
    for arm in ("sg-skip", "sg-block"):
        variant = comparison.variants[arm]
        first = [r for r in arms.arms[arm].records if r.step == 0]
        assert [r.junction for r in first] == [j.name for j in variant.junctions] == list(arms.junctions)
        for record, junction in zip(first, variant.junctions):
            for metric in ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad"):
                assert record.metric(metric) == pytest.approx(junction.metric(metric), rel=1e-5, abs=1e-9)
    assert arms.arms["no-residual"].junctions == () and arms.arms["no-residual"].records == ()


def test_at_selects_the_junctions_the_arms_change(model_and_input) -> None:  # type: ignore[no-untyped-def]
    model, x = model_and_input
    result = track_arms(model, x, no_residual=True, sg_skip=True, steps=3, every=1,
                        optimizer="sgd", lr=LR, loss="ce", at=["blocks.1"])
    plain = copied(model)
    plain.no_residual = {1}
    opt = torch.optim.SGD(plain.parameters(), lr=LR)
    for step in range(3):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(plain(x.clone()), labels(len(x)))
        loss.backward()
        opt.step()
        assert result.arms["no-residual"].losses[step][1] == pytest.approx(loss.item(), rel=1e-6)
    assert result.junctions == ("blocks.1",)


def test_outputs_json_csv_and_display(arms) -> None:  # type: ignore[no-untyped-def]
    document = json.loads(arms_json(arms))
    validate(document)
    assert list(document["arms"]) == ["baseline", "sg-skip", "sg-block", "no-residual"]
    assert document["arms"]["sg-skip"]["form"] == "sg(x) + f(x)"
    for name, arm in arms.arms.items():
        assert document["arms"][name]["track"] == json.loads(json.dumps(arm.to_dict()))
    rows = list(csv.DictReader(io.StringIO(arms_csv(arms))))
    assert len(rows) == sum(len(a.records) or len(a.losses) for a in arms.arms.values())
    assert {r["arm"] for r in rows} == set(arms.arms)
    text = repr(arms)
    assert text.startswith("TrackArms(3 junctions, 6 steps, loss baseline ")
    assert "no-residual" in text


def arms_json(arms: TrackArms) -> str:
    from gradflow.render.arms import arms_json as render

    return render(arms)


def arms_csv(arms: TrackArms) -> str:
    from gradflow.render.arms import arms_csv as render

    return render(arms)


def test_no_arm_is_an_error(model_and_input) -> None:  # type: ignore[no-untyped-def]
    model, x = model_and_input
    with pytest.raises(OptionError, match="no arm to train"):
        track_arms(model, x, steps=2)


def test_cli_arms_table_json_and_errors(gradflow_cli, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import SAMPLES

    monkeypatch.setenv("COLUMNS", "130")
    result = gradflow_cli("track", SAMPLES / "deep_mlp.py", "--steps", "4", "--every", "2",
                          "--sg-block", "--no-residual")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "3 arms from the same weights" in " ".join(out.split())  # the title may wrap
    for arm, form in (("baseline", "x + f(x)"), ("sg-block", "x + sg(f(x))"), ("no-residual", "f(x)")):
        assert any(line.split("│")[1:3] and arm in line and form in line for line in out.splitlines()), arm
    document = json.loads(gradflow_cli("track", SAMPLES / "deep_mlp.py", "--steps", "2", "--sg-skip",
                                       "--format", "json").stdout)
    validate(document)
    assert list(document["arms"]) == ["baseline", "sg-skip"]
    target, figure = tmp_path / "arms.csv", tmp_path / "arms.png"
    done = gradflow_cli("track", SAMPLES / "deep_mlp.py", "--steps", "2", "--sg-skip", "-o", target,
                        "--plot", figure)
    assert done.exit_code == 0, done.output
    assert target.read_text().startswith("arm,step,junction,")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
