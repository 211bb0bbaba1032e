"""gradflow.engine.norms.NormBatch: norms taken together, checked against float64 norms of the same values."""

from __future__ import annotations

import pytest
import torch

from gradflow.engine.norms import DOT_FROM, NormBatch


def _exact(tensor: torch.Tensor) -> float:
    return torch.linalg.vector_norm(tensor.double()).item()


def test_held_norms_are_taken_at_the_flush() -> None:
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(4, 8, generator=g), torch.randn(3, generator=g), torch.zeros(5)]
    batch = NormBatch(budget=1 << 20)
    slots = [batch.norm(t) for t in tensors]
    assert batch.values == [None, None, None]
    batch.flush()
    assert [batch.values[s].item() for s in slots] == pytest.approx([_exact(t) for t in tensors], rel=1e-6)  # type: ignore[union-attr]
    assert batch.held == [] and batch.held_bytes == 0


def test_budget_bounds_what_is_held() -> None:
    g = torch.Generator().manual_seed(1)
    tensors = [torch.randn(100, generator=g) for _ in range(10)]  # 400 bytes each
    batch = NormBatch(budget=1000)
    for t in tensors:
        batch.norm(t)
        assert batch.held_bytes <= 1000
    assert sum(v is not None for v in batch.values) == 9  # flushed at the 3rd, 6th and 9th
    batch.flush()
    assert [v.item() for v in batch.values] == pytest.approx([_exact(t) for t in tensors], rel=1e-6)  # type: ignore[union-attr]


def test_large_cpu_float32_and_float64_are_normed_at_once() -> None:
    g = torch.Generator().manual_seed(2)
    large = torch.randn(DOT_FROM, generator=g)
    wide = torch.randn(7, generator=g, dtype=torch.float64) * 1e-25  # squares underflow float32
    batch = NormBatch(budget=1 << 30)
    assert batch.values[batch.norm(large)] is not None
    value = batch.values[batch.norm(wide)]
    assert value is not None and value.item() == pytest.approx(_exact(wide), rel=1e-6) and value.item() > 0
    assert batch.held == []


def test_low_precision_gradients_accumulate_in_float32() -> None:
    g = torch.Generator().manual_seed(3)
    half = (torch.randn(4096, generator=g) * 30).to(torch.bfloat16)
    batch = NormBatch(budget=1 << 20)
    slot = batch.norm(half)
    (also,) = batch.flush(also=[torch.full((3,), 2.0)])
    assert batch.values[slot].dtype == torch.float32  # type: ignore[union-attr]
    assert batch.values[slot].item() == pytest.approx(_exact(half), rel=1e-5)  # type: ignore[union-attr]
    assert also.item() == pytest.approx(12**0.5)
