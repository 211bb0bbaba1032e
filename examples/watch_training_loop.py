"""gradflow.watch in a plain PyTorch training loop: a small residual MLP learns a synthetic
classification task; every 20th step the gradient flow at each residual junction is measured on
that step's own backward pass and written to a JSONL log, which `gradflow show` reads.

    python examples/watch_training_loop.py runs/flow.jsonl
    gradflow show runs/flow.jsonl

Runs in a few seconds on a CPU. Nothing gradflow does changes the training: remove the `with`
line and the weights come out bit-identical.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import gradflow


class Block(nn.Module):
    """A pre-norm residual block: y = x + f(norm(x)), the junction gradflow measures."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.f = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(self.norm(x))


class ResMLP(nn.Module):
    def __init__(self, features: int = 16, width: int = 32, depth: int = 4, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Linear(features, width)
        self.blocks = nn.Sequential(*(Block(width) for _ in range(depth)))
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def data(samples: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Points in 16 dimensions, labelled by the quadrant of a fixed random projection."""
    x = torch.randn(samples, 16, generator=generator)
    projection = torch.randn(16, 2, generator=torch.Generator().manual_seed(7))
    z = x @ projection
    return x, (z[:, 0] > 0).long() * 2 + (z[:, 1] > 0).long()


def main(log: Path, steps: int = 200, every: int = 20) -> gradflow.Watch:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = ResMLP()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    train_x, train_y = data(2048, generator)
    val_x, val_y = data(512, generator)

    with gradflow.watch(model, every=every, log=log) as w:
        for step in range(steps):
            index = torch.randint(0, len(train_x), (64,), generator=generator)
            loss = F.cross_entropy(model(train_x[index]), train_y[index])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # the watch measured before this
            opt.step()
            opt.zero_grad()
            w.step(loss)  # optional: puts the loss in the measured steps' records
            if step % 50 == 49:
                with torch.no_grad():  # not counted as a step: no grad
                    accuracy = (model(val_x).argmax(-1) == val_y).float().mean().item()
                print(f"step {step + 1}: loss {loss.item():.3f}, validation accuracy {accuracy:.2f}")
    return w


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/flow.jsonl")
    watch = main(path)
    print(repr(watch))
    print(f"wrote {path}: gradflow show {path}")
