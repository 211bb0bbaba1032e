"""Small models exported to ONNX by the tests: residual CNNs, a MobileNet-style block, a
pre-norm transformer encoder on token ids, non-residual controls, and Hugging Face GPT-2 and
BERT built from tiny configs (random weights, no downloads)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """ResNet basic block; the shortcut is the identity, or a strided 1x1 conv + BN."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    """Stem, stages of basic blocks (each stage after the first halves the resolution and
    doubles the width, so it opens with a projection shortcut), pooling, classifier.

    Junctions: sum(blocks); projection shortcuts: len(blocks) - 1.
    """

    def __init__(self, width: int = 8, blocks: tuple[int, ...] = (2, 1), classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.pool = nn.MaxPool2d(3, 2, 1)
        stages: list[nn.Module] = []
        cin = width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            layers = [BasicBlock(cin if j == 0 else cout, cout, 2 if i and j == 0 else 1)
                      for j in range(n)]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.smooth = nn.AvgPool2d(3, 1, 1)
        self.head = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.smooth(self.stages(self.pool(self.stem(x))))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    """MobileNetV3 block: 1x1 expand (HardSwish), depthwise 3x3 (ReLU6), squeeze-excite
    (HardSigmoid), 1x1 project, identity shortcut."""

    def __init__(self, channels: int = 8, expand: int = 4) -> None:
        super().__init__()
        hidden = channels * expand
        self.expand = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish()
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
        )
        self.se_reduce = nn.Conv2d(hidden, channels, 1)
        self.se_expand = nn.Conv2d(channels, hidden, 1)
        self.project = nn.Sequential(nn.Conv2d(hidden, channels, 1, bias=False),
                                     nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise(self.expand(x))
        scale = F.adaptive_avg_pool2d(y, 1)
        scale = F.hardsigmoid(self.se_expand(F.relu(self.se_reduce(scale))))
        return x + self.project(y * scale)


class MobileNetish(nn.Module):
    """Strided stem, one inverted residual block (one junction), mean-pooled head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8),
                                  nn.Hardswish())
        self.block = InvertedResidual()
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)).mean((2, 3)))


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class TokenEncoder(nn.Module):
    """Token ids -> embedding + learned positions -> pre-norm layers -> LayerNorm -> logits.

    Junctions: 2 per layer. The positional add is not one.
    """

    def __init__(self, vocab: int = 50, dim: int = 32, heads: int = 4, layers: int = 2,
                 max_len: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.positions = nn.Parameter(torch.randn(1, max_len, dim) * 0.02)
        self.layers = nn.ModuleList([EncoderLayer(dim, heads, dropout) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.positions[:, : ids.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x))


class GeluTanhMLP(nn.Module):
    """No junction: Linear -> tanh-GELU written out (x + 0.044715 x^3) -> Linear."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        inner = 0.7978845608 * (h + 0.044715 * torch.pow(h, 3))
        return self.fc2(0.5 * h * (1.0 + torch.tanh(inner)))


class BiasAndPositions(nn.Module):
    """No junction: two embeddings of the same ids summed, learned positions added, then a
    matmul plus a separate bias add."""

    def __init__(self, vocab: int = 30, dim: int = 16, max_len: int = 12) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, dim)
        self.kinds = nn.Embedding(vocab, dim)
        self.positions = nn.Parameter(torch.randn(max_len, dim))
        self.weight = nn.Parameter(torch.randn(dim, dim) / 4)
        self.bias = nn.Parameter(torch.randn(dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids) + self.kinds(ids) + self.positions[: ids.shape[1]]
        return torch.matmul(x, self.weight) + self.bias


class HFWrapper(nn.Module):
    """A Hugging Face model called with keyword inputs, returning its first output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, attention_mask=mask, use_cache=False)[0]  # type: ignore[no-any-return]


def gpt2() -> nn.Module:
    """GPT-2 LM with two layers (four junctions), 64-wide, vocabulary 100, no dropout."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=32,
        bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    return HFWrapper(GPT2LMHeadModel(config))


def bert() -> nn.Module:
    """BERT encoder with two layers (four junctions), 64-wide, vocabulary 100, no dropout."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128,
        vocab_size=100, max_position_embeddings=32, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return HFWrapper(BertModel(config))
