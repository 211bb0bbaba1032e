"""The fused Attention operator (opset 23+), RotaryEmbedding, LinearAttention, FlexAttention.

Attention runs as torch's scaled_dot_product_attention where that matches and as an explicit
softmax(QK^T + bias)V otherwise.

The explicit path follows the operator's definition step by step: Q and K are each scaled by
sqrt(scale); the optional softcap bounds the scores before the additive bias (the attention mask,
the causal and sliding-window masks, the padding of nonpad_kv_seqlen); the softmax runs in
softmax_precision when given; a query that may attend no key gets zero weights (not NaN).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gradflow.onnx.context import NodeContext
from gradflow.onnx.dtypes import torch_dtype
from gradflow.onnx.ops.helpers import output_tuple
from gradflow.onnx.registry import Kernel, register

# What the optional fourth output holds, by qk_matmul_output_mode.
_SCORES, _WITH_BIAS, _PROBABILITIES = 0, 2, 3


def _heads_first(x: torch.Tensor, heads: int) -> torch.Tensor:
    # [batch, seq, heads * size] -> [batch, heads, seq, size]
    b, s, _ = x.shape
    return x.reshape(b, s, heads, -1).transpose(1, 2)


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if mask.dtype == torch.bool:
        zero = torch.zeros((), dtype=dtype, device=mask.device)
        return torch.where(mask, zero, float("-inf"))
    return mask.to(dtype)


def _frontier_bias(
    q_len: int, kv_len: int, offset: int | torch.Tensor, causal: bool, left: int, right: int,
    like: torch.Tensor,
) -> torch.Tensor:
    """0 where query i may see key j, -inf elsewhere. Query i sits at absolute position
    i + offset (offset per batch entry when it is a tensor, giving [batch, 1, q, kv]); it sees
    j <= position when causal, and position - left <= j <= position + right for windows."""
    i = torch.arange(q_len, device=like.device).reshape(-1, 1)
    j = torch.arange(kv_len, device=like.device).reshape(1, -1)
    if isinstance(offset, torch.Tensor):
        position = i + offset.reshape(-1, 1, 1, 1).to(like.device)
    else:
        position = i + offset
    allowed = torch.ones(torch.broadcast_shapes(position.shape, j.shape), dtype=torch.bool,
                         device=like.device)
    if causal:
        allowed = allowed & (j <= position)
    if left >= 0:
        allowed = allowed & (position - j <= left)
    if right >= 0:
        allowed = allowed & (j - position <= right)
    return _additive(allowed, like.dtype)


def _safe_softmax(scores: torch.Tensor) -> torch.Tensor:
    # A row of -inf (no key to attend) gives zeros, not NaN.
    top = scores.amax(-1, keepdim=True)
    top = torch.where(torch.isneginf(top), torch.zeros_like(top), top)
    weights = torch.exp(scores - top)
    total = weights.sum(-1, keepdim=True)
    return weights / torch.where(total == 0, torch.ones_like(total), total)


@register("Attention", since=23)
def attention(ctx: NodeContext) -> Kernel:
    causal = bool(ctx.attr("is_causal", 0))
    scale_attr = ctx.attr("scale")
    softcap = float(ctx.attr("softcap", 0.0) or 0.0)
    q_heads = ctx.attr("q_num_heads")
    kv_heads = ctx.attr("kv_num_heads")
    left = int(ctx.attr("left_window_size", -1))
    right = int(ctx.attr("right_window_size", -1))
    qk_mode = int(ctx.attr("qk_matmul_output_mode", 0))
    want_scores = ctx.output_used(3)
    precision = ctx.attr("softmax_precision")
    softmax_dtype = None if precision is None else torch_dtype(int(precision))

    def run(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None = None,
        past_key: torch.Tensor | None = None,
        past_value: torch.Tensor | None = None,
        nonpad: torch.Tensor | None = None,
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
        scale = scale_attr if scale_attr is not None else 1.0 / math.sqrt(q.shape[-1])
        if mask is not None and mask.shape[-1] < kv_len:
            # A short mask is padded with "not attended" up to the total sequence length.
            fill = False if mask.dtype == torch.bool else float("-inf")
            mask = F.pad(mask, (0, kv_len - mask.shape[-1]), value=fill)
        windowed = left >= 0 or right >= 0
        offset: int | torch.Tensor = 0
        if past_key is not None:
            offset = past_key.shape[2]
        elif nonpad is not None:
            offset = nonpad.long() - q_len  # an external cache: each entry's own frontier
        gqa = q.shape[1] != k.shape[1]
        if (
            q.dtype in (torch.float32, torch.float64)
            and softcap == 0.0 and not windowed and not want_scores and nonpad is None
            and softmax_dtype in (None, q.dtype) and (mask is None or not causal)
            and (not causal or offset == 0)
        ):
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal, scale=scale, enable_gqa=gqa
            )
            if mask is not None:
                y = y.masked_fill(_masked_rows(_additive(mask, q.dtype)), 0.0)
            scores = None
        else:
            y, scores = _explicit(q, k, v, mask, offset, nonpad, scale, causal, left, right,
                                  softcap, qk_mode, softmax_dtype, gqa)
        if three_d:
            y = y.transpose(1, 2).reshape(y.shape[0], y.shape[2], -1)
        return output_tuple(ctx, y, present_key, present_value, scores)

    return run


def _masked_rows(bias: torch.Tensor) -> torch.Tensor:
    """True for the query rows whose bias excludes every key."""
    return torch.isneginf(bias.amax(dim=-1, keepdim=True))


def _explicit(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
    offset: int | torch.Tensor, nonpad: torch.Tensor | None, scale: float, causal: bool,
    left: int, right: int, softcap: float, qk_mode: int, softmax_dtype: torch.dtype | None,
    gqa: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    q_len, kv_len = q.shape[2], k.shape[2]
    bias = torch.zeros((q_len, kv_len), dtype=q.dtype, device=q.device)
    if mask is not None:
        bias = bias + _additive(mask, q.dtype)
    if causal or left >= 0 or right >= 0:
        bias = bias + _frontier_bias(q_len, kv_len, offset, causal, left, right, q)
    if nonpad is not None:
        keys = torch.arange(kv_len, device=q.device).reshape(1, 1, 1, -1)
        padding = keys < nonpad.long().reshape(-1, 1, 1, 1).to(q.device)
        bias = bias + _additive(padding, q.dtype)
    if gqa:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    root = torch.tensor(math.sqrt(scale), dtype=q.dtype)
    scores = torch.matmul(q * root, (k * root).transpose(-1, -2))
    if softcap > 0:
        scores = torch.tanh(scores / softcap) * softcap
    with_bias = scores + bias
    exposed = with_bias if qk_mode == _WITH_BIAS else scores
    logits = with_bias if softmax_dtype is None else with_bias.to(softmax_dtype)
    weights = _safe_softmax(logits)
    weights = weights.masked_fill(_masked_rows(bias), 0.0)
    if qk_mode == _PROBABILITIES:
        exposed = weights
    y = torch.matmul(weights.to(q.dtype), v)
    return y, exposed.to(q.dtype)


@register("RotaryEmbedding", since=23)
def rotary_embedding(ctx: NodeContext) -> Kernel:
    # X is [batch, heads, seq, head_size] or [batch, seq, heads * head_size]; the first
    # rotary_embedding_dim features of each head (all by default) turn by the cached angles, as
    # pairs of halves, or of neighbours when interleaved.
    interleaved = bool(ctx.attr("interleaved", 0))
    rotary_dim = int(ctx.attr("rotary_embedding_dim", 0) or 0)
    heads = ctx.attr("num_heads")

    def run(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
            positions: torch.Tensor | None = None) -> torch.Tensor:
        shape = x.shape
        if x.dim() == 4:
            x = x.transpose(1, 2)  # [batch, seq, heads, head_size]
        else:
            x = x.reshape(shape[0], shape[1], int(heads), -1)
        dim = rotary_dim or x.shape[-1]
        turned, kept = x[..., :dim], x[..., dim:]
        if positions is not None:
            cos, sin = cos[positions.long()], sin[positions.long()]
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)  # [batch, seq, 1, dim / 2]
        if interleaved:
            x1, x2 = turned[..., 0::2], turned[..., 1::2]
        else:
            x1, x2 = turned.chunk(2, dim=-1)
        real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
        if interleaved:
            turned = torch.stack([real, imag], -1).reshape(turned.shape)
        else:
            turned = torch.cat([real, imag], -1)
        y = torch.cat([turned, kept], -1)
        return y.transpose(1, 2) if len(shape) == 4 else y.reshape(shape)

    return run


_UPDATE_RULES = ("linear", "gated", "delta", "gated_delta")


@register("LinearAttention", since=27)
def linear_attention(ctx: NodeContext) -> Kernel:
    # A recurrent state S [batch, kv_heads, d_k, d_v] per step t: decayed by exp(decay_t)
    # (gated rules), the value corrected to beta_t * (v_t - S^T k_t) (delta rules), then
    # S += k_t v_t^T; the output is scale * q_t S, each query head reading its KV group's state.
    # The recurrence runs in float32 at least; outputs take the input's type.
    rule = ctx.attr("update_rule", "gated_delta")
    if rule not in _UPDATE_RULES:
        raise ctx.unsupported(f"LinearAttention update_rule '{rule}'")
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    q_heads, kv_heads = int(ctx.attr("q_num_heads")), int(ctx.attr("kv_num_heads"))
    scale_attr = float(ctx.attr("scale", 0.0) or 0.0)

    def run(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: torch.Tensor | None = None,
        decay: torch.Tensor | None = None, beta: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor | None, ...]:
        work = torch.float64 if q.dtype == torch.float64 else torch.float32
        b, steps, _ = q.shape
        q4 = _heads_first(q, q_heads).to(work)
        k4 = _heads_first(k, kv_heads).to(work)
        v4 = _heads_first(v, kv_heads).to(work)
        d_k, d_v = q4.shape[-1], v4.shape[-1]
        if decay is not None:
            per_head = decay.shape[-1] == kv_heads
            decay = decay.reshape(b, steps, kv_heads, -1).transpose(1, 2).to(work)
            if per_head:
                decay = decay[..., :1]
        if beta is not None:
            beta = beta.reshape(b, steps, beta.shape[-1], 1).transpose(1, 2).to(work)
        state_dtype = past.dtype if past is not None else q.dtype
        state = past.to(work) if past is not None else torch.zeros(
            b, kv_heads, d_k, d_v, dtype=work, device=q.device)
        scale = scale_attr or 1.0 / math.sqrt(d_k)
        group = q_heads // kv_heads
        outputs = []
        for t in range(steps):
            k_t, v_t = k4[:, :, t], v4[:, :, t]
            if gated and decay is not None:
                state = state * torch.exp(decay[:, :, t]).unsqueeze(-1)
            if delta and beta is not None:
                retrieved = torch.einsum("bhdm,bhd->bhm", state, k_t)
                v_t = beta[:, :, t] * (v_t - retrieved)
            state = state + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
            read = state.repeat_interleave(group, dim=1) if group > 1 else state
            outputs.append(scale * torch.einsum("bhd,bhdm->bhm", q4[:, :, t], read))
        y = torch.stack(outputs, 2).transpose(1, 2).reshape(b, steps, q_heads * d_v)
        return output_tuple(ctx, y.to(q.dtype), state.to(state_dtype))

    return run


@register("FlexAttention", since=1, domain="ai.onnx.preview")
def flex_attention(ctx: NodeContext) -> Kernel:
    # softmax(score_mod(QK^T * scale)) with prob_mod applied to the probabilities, then @ V;
    # the optional mods are graph attributes of one input and one output. Half types compute
    # in float32 (or softmax_precision).
    scale_attr = ctx.attr("scale")
    score_mod = ctx.subgraph("score_mod") if "score_mod" in ctx.subgraphs else None
    prob_mod = ctx.subgraph("prob_mod") if "prob_mod" in ctx.subgraphs else None
    precision = ctx.attr("softmax_precision")
    chosen = None if precision is None else torch_dtype(int(precision))

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *outer: torch.Tensor) -> torch.Tensor:
        scale = scale_attr if scale_attr is not None else 1.0 / math.sqrt(q.shape[-1])
        if q.shape[1] != k.shape[1]:
            k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
            v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
        root = torch.tensor(math.sqrt(scale), dtype=torch.float32).to(q.dtype)
        scores = torch.matmul(q * root, (k * root).transpose(-1, -2))
        work = chosen or (torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype)
        scores = scores.to(work)
        if score_mod is not None:
            scores = score_mod(scores, *outer)[0].to(work)
        probabilities = torch.softmax(scores, dim=-1)
        if prob_mod is not None:
            probabilities = prob_mod(probabilities, *outer)[0].to(work)
        return torch.matmul(probabilities, v.to(work)).to(v.dtype)

    return run
