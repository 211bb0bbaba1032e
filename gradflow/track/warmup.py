"""The warm-up: a few optimizer steps on a copy of the model with the probe batch.

`gradflow check` measures a model again after its warm-up when a junction looks dead or the
gradient vanishes at initialisation, and no gate explains it (see `gradflow.engine.gates`): a
zero-initialised classifier head, for one, passes nothing back at step 0 and everything after the
first step. The copy trains exactly as `track` trains on a probe batch (same copy, same loss,
same optimizer code), so the warm-up can be reproduced with plain torch (`gradflow check`'s
steps and lr: `gradflow.gate.settings.WARMUP_STEPS` and `WARMUP_LR`):

    work = copy.deepcopy(model)
    optimizer = torch.optim.Adam([p for p in work.parameters() if p.requires_grad], lr=lr)
    torch.manual_seed(seed)  # dropout
    for _ in range(steps):
        optimizer.zero_grad()
        probe_loss(work(*inputs), loss, seed).backward()   # gradflow.probe.probe_loss
        optimizer.step()
"""

from __future__ import annotations

from typing import Any

import torch

from gradflow.choices import Loss, Mode
from gradflow.engine.inventory import Inventory, eager
from gradflow.engine.state import seed_generators
from gradflow.errors import OptionError
from gradflow.track.result import Optimizer
from gradflow.track.train import _Objective, _optimizer, _plain_step, _training_copy

WARMUP_OPTIMIZER = Optimizer.ADAM


def warmed_copy(
    model: torch.nn.Module,
    inputs: Any,
    *,
    steps: int,
    lr: float,
    loss: Loss | str = Loss.AUTO,
    mode: Mode | str = Mode.TRAIN,
    seed: int = 0,
) -> torch.nn.Module:
    """A copy of `model` after `steps` Adam steps at learning rate `lr` on the probe batch
    `inputs` with the probe loss; `model` itself is never modified.

    Args:
        inputs: the probe batch (a tensor, a tuple of positional inputs or a dict of keyword
            inputs), the same every step.
        loss: the probe loss (see `gradflow.probe.probe_loss`; `ce` on labels drawn with `seed`).
        mode: the mode the copy trains in, the probe's.
        seed: seeds dropout, as the probe does; the caller's RNG state is restored afterwards.
    Returns:
        The trained copy, in `mode`.
    """
    if steps < 1:
        raise OptionError(f"--warmup-steps must be at least 1 to warm up, got {steps}")
    work = _training_copy(eager(model)[0])
    parts = Inventory.of(work)
    device = parts.device()
    objective = _Objective.build(work, inputs, None, Loss(loss), 1, seed, device)
    optimizer = _optimizer(WARMUP_OPTIMIZER, parts.trainable, lr)
    with torch.random.fork_rng(devices=[d for d in parts.devices if d.type == "cuda"]):
        seed_generators(seed, parts.devices)
        work.train(Mode(mode) is Mode.TRAIN)
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            args, kwargs, target = objective.next_batch()
            _plain_step(work, args, kwargs, target, objective)
            optimizer.step()
    return work
