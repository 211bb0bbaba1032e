"""Signal processing: DFT, STFT, the Hann, Hamming and Blackman windows, MelWeightMatrix.

ONNX holds complex values as a trailing dimension of 2 (real, imaginary); a trailing 1 is a real
signal. The transforms run on torch's complex tensors, which autograd differentiates.
"""

from __future__ import annotations

import math

import torch

from gradflow.onnx.context import NodeContext
from gradflow.onnx.dtypes import torch_dtype
from gradflow.onnx.ops.helpers import item, normalize_axis
from gradflow.onnx.registry import Kernel, register


def _complex(x: torch.Tensor) -> torch.Tensor:
    """[..., 1] or [..., 2] -> the complex tensor [...] (complex128 for float64, else
    complex64)."""
    wide = torch.float64 if x.dtype == torch.float64 else torch.float32
    real = x[..., 0].to(wide)
    imag = x[..., 1].to(wide) if x.shape[-1] == 2 else torch.zeros_like(real)
    return torch.complex(real, imag)


def _pairs(z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A complex tensor [...] as [..., 2] of `dtype`."""
    return torch.stack([z.real, z.imag], -1).to(dtype)


def _transform(x: torch.Tensor, length: int | None, axis: int, inverse: bool,
               onesided: bool) -> torch.Tensor:
    axis = normalize_axis(axis, x.dim())
    if length is None:
        length = 2 * (x.shape[axis] - 1) if inverse and onesided else x.shape[axis]
    signal = _complex(x)
    if not inverse:
        spectrum = torch.fft.fft(signal, n=length, dim=axis)
        if onesided:
            spectrum = spectrum.narrow(axis, 0, length // 2 + 1)
        return _pairs(spectrum, x.dtype)
    if onesided:
        return torch.fft.irfft(signal, n=length, dim=axis).unsqueeze(-1).to(x.dtype)
    return _pairs(torch.fft.ifft(signal, n=length, dim=axis), x.dtype)


@register("DFT", since=17, until=19)
def dft_17(ctx: NodeContext) -> Kernel:
    # The axis is an attribute (default 1) before opset 20.
    axis = int(ctx.attr("axis", 1))
    inverse, onesided = bool(ctx.attr("inverse", 0)), bool(ctx.attr("onesided", 0))

    def run(x: torch.Tensor, length: torch.Tensor | None = None) -> torch.Tensor:
        return _transform(x, None if length is None else int(item(length)), axis, inverse, onesided)

    return run


@register("DFT", since=20)
def dft_20(ctx: NodeContext) -> Kernel:
    inverse, onesided = bool(ctx.attr("inverse", 0)), bool(ctx.attr("onesided", 0))

    def run(x: torch.Tensor, length: torch.Tensor | None = None,
            axis: torch.Tensor | None = None) -> torch.Tensor:
        n = None if length is None else int(item(length))
        return _transform(x, n, -2 if axis is None else int(item(axis)), inverse, onesided)

    return run


@register("STFT", since=17)
def stft(ctx: NodeContext) -> Kernel:
    # signal [batch, length, 1 or 2] -> [batch, frames, bins, 2]: each frame of window's length,
    # frame_step apart, weighted by the window and transformed at frame_length points.
    onesided = bool(ctx.attr("onesided", 1))

    def run(x: torch.Tensor, step: torch.Tensor, window: torch.Tensor | None = None,
            frame_length: torch.Tensor | None = None) -> torch.Tensor:
        if frame_length is not None:
            length = int(item(frame_length))
        else:
            length = window.shape[0] if window is not None else x.shape[-2]
        if window is None:
            window = torch.ones(length, dtype=x.dtype, device=x.device)
        size = window.shape[0]
        frames = x.unfold(1, size, int(item(step))).transpose(-1, -2)  # [b, frames, size, c]
        frames = frames * window.reshape(-1, 1).to(x.dtype)
        return _transform(frames, length, 2, False, onesided)

    return run


def _window(terms: tuple[float, ...]) -> Kernel:
    # sum_k a_k cos(2 pi k n / N), N the size (periodic) or the size - 1 (symmetric).
    def factory(ctx: NodeContext) -> Kernel:
        periodic = bool(ctx.attr("periodic", 1))
        dtype = torch_dtype(int(ctx.attr("output_datatype", 1))) or torch.float32

        def run(size: torch.Tensor) -> torch.Tensor:
            n = int(item(size))
            span = n if periodic else n - 1
            at = torch.arange(n, dtype=torch.float64) * (2 * math.pi / span)
            values = sum(a * torch.cos(k * at) for k, a in enumerate(terms))
            return torch.as_tensor(values).to(dtype)

        return run

    return factory


register("HannWindow", since=17)(_window((0.5, -0.5)))
register("HammingWindow", since=17)(_window((25 / 46, -21 / 46)))
register("BlackmanWindow", since=17)(_window((0.42, -0.5, 0.08)))


@register("MelWeightMatrix", since=17)
def mel_weight_matrix(ctx: NodeContext) -> Kernel:
    # [dft_length // 2 + 1, num_mel_bins] triangular filters, evenly spaced on the mel scale
    # between the edge frequencies, their corners rounded down to spectrogram bins.
    dtype = torch_dtype(int(ctx.attr("output_datatype", 1))) or torch.float32

    def run(mel_bins: torch.Tensor, dft_length: torch.Tensor, rate: torch.Tensor,
            low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        bins, length = int(item(mel_bins)), int(item(dft_length))
        low_mel = 2595 * math.log1p(float(item(low)) / 700) / math.log(10)
        high_mel = 2595 * math.log1p(float(item(high)) / 700) / math.log(10)
        step = (high_mel - low_mel) / (bins + 2)
        corners = []
        for i in range(bins + 2):
            hertz = 700 * math.expm1((i * step + low_mel) / 2595 * math.log(10))
            corners.append(int((length + 1) * hertz // int(item(rate))))
        out = torch.zeros(length // 2 + 1, bins, dtype=torch.float64)
        for i in range(bins):
            left, center, right = corners[i : i + 3]
            if center == left:
                out[center, i] = 1
            else:
                for j in range(left, center + 1):
                    out[j, i] = (j - left) / (center - left)
            for j in range(center, right):
                out[j, i] = (right - j) / (right - center)
        return out.to(dtype)

    return run
