"""The benchmark's models: full-size residual networks written here, with random weights.

The first four are plain PyTorch in this file (or a bundled sample) and build the same way on
any machine. The others come from timm and transformers, test-only dependencies that gradflow
itself never imports, built from their configurations with random weights (nothing downloaded):

- `bert_tiny`, `llama_tiny`: small transformer configurations whose step takes milliseconds,
  where a fixed cost per measurement shows most.
- `mobilenetv3`, `efficientnet_b0`: mobile CNNs with many small junctions.
- `convnext_atto`, `vit_tiny`, `resnet18`, `regnety_002`: timm's everyday vision models.

- `resnet50`: torchvision's ResNet-50 layout (bottleneck blocks [3, 4, 6, 3], stride on the 3x3
  conv, `out += identity` then ReLU): 25.6 M parameters, 16 junctions.
- `gpt2`: GPT-2 small (12 pre-norm layers, d=768, 12 heads, vocab 50257, tied output head,
  causal attention through `scaled_dot_product_attention`): 124 M parameters, 24 junctions.
- `deep_mlp`: `sample_models/deep_mlp.py` as shipped (48 blocks, width 32): 48 junctions in a
  model so small that fixed per-op and per-junction costs dominate its time.
- `many_junctions(n)`: n tiny residual blocks, for junction detection timing.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent


# ResNet-50 -------------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        width = planes
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != out_planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet50(nn.Module):
    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3), num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_planes = 64
        stages = []
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            stage = [Bottleneck(in_planes, planes, stride)]
            in_planes = planes * Bottleneck.expansion
            stage += [Bottleneck(in_planes, planes) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# GPT-2 small -----------------------------------------------------------------------------------


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.c_attn(x).split(dim, dim=2)
        q, k, v = (t.view(batch, tokens, self.heads, dim // self.heads).transpose(1, 2)
                   for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).contiguous().view(batch, tokens, dim)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.c_fc = nn.Linear(dim, 4 * dim)
        self.c_proj = nn.Linear(4 * dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class GPT2Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """GPT-2 small: token ids (batch, tokens) in, next-token logits (batch, tokens, vocab) out."""

    def __init__(self, vocab: int = 50257, context: int = 1024, layers: int = 12, dim: int = 768,
                 heads: int = 12, dropout: float = 0.1) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(context, dim)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(GPT2Block(dim, heads, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as in GPT-2
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2's scaled init of residual projections
                nn.init.normal_(param, 0.0, 0.02 / math.sqrt(2 * layers))
            elif param.dim() >= 2:
                nn.init.normal_(param, 0.0, 0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.drop(self.wte(ids) + self.wpe(positions))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


# Deep residual MLP and the many-junction model -------------------------------------------------


def _sample(name: str) -> Any:
    """Import a bundled sample model file (sample_models/ is not a package)."""
    path = ROOT / "sample_models" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"gradflow_sample_{name}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TinyBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc(torch.relu(x))


class ManyJunctions(nn.Module):
    """`n` residual blocks `x + fc(relu(x))` of width `width`: exactly n junctions."""

    def __init__(self, n: int = 1000, width: int = 8) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(TinyBlock(width) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def many_junctions(n: int = 1000, width: int = 8, batch: int = 2) -> tuple[nn.Module, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ManyJunctions(n, width)
    return model, torch.randn(batch, width, generator=torch.Generator().manual_seed(0))


class CutBlock(nn.Module):
    """`x + mlp(x).detach()`: a block whose gradient path is cut."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(x).detach()


class CutMLP(nn.Module):
    """8 cut blocks of width 256 between an input and an output layer. A bare step frees each
    block's graph as soon as the block has run; gradflow keeps them to find the junctions."""

    def __init__(self, width: int = 256, blocks: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.inp = nn.Linear(width, width)
        self.blocks = nn.Sequential(*(CutBlock(width) for _ in range(blocks)))
        self.out = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.inp(x)))


# The registry the harness reads ----------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    """A model and its probe batch, built on demand (construction takes seconds for GPT-2)."""

    name: str
    describe: str
    junctions: int
    build: Callable[[bool], tuple[nn.Module, Any]]  # quick -> (model, inputs)
    pairs: int = 1  # timing pairs per --repeats unit: more for models that run in milliseconds


def _resnet50(quick: bool) -> tuple[nn.Module, Any]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ResNet50()
    side = 64 if quick else 224
    batch = 1 if quick else 4
    return model, torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(0))


def _gpt2(quick: bool) -> tuple[nn.Module, Any]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT2()
    batch, tokens = (1, 32) if quick else (2, 128)
    ids = torch.randint(0, 50257, (batch, tokens), generator=torch.Generator().manual_seed(0))
    return model, ids


def _deep_mlp(quick: bool) -> tuple[nn.Module, Any]:
    sample = _sample("deep_mlp")
    return sample.build(), sample.example_input()


def _many(quick: bool) -> tuple[nn.Module, Any]:
    return many_junctions(1000)


def _cut_mlp(quick: bool) -> tuple[nn.Module, Any]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CutMLP()
    batch = 64 if quick else 2048
    return model, torch.randn(batch, 256, generator=torch.Generator().manual_seed(0))


