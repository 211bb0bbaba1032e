"""A small pre-norm (GPT-style) transformer language model on int64 token ids.

Each layer is `x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))`: the residual stream x is never
normalised on the way through, so the skip path is a clean identity from the loss back to the
embeddings. That is the layout where gradients reach early layers most directly; compare with
postnorm_encoder.py, where a LayerNorm sits on every skip path.

Attention is written out (causal mask, softmax, no nn.MultiheadAttention), and the MLP uses the
tanh approximation of GELU written as in GPT-2:
`0.5*x*(1+tanh(sqrt(2/pi)*(x + 0.044715*x**3)))`. Note that `x + 0.044715*x**3` is, to the
autograd graph, also an add whose two operands fork from one tensor: a fork-and-add that is not
a residual connection. It lives in the `NewGELU` module, so it can be told apart by name.

Two layers, so four residual junctions (attention and MLP in each layer).

    gradflow inspect sample_models/prenorm_transformer.py
"""

from __future__ import annotations

import math

import torch
from torch import nn

VOCAB_SIZE = 64
BLOCK_SIZE = 16


class NewGELU(nn.Module):
    """GELU, tanh approximation, as in GPT-2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


class CausalSelfAttention(nn.Module):
    mask: torch.Tensor  # (1, 1, block_size, block_size), True where attending is allowed

    def __init__(self, n_embd: int, n_head: int, block_size: int) -> None:
        super().__init__()
        assert n_embd % n_head == 0
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        mask = torch.tril(torch.ones(block_size, block_size, dtype=torch.bool))
        self.register_buffer("mask", mask.view(1, 1, block_size, block_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(~self.mask[:, :, :T, :T], float("-inf"))
        att = torch.softmax(att, dim=-1)
        y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.gelu = NewGELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class PreNormTransformer(nn.Module):
    def __init__(
        self,
        vocab_size: int = VOCAB_SIZE,
        block_size: int = BLOCK_SIZE,
        n_layer: int = 2,
        n_head: int = 4,
        n_embd: int = 32,
    ) -> None:
        super().__init__()
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.h = nn.ModuleList(Block(n_embd, n_head, block_size) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab) for token ids `idx` (B, T), T <= block_size."""
        T = idx.size(1)
        assert T <= self.block_size, f"sequence length {T} > block size {self.block_size}"
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def build() -> PreNormTransformer:
    """The model, with weights from a fixed seed (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return PreNormTransformer()


def example_input() -> torch.Tensor:
    """A batch of 4 sequences of 16 random token ids (int64)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, VOCAB_SIZE, (4, BLOCK_SIZE), generator=generator)
