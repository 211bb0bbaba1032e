"""The residual CNN of the seed document's experiment, sized for scikit-learn's 8x8 digits.

Three ReLU convolutions, a max-pool, a residual block of two convolutions around which the
input is added back (`y = x + block(x)`: the one junction, named `residual`), another max-pool
and a linear classifier. The seed document trains the same shape on MNIST (28x28, a 4x4 pool);
the digits are 8x8, so both pools here are 2x2.

    python examples/residual_crossover/make_data.py
    gradflow track examples/residual_crossover/model.py --data digits.pt ...
"""

from __future__ import annotations

import torch
from torch import nn


class Residual(nn.Module):
    """y = x + block(x), with block = conv -> ReLU -> conv (same shape in and out)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class DigitsNet(nn.Module):
    def __init__(self, channels: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),                       # 8x8 -> 4x4
        )
        self.residual = Residual(channels)
        self.pool = nn.MaxPool2d(2)                # 4x4 -> 2x2
        self.classifier = nn.Linear(channels * 2 * 2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.residual(self.features(x)))
        return self.classifier(torch.flatten(h, 1))


def build() -> DigitsNet:
    """The model with weights from a fixed seed (the global RNG is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return DigitsNet()


def example_input() -> torch.Tensor:
    """The first 64 digits, for `gradflow inspect` (scikit-learn ships them; nothing downloads)."""
    from sklearn.datasets import load_digits

    images = load_digits().images[:64]
    return torch.tensor(images, dtype=torch.float32).unsqueeze(1) / 16.0
