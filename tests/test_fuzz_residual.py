"""Property-based: random small residual networks keep gradflow's invariants.

The generator places residual adds itself (identity or projection skips, nesting, in-place or
not), so it knows how many junctions there must be; every fork it builds has exactly two
consumers (the skip and the block), so grad_in must equal the norm of the sum of the two
contributions, which the cosine lets us rebuild from grad_skip and grad_block.
"""

from __future__ import annotations

import math

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import gradflow
from tests.test_untouched import _assert_same, _snapshot


class Block(nn.Module):
    def __init__(self, width: int, out: int, kind: str, inplace: bool, inner: Block | None) -> None:
        super().__init__()
        self.kind, self.inplace = kind, inplace
        self.f = nn.Sequential(nn.Linear(width, out), nn.Tanh(), nn.Linear(out, out))
        self.proj = nn.Linear(width, out) if kind == "projection" else None
        self.inner = inner

    def forward(self, x):  # type: ignore[no-untyped-def]
        skip = x if self.proj is None else self.proj(x)
        block = self.f(x)
        if self.inner is not None:
            block = self.inner(block)
        if self.inplace:
            block += skip
            return torch.tanh(block)
        return torch.tanh(skip + block)


def adds(block: Block | None) -> int:
    return 0 if block is None else 1 + adds(block.inner)


@st.composite
def networks(draw):  # type: ignore[no-untyped-def]
    width = draw(st.integers(2, 6))
    blocks = []
    for _ in range(draw(st.integers(1, 4))):
        out = width if draw(st.booleans()) else draw(st.integers(2, 6))
        kind = "identity" if out == width and draw(st.booleans()) else "projection"
        inner = None
        if draw(st.booleans()):
            inner = Block(out, out, "identity", draw(st.booleans()), None)
        # In place only onto a Linear output: a nested block ends in tanh, whose backward needs it.
        inplace = inner is None and draw(st.booleans())
        blocks.append(Block(width, out, kind, inplace, inner))
        width = out
    seed = draw(st.integers(0, 2**16))
    return blocks, width, seed


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_random_residual_networks(spec) -> None:  # type: ignore[no-untyped-def]
    blocks, width, seed = spec
    torch.manual_seed(seed)
    in_width = blocks[0].f[0].in_features
    model = nn.Sequential(*blocks, nn.Linear(width, 3))
    x = torch.randn(4, in_width, generator=torch.Generator().manual_seed(seed))
    before = _snapshot(model)
    outputs = []
    handle = model.register_forward_hook(lambda m, a, out: outputs.append(out.detach().clone()))
    try:
        report = gradflow.inspect(model, x, loss="mse")
        stopped = gradflow.inspect(model, x, loss="mse", sg_skip=True, sg_block=True)
    finally:
        handle.remove()
    _assert_same(before, _snapshot(model))
    assert len(report.junctions) == sum(adds(b) for b in blocks)
    assert torch.equal(outputs[0], outputs[1])
    for j in report.junctions:
        skip, block, cos = j.grad_skip, j.grad_block, j.cosine or 0.0
        rebuilt = math.sqrt(max(0.0, skip**2 + block**2 + 2 * cos * skip * block))
        assert math.isclose(j.grad_in, rebuilt, rel_tol=1e-3, abs_tol=1e-7), j
    assert len(stopped.junctions) == len(report.junctions)
    assert all(j.grad_skip == 0.0 and j.grad_block == 0.0 for j in stopped.junctions)
    kinds = [j.skip for j in report.junctions]
    assert kinds.count("projection") == sum(1 for b in blocks if b.kind == "projection")
