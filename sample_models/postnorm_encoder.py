"""A small post-norm (BERT-style) encoder with a classification head.

Each layer is `x = ln_1(x + attn(x)); x = ln_2(x + ffn(x))`: the LayerNorm sits after the add, on
the residual stream itself, so every gradient going back to earlier layers passes through one
LayerNorm per sublayer. Compare with prenorm_transformer.py, where the skip path is a clean
identity.

The input is BERT's: token ids, token-type (segment) ids and an attention mask, as keyword
arguments. The embeddings are the sum of token, token-type and position embeddings, and the mask
is turned into large negative numbers added to the attention scores. Neither of those adds is a
junction: their operands do not fork from one tensor. The head classifies the first ([CLS])
token through a tanh pooler, as BERT does.

Two layers, so four residual junctions.

    gradflow inspect sample_models/postnorm_encoder.py
"""

from __future__ import annotations

import math

import torch
from torch import nn

VOCAB_SIZE = 100
TYPE_VOCAB_SIZE = 2
MAX_POSITIONS = 32
SEQ_LEN = 12


class Embeddings(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB_SIZE, hidden)
        self.token_type_embeddings = nn.Embedding(TYPE_VOCAB_SIZE, hidden)
        self.position_embeddings = nn.Embedding(MAX_POSITIONS, hidden)
        self.layer_norm = nn.LayerNorm(hidden)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        x = (
            self.word_embeddings(input_ids)
            + self.token_type_embeddings(token_type_ids)
            + self.position_embeddings(positions)
        )
        return self.layer_norm(x)


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, n_head: int) -> None:
        super().__init__()
        assert hidden % n_head == 0
        self.n_head = n_head
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.output = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // self.n_head)
        scores = scores + mask_bias
        context = torch.softmax(scores, dim=-1) @ v
        return self.output(context.transpose(1, 2).reshape(B, T, C))


class FeedForward(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.intermediate = nn.Linear(hidden, 4 * hidden)
        self.act = nn.GELU()
        self.output = nn.Linear(4 * hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.act(self.intermediate(x)))


class EncoderLayer(nn.Module):
    def __init__(self, hidden: int, n_head: int) -> None:
        super().__init__()
        self.attn = SelfAttention(hidden, n_head)
        self.ln_1 = nn.LayerNorm(hidden)
        self.ffn = FeedForward(hidden)
        self.ln_2 = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(x + self.attn(x, mask_bias))
        x = self.ln_2(x + self.ffn(x))
        return x


class PostNormEncoder(nn.Module):
    def __init__(
        self, hidden: int = 32, n_head: int = 4, n_layer: int = 2, num_labels: int = 3
    ) -> None:
        super().__init__()
        self.embeddings = Embeddings(hidden)
        self.layers = nn.ModuleList(EncoderLayer(hidden, n_head) for _ in range(n_layer))
        self.pooler = nn.Linear(hidden, hidden)
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Class logits (B, num_labels). `attention_mask` is 1 for real tokens, 0 for padding."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        # (B, 1, 1, T): 0 where attending is allowed, a large negative number on padding.
        mask_bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -1e4
        for layer in self.layers:
            x = layer(x, mask_bias)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        return self.classifier(pooled)


def build() -> PostNormEncoder:
    """The model, with weights from a fixed seed (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return PostNormEncoder()


def example_input() -> dict[str, torch.Tensor]:
    """Keyword arguments for a batch of 4 sentence pairs of 12 tokens, some of them padded."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, VOCAB_SIZE, (4, SEQ_LEN), generator=generator)
    lengths = torch.tensor([12, 10, 7, 5])
    positions = torch.arange(SEQ_LEN)
    attention_mask = (positions[None, :] < lengths[:, None]).long()
    token_type_ids = (positions[None, :] >= (lengths[:, None] // 2)).long() * attention_mask
    input_ids = input_ids * attention_mask  # id 0 is padding
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
    }
