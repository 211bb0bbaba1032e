"""Random generators: RandomNormal, RandomUniform, their *Like forms, Bernoulli, Multinomial.

Without a `seed` attribute they draw from torch's global generator (which gradflow's probe
seeds, so a measurement repeats); with one, each run draws from a fresh generator seeded with it,
so the node gives the same values every run, as the ONNX reference does. They are never folded
into constants.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gradflow.onnx.context import NodeContext
from gradflow.onnx.dtypes import torch_dtype, type_name
from gradflow.onnx.registry import Kernel, register


def _generator(ctx: NodeContext) -> torch.Generator | None:
    seed = ctx.attr("seed")
    if seed is None:
        return None
    return torch.Generator().manual_seed(int(seed))


def _dtype(ctx: NodeContext, default: torch.dtype | None) -> torch.dtype | None:
    to = ctx.attr("dtype")
    if to is None:
        return default
    dtype = torch_dtype(int(to))
    if dtype is None:
        raise ctx.unsupported(f"random values of type {type_name(int(to))}")
    return dtype


def _draw(
    ctx: NodeContext, shape: Sequence[int], dtype: torch.dtype, device: torch.device, normal: bool
) -> torch.Tensor:
    # Drawn in float32 (float64 for double) on the CPU, where a seeded generator lives.
    wide = torch.float64 if dtype == torch.float64 else torch.float32
    generator = _generator(ctx)
    if normal:
        values = torch.randn(tuple(shape), generator=generator, dtype=wide)
        values = values * ctx.attr("scale", 1.0) + ctx.attr("mean", 0.0)
    else:
        low, high = ctx.attr("low", 0.0), ctx.attr("high", 1.0)
        values = torch.rand(tuple(shape), generator=generator, dtype=wide) * (high - low) + low
    return values.to(device=device, dtype=dtype)


@register("RandomNormal", since=13, deterministic=False)
def random_normal(ctx: NodeContext) -> Kernel:
    shape, dtype = tuple(ctx.attr("shape")), _dtype(ctx, torch.float32)
    assert dtype is not None
    return lambda: _draw(ctx, shape, dtype, torch.device("cpu"), normal=True)


@register("RandomUniform", since=13, deterministic=False)
def random_uniform(ctx: NodeContext) -> Kernel:
    shape, dtype = tuple(ctx.attr("shape")), _dtype(ctx, torch.float32)
    assert dtype is not None
    return lambda: _draw(ctx, shape, dtype, torch.device("cpu"), normal=False)


@register("RandomNormalLike", since=13, deterministic=False)
def random_normal_like(ctx: NodeContext) -> Kernel:
    dtype = _dtype(ctx, None)
    return lambda x: _draw(ctx, x.shape, dtype or x.dtype, x.device, normal=True)


@register("RandomUniformLike", since=13, deterministic=False)
def random_uniform_like(ctx: NodeContext) -> Kernel:
    dtype = _dtype(ctx, None)
    return lambda x: _draw(ctx, x.shape, dtype or x.dtype, x.device, normal=False)


@register("Bernoulli", since=15, deterministic=False)
def bernoulli(ctx: NodeContext) -> Kernel:
    # 1 with probability p, element by element.
    dtype = _dtype(ctx, None)

    def run(p: torch.Tensor) -> torch.Tensor:
        wide = torch.float64 if p.dtype == torch.float64 else torch.float32
        drawn = torch.rand(p.shape, generator=_generator(ctx), dtype=wide).to(p.device)
        return (drawn < p).to(dtype or p.dtype)

    return run


@register("Multinomial", since=13, deterministic=False)
def multinomial(ctx: NodeContext) -> Kernel:
    # Per batch row of unnormalized log-probabilities, sample_size class indices, with
    # replacement.
    samples = int(ctx.attr("sample_size", 1))
    dtype = _dtype(ctx, torch.int32)
    assert dtype is not None

    def run(logits: torch.Tensor) -> torch.Tensor:
        probabilities = torch.softmax(logits.double(), dim=-1).cpu()
        drawn = torch.multinomial(probabilities, samples, replacement=True, generator=_generator(ctx))
        return drawn.to(device=logits.device, dtype=dtype)

    return run
