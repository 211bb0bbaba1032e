"""Resize (and Upsample, which older opsets convert into it).

Resizing is separable: each resized axis in turn is mapped through a small set of taps, the input
positions each output position reads and their weights. The taps follow the ONNX reference
implementation: the coordinate transformation maps an output index to a source coordinate, the
mode's coefficients (nearest, linear, cubic, with or without antialiasing) weigh its n nearest
input positions, and positions past the edges repeat the edge (or drop out, with
`exclude_outside`). Taps depend only on sizes and attributes, so they are computed once per shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import normalize_axis
from gradflow.onnx.registry import Kernel, register

_MODES = ("nearest", "linear", "cubic")
_TRANSFORMS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
               "asymmetric", "tf_crop_and_resize")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


@dataclass(frozen=True)
class _Options:
    mode: str
    transform: str
    nearest: str
    cubic_a: float
    exclude_outside: bool
    antialias: bool
    extrapolation: float


@register("Resize", since=13)
def resize(ctx: NodeContext) -> Kernel:
    options = _Options(
        mode=ctx.attr("mode", "nearest"),
        transform=ctx.attr("coordinate_transformation_mode", "half_pixel"),
        nearest=ctx.attr("nearest_mode", "round_prefer_floor"),
        cubic_a=float(ctx.attr("cubic_coeff_a", -0.75)),
        exclude_outside=bool(ctx.attr("exclude_outside", 0)),
        antialias=bool(ctx.attr("antialias", 0)),
        extrapolation=float(ctx.attr("extrapolation_value", 0.0)),
    )
    for value, allowed in ((options.mode, _MODES), (options.transform, _TRANSFORMS),
                           (options.nearest, _NEAREST)):
        if value not in allowed:
            raise ctx.unsupported(f"Resize with '{value}'")
    axes_attr = ctx.attr("axes")
    policy = ctx.attr("keep_aspect_ratio_policy", "stretch")

    def run(
        x: torch.Tensor,
        roi: torch.Tensor | None = None,
        scales: torch.Tensor | None = None,
        sizes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        rank = x.dim()
        axes = list(range(rank)) if axes_attr is None else [normalize_axis(a, rank) for a in axes_attr]
        out_sizes, factors = _output_sizes(x.shape, axes, _values(scales), _values(sizes), policy)
        roi_values = _values(roi)
        # The arithmetic runs in float32 at least (float64 stays float64); the result takes the
        # input's type back, integers rounded and clamped.
        work = x if x.dtype == torch.float64 else x.to(torch.float32)
        for i, a in enumerate(axes):
            box = None
            if roi_values:
                box = (roi_values[i], roi_values[i + len(axes)])
            if out_sizes[i] == x.shape[a] and math.isclose(factors[i], 1.0) and (
                box is None or (math.isclose(box[0], 0.0) and math.isclose(box[1], 1.0))
            ):
                continue
            work = _resize_axis(work, a, out_sizes[i], factors[i], box, options)
        return _cast_back(work, x.dtype)

    return run


def _values(value: torch.Tensor | None) -> list[float]:
    # An absent input and an empty one mean the same.
    return [] if value is None else [float(v) for v in value.reshape(-1).tolist()]


def _output_sizes(
    shape: Sequence[int], axes: list[int], scales: list[float], sizes: list[float], policy: str
) -> tuple[list[int], list[float]]:
    """The output size and scale factor of each resized axis."""
    inputs = [shape[a] for a in axes]
    if not sizes:
        return [int(s * n) for s, n in zip(scales, inputs)], scales
    factors = [s / n for s, n in zip(sizes, inputs)]
    if policy == "stretch":
        return [int(s) for s in sizes], factors
    scale = min(factors) if policy == "not_larger" else max(factors)
    return [int(scale * n + 0.5) for n in inputs], [scale] * len(axes)


def _resize_axis(
    x: torch.Tensor, axis: int, size: int, scale: float, roi: tuple[float, float] | None,
    options: _Options,
) -> torch.Tensor:
    index, weight, outside = _taps(x.shape[axis], size, scale, roi, options)
    if options.mode == "nearest":
        # One tap carries all the weight: a plain selection, exact for every type.
        picked = index[np.arange(size), weight.argmax(1)]
        y = x.index_select(axis, torch.from_numpy(picked).to(x.device))
    else:
        n = index.shape[1]
        taps = x.index_select(axis, torch.from_numpy(index.reshape(-1)).to(x.device))
        taps = taps.reshape(*x.shape[:axis], size, n, *x.shape[axis + 1:])
        w = torch.from_numpy(weight).to(device=x.device, dtype=x.dtype)
        y = (taps * w.reshape(size, n, *[1] * (x.dim() - axis - 1))).sum(axis + 1)
    if outside is not None:
        mask = torch.from_numpy(outside).to(x.device).reshape(size, *[1] * (x.dim() - axis - 1))
        y = torch.where(mask, torch.tensor(options.extrapolation, dtype=y.dtype), y)
    return y


@lru_cache(maxsize=256)
def _taps(
    width: int, size: int, scale: float, roi: tuple[float, float] | None, options: _Options
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """For each of `size` output positions along an axis of `width` inputs: the input indices
    it reads, their weights, and (tf_crop_and_resize) whether it lies outside the input."""
    y = np.arange(size, dtype=np.float64)
    source, outside = _source_coordinates(y, width, size, scale, roi, options.transform)
    floor = np.floor(source)
    ratio = np.where(source == floor, 1.0, source - floor)  # in (0, 1]: left neighbour preferred
    weight = _coefficients(ratio, scale, options)
    n = weight.shape[1]
    # The n input positions nearest the source coordinate, ties to the smaller index.
    pad = math.ceil(n / 2)
    padded = source + pad
    base = np.floor(padded).astype(np.int64)
    frac = padded - base
    if n % 2 == 0:
        offset = np.where(frac == 0, -(n // 2), -(n // 2) + 1)
    else:
        offset = np.where(frac <= 0.5, -((n - 1) // 2), -((n - 1) // 2) + 1)
    index = (base + offset)[:, None] + np.arange(n)[None, :] - pad
    if options.exclude_outside:
        weight = np.where((index < 0) | (index >= width), 0.0, weight)
        total = weight.sum(1, keepdims=True)
        weight = weight / np.where(total == 0, 1.0, total)
    index = np.clip(index, 0, width - 1)
    return index, weight, outside


def _source_coordinates(
    y: np.ndarray, width: int, size: int, scale: float, roi: tuple[float, float] | None,
    transform: str,
) -> tuple[np.ndarray, np.ndarray | None]:
    out = scale * width
    if transform == "align_corners":
        return (np.zeros(size) if out == 1 else y * (width - 1) / (out - 1)), None
    if transform == "asymmetric":
        return y / scale, None
    if transform == "tf_crop_and_resize":
        start, end = roi if roi is not None else (0.0, 1.0)
        if out == 1:
            source = np.full(size, (end - start) * (width - 1) / 2)
        else:
            source = y * (end - start) * (width - 1) / (out - 1)
        source = source + start * (width - 1)
        return source, (source < 0) | (source > width - 1)
    if transform == "pytorch_half_pixel":
        return (np.full(size, -0.5) if out == 1 else (y + 0.5) / scale - 0.5), None
    if transform == "half_pixel_symmetric":
        offset = width / 2 * (1 - size / out)
        return offset + (y + 0.5) / scale - 0.5, None
    return (y + 0.5) / scale - 0.5, None  # half_pixel


def _coefficients(ratio: np.ndarray, scale: float, options: _Options) -> np.ndarray:
    """[positions, taps] weights for ratios in (0, 1]."""
    if options.mode == "nearest":
        exact = ratio == 1.0
        take_right = {
            "round_prefer_floor": ratio > 0.5,
            "round_prefer_ceil": ratio >= 0.5,
            "floor": np.zeros_like(exact),
            "ceil": np.ones_like(exact),
        }[options.nearest] | exact
        return np.stack([~take_right, take_right], 1).astype(np.float64)
    kernel: Callable[[np.ndarray], np.ndarray]
    if options.mode == "linear":
        if not options.antialias:
            return np.stack([1 - ratio, ratio], 1)
        s = min(scale, 1.0)
        start = int(np.floor(-1 / s) + 1)
        taps = np.arange(start, 2 - start)

        def kernel(t: np.ndarray) -> np.ndarray:
            return np.clip(1 - np.abs(t), 0, 1)
    else:
        a = options.cubic_a
        if not options.antialias:
            r = ratio
            return np.stack([
                ((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                ((a + 2) * r - (a + 3)) * r * r + 1,
                ((a + 2) * (1 - r) - (a + 3)) * (1 - r) * (1 - r) + 1,
                ((a * (2 - r) - 5 * a) * (2 - r) + 8 * a) * (2 - r) - 4 * a,
            ], 1)
        s = min(scale, 1.0)
        start = int(np.floor(-2 / s) + 1)
        taps = np.arange(start, 2 - start)

        def kernel(t: np.ndarray) -> np.ndarray:
            t = np.abs(t)
            near = (a + 2) * t**3 - (a + 3) * t**2 + 1
            far = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
            return np.where(t <= 1, near, np.where(t < 2, far, 0.0))
    # Antialiasing stretches the kernel by 1 / scale when downsampling; weights sum to one.
    weight = kernel((taps[None, :] - ratio[:, None]) * s)
    return weight / weight.sum(1, keepdims=True)  # type: ignore[no-any-return]


def _cast_back(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if y.dtype == dtype:
        return y
    if dtype.is_floating_point or dtype == torch.bool:
        return y.to(dtype)
    info = torch.iinfo(dtype)
    return torch.round(y).clamp(info.min, info.max).to(dtype)
