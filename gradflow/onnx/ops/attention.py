"""The fused Attention operator (opset 23+), as torch's scaled_dot_product_attention where it
matches and an explicit softmax(QK^T)V otherwise."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import output_tuple
from gradflow.onnx.registry import Kernel, register


def _heads_first(x: torch.Tensor, heads: int) -> torch.Tensor:
    # [batch, seq, heads * size] -> [batch, heads, seq, size]
    b, s, _ = x.shape
    return x.reshape(b, s, heads, -1).transpose(1, 2)


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if mask.dtype == torch.bool:
        zero = torch.zeros((), dtype=dtype, device=mask.device)
        return torch.where(mask, zero, float("-inf"))
    return mask


def _window_bias(
    q_len: int, kv_len: int, offset: int, causal: bool, left: int, right: int, like: torch.Tensor
) -> torch.Tensor:
    # Query i sits at absolute position i + offset; key j is visible when
    # j <= position (causal) and position - left <= j <= position + right (windows).
    i = torch.arange(q_len, device=like.device).reshape(-1, 1) + offset
    j = torch.arange(kv_len, device=like.device).reshape(1, -1)
    allowed = torch.ones((q_len, kv_len), dtype=torch.bool, device=like.device)
    if causal:
        allowed &= j <= i
    if left >= 0:
        allowed &= i - j <= left
    if right >= 0:
        allowed &= j - i <= right
    return _additive(allowed, like.dtype)


@register("Attention", since=23)
def attention(ctx: NodeContext) -> Kernel:
    if ctx.has_input(6):
        raise ctx.unsupported("Attention with nonpad_kv_seqlen")
    if ctx.output_used(3):
        raise ctx.unsupported("Attention qk_matmul_output")
    causal = bool(ctx.attr("is_causal", 0))
    scale_attr = ctx.attr("scale")
    softcap = float(ctx.attr("softcap", 0.0) or 0.0)
    q_heads = ctx.attr("q_num_heads")
    kv_heads = ctx.attr("kv_num_heads")
    left = int(ctx.attr("left_window_size", -1))
    right = int(ctx.attr("right_window_size", -1))

    def run(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None = None,
        past_key: torch.Tensor | None = None,
        past_value: torch.Tensor | None = None,
        _nonpad: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor | None, ...]:
        three_d = q.dim() == 3
        if three_d:
            q = _heads_first(q, q_heads)
            k = _heads_first(k, kv_heads)
            v = _heads_first(v, kv_heads)
        if past_key is not None and past_value is not None:
            k = torch.cat([past_key, k], dim=2)
            v = torch.cat([past_value, v], dim=2)
        present_key, present_value = k, v
        q_len, kv_len = q.shape[2], k.shape[2]
        offset = kv_len - q_len if past_key is not None else 0
        scale = scale_attr if scale_attr is not None else 1.0 / math.sqrt(q.shape[-1])
        if mask is not None and mask.shape[-1] < kv_len:
            # A short mask is padded with "not attended" up to the total sequence length.
            fill = False if mask.dtype == torch.bool else float("-inf")
            mask = F.pad(mask, (0, kv_len - mask.shape[-1]), value=fill)
        gqa = q.shape[1] != k.shape[1]
        windowed = left >= 0 or right >= 0
        if softcap == 0.0 and not windowed and (mask is None or not causal) and (
            not causal or offset == 0
        ):
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal, scale=scale, enable_gqa=gqa
            )
            bias = mask
        else:
            bias = None if mask is None else _additive(mask, q.dtype)
            if causal or windowed:
                extra = _window_bias(q_len, kv_len, offset, causal, left, right, q)
                bias = extra if bias is None else bias + extra
            if gqa:
                k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
                v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
            scores = torch.matmul(q, k.transpose(-1, -2)) * scale
            if softcap > 0:
                scores = torch.tanh(scores / softcap) * softcap
            if bias is not None:
                scores = scores + bias
            y = torch.matmul(torch.softmax(scores, dim=-1).nan_to_num(0.0), v)
        if bias is not None:
            # A query that may attend no key yields zeros, not NaN.
            if bias.dtype == torch.bool:
                empty = ~bias.any(dim=-1, keepdim=True)
            else:
                empty = torch.isneginf(bias.amax(dim=-1, keepdim=True))
            y = y.masked_fill(empty, 0.0)
        if three_d:
            y = y.transpose(1, 2).reshape(y.shape[0], y.shape[2], -1)
        return output_tuple(ctx, y, present_key, present_value)

    return run
