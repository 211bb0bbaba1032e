"""Small models built to break one check rule each, shared by the check tests (no tests here).

Each model records the tensors a reference needs in `self.seen` during forward, so tests can
compute the expected numbers with plain torch.autograd.grad, independently of gradflow. Each
`build_*` function is also a source for the CLI: `tests/test_check_models.py:build_unused`.
"""

from __future__ import annotations

import torch
from torch import nn

WIDTH = 8


def example_input() -> torch.Tensor:
    return torch.randn(4, WIDTH, generator=torch.Generator().manual_seed(0))


class StopGradient(torch.autograd.Function):
    """Identity forward, zero gradient backward: a skip connection that carries no gradient."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        return torch.zeros_like(grad)


class Block(nn.Module):
    def __init__(self, width: int = WIDTH) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, 2 * width)
        self.fc2 = nn.Linear(2 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class ResidualNet(nn.Module):
    """`depth` blocks `x = x + scale[i] * block(x)`, a linear head; the healthy base model."""

    def __init__(self, depth: int = 3, scales: dict[int, float] | None = None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(depth))
        self.scales = dict(scales or {})
        self.head = nn.Linear(WIDTH, 3)
        self.seen: dict[str, list[torch.Tensor]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = {"x": [], "block": [], "y": []}
        for i, block in enumerate(self.blocks):
            out = self.scales.get(i, 1.0) * block(x)
            y = x + out
            self.seen["x"].append(x)
            self.seen["block"].append(out)
            self.seen["y"].append(y)
            x = y
        self.seen["output"] = [self.head(x)]
        return self.seen["output"][0]


class UnusedLayer(ResidualNet):
    """A layer built and never called: its parameters get no gradient (None)."""

    def __init__(self) -> None:
        super().__init__()
        self.spare = nn.Linear(WIDTH, WIDTH)


class DetachedBranch(ResidualNet):
    """A side branch added through a stray .detach(): its parameters get no gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.side = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.Tanh(), nn.Linear(WIDTH, WIDTH))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x + self.side(x).detach())


class NaNGradient(ResidualNet):
    """sqrt of a masked activation: finite forward (sqrt(0) = 0), but the backward computes
    inf * 0 = NaN for every masked entry, so every parameter before it gets a NaN gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.Linear(WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pre(x)
        h = (h * (h > 0)).sqrt()
        return super().forward(h)


class NaNForward(ResidualNet):
    """log of a signed activation: NaN in the forward pass, so the loss itself is NaN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.log(x))


class StoppedSkips(nn.Module):
    """A deep plain tanh net wrapped as residual blocks whose skips carry no gradient: the
    gradient must cross every layer, and fades with depth."""

    def __init__(self, depth: int = 16) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.Tanh())
                                    for _ in range(depth))
        self.head = nn.Linear(WIDTH, 3)
        self.seen: dict[str, list[torch.Tensor]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = {"x": [], "y": []}
        for layer in self.layers:
            y = StopGradient.apply(x) + layer(x)
            self.seen["x"].append(x)
            self.seen["y"].append(y)
            x = y
        return self.head(x)


def _seeded(make):  # type: ignore[no-untyped-def]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return make()


def build_healthy() -> ResidualNet:
    return _seeded(ResidualNet)


def build_unused() -> UnusedLayer:
    return _seeded(UnusedLayer)


def build_detached() -> DetachedBranch:
    return _seeded(DetachedBranch)


def build_nan_gradient() -> NaNGradient:
    return _seeded(NaNGradient)


def build_nan_forward() -> NaNForward:
    return _seeded(NaNForward)


def build_stopped_skips() -> StoppedSkips:
    return _seeded(StoppedSkips)


def build_dead() -> ResidualNet:
    """The middle block's output scaled by 1e-5: it barely passes gradient back."""
    return _seeded(lambda: ResidualNet(scales={1: 1e-5}))


def build_zeroed() -> ResidualNet:
    """Every block's output multiplied by 0: no block parameter gets a gradient, every block is dead."""
    return _seeded(lambda: ResidualNet(scales={0: 0.0, 1: 0.0, 2: 0.0}))


def build_exploding() -> ResidualNet:
    """The first block's output scaled by 1e5: the gradient below it blows up."""
    return _seeded(lambda: ResidualNet(scales={0: 1e5}))


def build_deeper() -> ResidualNet:
    return _seeded(lambda: ResidualNet(depth=4))


def build_shallower() -> ResidualNet:
    return _seeded(lambda: ResidualNet(depth=2))


def build_last_scaled() -> ResidualNet:
    """The healthy model with its last block's output scaled by 8."""
    return _seeded(lambda: ResidualNet(scales={2: 8.0}))
