"""The worked example from the seed discussion of how gradients flow through a skip connection.

Four scalar parameters, x=3, y=-4, z=2, w=-1, and:

    xy         = x * y              # -12   <- the fork: used twice below
    zw         = max(z, w)          #   2
    xy_plus_zw = zw + xy            # -10   the "block" path from the fork
    residual   = xy + xy_plus_zw    # -22   the junction: skip (xy) + block (xy_plus_zw)
    cost       = 2 * residual + 45  #   1

Backward from cost (gradient 1): d cost/d residual = 2, and an add passes its incoming gradient
unchanged to both operands, so the junction sends 2 down the skip path and 2 down the block
path (through xy_plus_zw, another add, to xy). The two meet again at the fork, where they are
summed: d cost/d xy = 2 + 2 = 4. Then d cost/d x = 4*y = -16, d cost/d y = 4*x = 12,
d cost/d z = 2 (z is the max) and d cost/d w = 0. These are the numbers the document prints,
and tests/test_sample_models.py checks them against torch.autograd.grad.

So that the tool can probe it, `forward(scale)` takes one tensor and returns `cost * scale`;
`example_input()` is `tensor([1.])`, so with the loss `sum` (or `mean`) the loss is exactly
`cost` and every gradient is the document's. A different input scales them all.

A note on the other seed documents: 002 ("stop grad") has wrong numbers in its comments. With
x = 3, `y = x*x`, a stop-gradient on y and `out = y*x`, d out/d x is y = 9, and PyTorch prints
`tensor(9.)`, not the 3.0 the comments claim (and the derivative of x**3 there would be 27, not
15). Its TensorFlow version also computes `out` outside the GradientTape, so it would get None.

    gradflow inspect sample_models/seed_example.py
"""

from __future__ import annotations

import torch
from torch import nn


def computation(
    x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, w: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Every named value of the document's graph, in the document's order of operations."""
    xy = x * y
    zw = torch.maximum(z, w)
    xy_plus_zw = zw + xy
    residual = xy + xy_plus_zw
    cost = 2 * residual + 45
    return {"xy": xy, "zw": zw, "xy_plus_zw": xy_plus_zw, "residual": residual, "cost": cost}


class SeedExample(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.tensor(3.0))
        self.y = nn.Parameter(torch.tensor(-4.0))
        self.z = nn.Parameter(torch.tensor(2.0))
        self.w = nn.Parameter(torch.tensor(-1.0))

    def forward(self, scale: torch.Tensor) -> torch.Tensor:
        """`cost * scale`: with scale = 1, the cost of the document."""
        cost = computation(self.x, self.y, self.z, self.w)["cost"]
        return cost * scale


def build() -> SeedExample:
    return SeedExample()


def example_input() -> torch.Tensor:
    """`tensor([1.])`: a batch of one, so that the summed (or averaged) output is the cost."""
    return torch.ones(1)
