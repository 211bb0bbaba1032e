"""ReZero: residual blocks `x = x + alpha * f(x)` with a learned scalar alpha that starts at zero.

At initialisation every block is the identity, so the network is trivially well conditioned:
the whole gradient reaches the fork through the skip path, and the block path contributes
exactly zero to it (its gradient is multiplied by alpha = 0). Training still starts, because
alpha itself gets a nonzero gradient, <grad, f(x)>. So every block path is silent (block
gradient exactly 0), here by design at initialisation rather than a sign of a broken model:
gradflow sees the gate and reports each junction `dormant`, with its alpha as the reason, and
`gradflow check` passes. (Bachlechner et al., "ReZero is All You Need", 2020.)

8 junctions, all with an identity skip.

    gradflow inspect sample_models/rezero.py
"""

from __future__ import annotations

import torch
from torch import nn

WIDTH = 32


class ReZeroBlock(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, width))
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.f(x)


class ReZeroNet(nn.Module):
    def __init__(self, width: int = WIDTH, depth: int = 8, hidden: int = 64) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(ReZeroBlock(width, hidden) for _ in range(depth)))
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


def build() -> ReZeroNet:
    """The model, with weights from a fixed seed (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return ReZeroNet()


def example_input() -> torch.Tensor:
    """A batch of 8 random feature vectors."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, WIDTH, generator=generator)
