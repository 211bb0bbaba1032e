"""A plain deep network with no residual junction: Linear + Tanh, 8 times over.

The baseline and the negative case: the tool should find no junction here and say so, rather
than invent one. Every gradient reaching the first layer has passed through all eight weight
matrices and all eight tanh derivatives (each at most 1), so the gradient norms per layer shrink
toward the input: with these weights (seed 0, sum loss), about 170x from the last layer to the
input. Compare with deep_mlp.py.

    gradflow inspect sample_models/plain_net.py
"""

from __future__ import annotations

import torch
from torch import nn

WIDTH = 32


class PlainNet(nn.Module):
    def __init__(self, width: int = WIDTH, depth: int = 8, num_outputs: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(width, width), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def build() -> PlainNet:
    """The model, with weights from a fixed seed (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return PlainNet()


def example_input() -> torch.Tensor:
    """A batch of 8 random feature vectors."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, WIDTH, generator=generator)