BENCHES: dict[str, Bench] = {
    b.name: b
    for b in (
        Bench("resnet50", "ResNet-50, batch 4 x 3 x 224 x 224", 16, _resnet50),
        Bench("gpt2", "GPT-2 small, batch 2 x 128 tokens", 24, _gpt2),
        Bench("deep_mlp", "sample deep MLP (48 blocks, width 32), batch 8", 48, _deep_mlp, pairs=10),
        Bench("junctions1000", "1,000 blocks x + fc(relu(x)), width 8, batch 2", 1000, _many,
              pairs=2),
        # Not run by default: the memory a model whose blocks are all cut costs (see CutMLP).
        Bench("cut_mlp", "8 blocks x + mlp(x).detach(), width 256, batch 2048", 8, _cut_mlp),
    )
}
QUICK_DESCRIBE = {
    "resnet50": "ResNet-50, batch 1 x 3 x 64 x 64",
    "gpt2": "GPT-2 small, batch 1 x 32 tokens",
}


def _seeded(make: Callable[[], nn.Module]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return make()


def _images(batch: int, side: int) -> torch.Tensor:
    return torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(0))


def _timm(
    name: str, side: int, batch: int = 2, sized: bool = False
) -> Callable[[bool], tuple[nn.Module, Any]]:
    """A timm model with random weights; `sized`: the model takes its image size (a ViT)."""

    def make(quick: bool) -> tuple[nn.Module, Any]:
        import timm

        size = 64 if quick else side
        extra = {"img_size": size} if sized else {}
        model = _seeded(lambda: timm.create_model(name, pretrained=False, num_classes=100, **extra))
        return model, _images(1 if quick else batch, size)

    return make


def _bert_tiny(quick: bool) -> tuple[nn.Module, Any]:
    import transformers

    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=512, num_labels=2,
    )
    model = _seeded(lambda: transformers.BertForSequenceClassification(config))
    batch, tokens = (1, 16) if quick else (4, 64)
    ids = torch.randint(0, 30522, (batch, tokens), generator=torch.Generator().manual_seed(0))
    return model, {"input_ids": ids}


def _llama_tiny(quick: bool) -> tuple[nn.Module, Any]:
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=32000, hidden_size=128, intermediate_size=352, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )
    model = _seeded(lambda: transformers.LlamaForCausalLM(config))
    batch, tokens = (1, 16) if quick else (2, 64)
    ids = torch.randint(0, 32000, (batch, tokens), generator=torch.Generator().manual_seed(0))
    return model, {"input_ids": ids}


# The default set of `benchmarks.run`: at least ten architectures, two of them small transformer
# configurations and one a mobile CNN, besides ResNet-50 and GPT-2 small.
ARCHITECTURES = (
    "resnet50", "gpt2", "deep_mlp", "bert_tiny", "llama_tiny", "mobilenetv3", "efficientnet_b0",
    "convnext_atto", "vit_tiny", "resnet18", "regnety_002",
)
BENCHES.update({
    b.name: b
    for b in (
        Bench("bert_tiny", "BERT (2 layers, d=128), batch 4 x 64 tokens", 4, _bert_tiny, pairs=5),
        Bench("llama_tiny", "Llama (4 layers, d=128, GQA), batch 2 x 64 tokens", 8, _llama_tiny,
              pairs=5),
        Bench("mobilenetv3", "timm mobilenetv3_small_100, batch 2 x 3 x 224 x 224", 6,
              _timm("mobilenetv3_small_100", 224), pairs=3),
        Bench("efficientnet_b0", "timm efficientnet_b0, batch 2 x 3 x 160 x 160", 9,
              _timm("efficientnet_b0", 160), pairs=2),
        Bench("convnext_atto", "timm convnext_atto, batch 2 x 3 x 128 x 128", 12,
              _timm("convnext_atto", 128), pairs=3),
        Bench("vit_tiny", "timm vit_tiny_patch16_224, batch 2 x 3 x 224 x 224", 24,
              _timm("vit_tiny_patch16_224", 224, sized=True), pairs=2),
        Bench("resnet18", "timm resnet18, batch 2 x 3 x 160 x 160", 8, _timm("resnet18", 160),
              pairs=2),
        Bench("regnety_002", "timm regnety_002, batch 2 x 3 x 160 x 160", 13,
              _timm("regnety_002", 160), pairs=3),
        Bench("mlp4", "4 blocks x + fc(relu(x)), width 64, batch 8", 4,
              lambda quick: many_junctions(4, 64, 8), pairs=10),
        Bench("mlp16", "16 blocks x + fc(relu(x)), width 64, batch 8", 16,
              lambda quick: many_junctions(16, 64, 8), pairs=10),
        Bench("mlp64", "64 blocks x + fc(relu(x)), width 64, batch 8", 64,
              lambda quick: many_junctions(64, 64, 8), pairs=5),
    )
})


def build(name: str, quick: bool = False, batch_multiplier: int = 1) -> tuple[nn.Module, Any]:
    """The model and its probe batch; `batch_multiplier` repeats the batch that many times."""
    try:
        bench = BENCHES[name]
    except KeyError:
        raise KeyError(f"unknown benchmark model {name!r}: choose from {', '.join(BENCHES)}") from None
    model, inputs = bench.build(quick)
    if batch_multiplier != 1:
        inputs = _repeated(inputs, batch_multiplier)
    return model, inputs


def _repeated(inputs: Any, times: int) -> Any:
    if isinstance(inputs, dict):
        return {k: _repeated(v, times) for k, v in inputs.items()}
    return inputs.repeat(times, *([1] * (inputs.dim() - 1)))
