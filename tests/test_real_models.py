"""Third-party architectures: Hugging Face models built from small configs (random weights,
offline). grad_in at each layer's first junction is checked against torch.autograd.grad on the
hidden states the model itself exposes (output_hidden_states=True)."""

from __future__ import annotations

import pytest
import torch

import gradflow
from gradflow.probe import infer

transformers = pytest.importorskip("transformers")


def gpt2():  # type: ignore[no-untyped-def]
    config = transformers.GPT2Config(n_layer=3, n_embd=32, n_head=4, vocab_size=97, n_positions=32,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config)


def bert():  # type: ignore[no-untyped-def]
    config = transformers.BertConfig(num_hidden_layers=3, hidden_size=32, num_attention_heads=4,
                                     intermediate_size=64, vocab_size=97)
    return transformers.BertForSequenceClassification(config)


def vit():  # type: ignore[no-untyped-def]
    config = transformers.ViTConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                    intermediate_size=64, image_size=32, patch_size=8, num_labels=5)
    return transformers.ViTForImageClassification(config)


def convnext():  # type: ignore[no-untyped-def]
    config = transformers.ConvNextConfig(depths=[1, 1, 2, 1], hidden_sizes=[8, 16, 24, 32], num_labels=5)
    return transformers.ConvNextForImageClassification(config)


@pytest.mark.parametrize(
    ("build", "count", "first"),
    [(gpt2, 6, "transformer.h.0#0"), (bert, 6, "bert.encoder.layer.0.attention.output"),
     (vit, 4, None), (convnext, 5, None)],
)
def test_every_residual_found_and_named(build, count, first) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = build()
    report = gradflow.inspect(model, infer(model, 2, 0), mode="eval")
    assert len(report.junctions) == count
    assert all(j.skip == "identity" for j in report.junctions)
    assert all(j.params > 0 for j in report.junctions)
    if first:
        assert report.junctions[0].name == first


@pytest.mark.parametrize(("build", "per_layer"), [(gpt2, 2), (bert, 2), (vit, 2)])
def test_grad_in_matches_autograd_on_hidden_states(build, per_layer) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = build()
    probe = infer(model, 2, 0)
    report = gradflow.inspect(model, probe, loss="mse", mode="eval")
    model.eval()
    inputs = probe.kwargs or {"pixel_values": probe.args[0]}
    if "pixel_values" in inputs:
        inputs = {"pixel_values": inputs["pixel_values"].clone().requires_grad_(True)}
    out = model(**inputs, output_hidden_states=True)
    loss = out.logits.float().pow(2).mean()
    hidden = out.hidden_states[:-1]  # the input of every layer
    grads = torch.autograd.grad(loss, list(hidden))
    layer_firsts = report.junctions[::per_layer]
    assert len(layer_firsts) == len(hidden)
    for junction, grad in zip(layer_firsts, grads):
        assert junction.grad_in == pytest.approx(grad.norm().item(), rel=1e-4)
