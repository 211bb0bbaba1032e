"""gradflow.watch through the trainers people use, with the real libraries: a Hugging Face
Trainer and a Lightning Trainer train a tiny residual MLP for a few steps with gradient clipping
(and accumulation); every record equals an independent torch.autograd reference taken on a plain
copy trained side by side with plain PyTorch, before clipping, and the weights come out the same."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from typing import Any

import pytest
import torch

from tests.test_watch import ResMLP, batches, ce, reference_step

CLIP = 0.01  # below every step's gradient norm: clipping changes what the optimizer sees
LR = 0.5
STEPS, EVERY = 5, 2
NORMS = ("grad_out", "grad_skip", "grad_block", "grad_in", "param_grad")


def reference(model: ResMLP, accumulate: int) -> tuple[dict[int, list[dict[str, float]]], ResMLP]:
    """The numbers a watch should record, on a copy of `model` trained with plain PyTorch as the
    trainers do: SGD, the loss divided by `accumulate` (scaling every gradient norm alike, not
    block_ratio or cosine), gradients clipped to CLIP."""
    plain = ResMLP()  # the plain class: a subclass's forward may return more than the logits
    plain.load_state_dict(copy.deepcopy(model.state_dict()))
    opt = torch.optim.SGD(plain.parameters(), lr=LR)
    expected = {}
    for step, micro in enumerate(batches(STEPS, accumulate)):
        rows = reference_step(plain, micro)
        for row in rows:
            for name in NORMS:
                row[name] /= accumulate
        if step % EVERY == 0:
            expected[step] = rows
        for p in plain.parameters():
            p.grad /= accumulate  # type: ignore[operator]
        torch.nn.utils.clip_grad_norm_(plain.parameters(), CLIP)
        opt.step()
        opt.zero_grad()
    return expected, plain


def assert_records(records: list[Any], expected: dict[int, list[dict[str, float]]], prefix: str = "") -> None:
    assert sorted({r.step for r in records}) == sorted(expected)
    for step, rows in expected.items():
        mine = [r for r in records if r.step == step]
        assert [r.junction for r in mine] == [f"{prefix}blocks.{k}" for k in range(3)]
        for record, row in zip(mine, rows):
            assert record.complete, record.note
            for name, value in row.items():
                assert record.metric(name) == pytest.approx(value, rel=1e-5, abs=1e-9), (step, record.junction, name)
    # measured before clipping: the clipped gradient's norm is at most CLIP over every parameter
    assert all(r.param_grad > CLIP for r in records)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


# ---- Hugging Face Trainer --------------------------------------------------------------------


class HFResMLP(ResMLP):
    """The model as a Trainer wants it: keyword inputs, the loss in a dict beside the logits."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:  # type: ignore[override]
        logits = super().forward(x)
        return {"loss": ce(logits, labels), "logits": logits}  # type: ignore[arg-type]


@pytest.mark.parametrize("accumulate", [1, 2])
def test_hf_trainer_records_equal_the_reference_before_clipping(tmp_path, accumulate: int) -> None:  # type: ignore[no-untyped-def]
    transformers = pytest.importorskip("transformers")
    from gradflow.integrations.transformers import GradFlowCallback

    torch.manual_seed(0)
    model = HFResMLP()
    expected, plain = reference(model, accumulate)
    samples = [{"x": x[i], "labels": y[i]} for micro in batches(STEPS, accumulate) for x, y in micro
               for i in range(len(y))]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=6, gradient_accumulation_steps=accumulate,
        max_steps=STEPS, learning_rate=LR, lr_scheduler_type="constant", max_grad_norm=CLIP,
        use_cpu=True, report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True,
        train_sampling_strategy="sequential", dataloader_num_workers=0, seed=0,
    )
    flow = GradFlowCallback(every=EVERY, log=tmp_path / "flow.jsonl")
    trainer = transformers.Trainer(model=model, args=args, train_dataset=samples, callbacks=[flow],
                                   optimizers=(torch.optim.SGD(model.parameters(), lr=LR), None))
    trainer.train()
    assert flow.watch is not None
    assert_records(flow.watch.records, expected)
    same_weights(model, plain)
    assert model._forward_pre_hooks == {} and model._forward_hooks == {}  # closed at the end

    from gradflow.track import read_watch_log

    assert read_watch_log(tmp_path / "flow.jsonl").records == tuple(flow.watch.records)


# ---- Lightning -------------------------------------------------------------------------------


def _lightning() -> Any:
    try:
        import lightning.pytorch as pl
    except ImportError:
        pl = pytest.importorskip("pytorch_lightning")
    return pl


@pytest.mark.parametrize(("accumulate", "module"), [(1, None), (2, "net")])
@pytest.mark.filterwarnings("ignore::UserWarning")  # Lightning's advice on dataloader workers
def test_lightning_records_equal_the_reference_before_clipping(tmp_path, accumulate: int, module: str | None) -> None:  # type: ignore[no-untyped-def]
    pl = _lightning()
    from gradflow.integrations.lightning import GradFlowCallback

    class Lit(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self, net: ResMLP) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)  # type: ignore[no-any-return]

        def training_step(self, batch: Any, index: int) -> torch.Tensor:
            x, y = batch
            return ce(self(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=LR)

    torch.manual_seed(0)
    net = ResMLP()
    expected, plain = reference(net, accumulate)
    pairs = [micro_batch for micro in batches(STEPS, accumulate) for micro_batch in micro]
    samples = torch.utils.data.TensorDataset(torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs]))
    loader = torch.utils.data.DataLoader(samples, batch_size=6, shuffle=False)
    flagged: list[tuple[int, str]] = []
    flow = GradFlowCallback(every=EVERY, module=module, on_flag=lambda r, rule: flagged.append((r.step, rule)))
    trainer = pl.Trainer(
        max_steps=STEPS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=CLIP,
        accumulate_grad_batches=accumulate, callbacks=[flow], default_root_dir=str(tmp_path),
    )
    lit = Lit(net)
    trainer.fit(lit, train_dataloaders=loader)
    assert flow.watch is not None
    assert_records(flow.watch.records, expected, prefix="" if module else "net.")
    same_weights(net, plain)
    losses = {r.step: r.loss for r in flow.watch.records}
    assert all(loss is not None and math.isfinite(loss) for loss in losses.values())
    assert lit._forward_pre_hooks == {} and net._forward_pre_hooks == {}


def test_importing_gradflow_imports_neither_library() -> None:
    code = ("import sys, gradflow, gradflow.integrations; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('lightning', 'pytorch_lightning', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
