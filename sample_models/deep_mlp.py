"""A deep residual MLP: 48 blocks of `x = x + W2 relu(W1 x)`.

Depth is where residual connections earn their keep. Without the skips, a gradient reaching the
first layer would pass through 96 weight matrices and 48 ReLUs; with them, every block's input
also receives the gradient from the output unchanged, through the chain of identity skips.
With these weights (default PyTorch init, seed 0, sum loss), the block path brings back about a
quarter of the gradient norm the skip path does at every junction, and the gradient norm grows
gently toward the input (about 4x over 48 blocks) instead of vanishing.

48 junctions, all with an identity skip.

    gradflow inspect sample_models/deep_mlp.py
"""

from __future__ import annotations

import torch
from torch import nn

WIDTH = 32
DEPTH = 48


class ResidualBlock(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(x)))


class DeepResidualMLP(nn.Module):
    def __init__(
        self, width: int = WIDTH, depth: int = DEPTH, hidden: int = 64, num_outputs: int = 10
    ) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(ResidualBlock(width, hidden) for _ in range(depth)))
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


def build() -> DeepResidualMLP:
    """The model, with weights from a fixed seed (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return DeepResidualMLP()


def example_input() -> torch.Tensor:
    """A batch of 8 random feature vectors."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, WIDTH, generator=generator)
