"""The sample models build, run forward and backward quickly, are what their docstrings say,
and the seed example reproduces the seed document's gradients."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from gradflow.loaders import LoadedModel, load_source

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
NAMES = [
    "tiny_resnet",
    "prenorm_transformer",
    "postnorm_encoder",
    "deep_mlp",
    "rezero",
    "plain_net",
    "seed_example",
]


def load(name: str) -> tuple[LoadedModel, ModuleType]:
    loaded = load_source(str(SAMPLES / f"{name}.py"))
    return loaded, sys.modules[type(loaded.module).__module__]


def run(model: torch.nn.Module, inputs) -> torch.Tensor:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


def graph_nodes(output: torch.Tensor) -> list:
    seen: list = []
    stack = [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or any(node is s for s in seen):
            continue
        seen.append(node)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return seen


def test_every_sample_is_tested():
    assert sorted(p.stem for p in SAMPLES.glob("*.py")) == sorted(NAMES)
    readme = (SAMPLES / "README.md").read_text()
    for name in NAMES:
        assert f"`{name}.py`" in readme


@pytest.mark.parametrize("name", NAMES)
def test_builds_and_runs_forward_and_backward(name):
    rng_before = torch.random.get_rng_state()
    loaded, namespace = load(name)
    assert loaded.format == "python"
    assert loaded.example_input is not None
    inputs = loaded.example_input()
    # Seeded locally: the global RNG is untouched and the input is the same every time.
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    again = loaded.example_input()
    first = list(inputs.values()) if isinstance(inputs, dict) else [inputs]
    second = list(again.values()) if isinstance(again, dict) else [again]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not any(t.requires_grad for t in first)
    assert 4 <= first[0].shape[0] <= 8 or name == "seed_example"
    assert namespace.__doc__ and len(namespace.__doc__.strip().splitlines()) >= 3

    model = loaded.module
    out = run(model, inputs)
    out.sum().backward()
    assert torch.isfinite(out).all()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(param.grad).all(), pname


@pytest.mark.parametrize("name", NAMES)
def test_build_is_deterministic(name):
    a, _ = load(name)
    b, _ = load(name)
    for (ka, va), (kb, vb) in zip(
        a.module.state_dict().items(), b.module.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb)


def test_plain_net_has_no_add():
    loaded, _ = load("plain_net")
    out = run(loaded.module, loaded.example_input())
    assert not [
        n for n in graph_nodes(out) if "Add" in type(n).__name__ and "mm" not in type(n).__name__
    ]


def test_deep_mlp_has_48_residual_adds():
    loaded, _ = load("deep_mlp")
    out = run(loaded.module, loaded.example_input())
    adds = [n for n in graph_nodes(out) if type(n).__name__ == "AddBackward0"]
    assert len(adds) == 48


def test_tiny_resnet_has_four_identity_and_two_projection_shortcuts():
    loaded, namespace = load("tiny_resnet")
    blocks = [m for m in loaded.module.modules() if isinstance(m, namespace.BasicBlock)]
    assert len(blocks) == 6
    assert sum(b.downsample is None for b in blocks) == 4
    out = run(loaded.module, loaded.example_input())
    assert out.shape == (4, 10)


def test_rezero_block_path_gives_the_fork_no_gradient_at_init():
    loaded, namespace = load("rezero")
    model = loaded.module
    x = loaded.example_input().requires_grad_()
    run(model, x).sum().backward()
    for block in model.blocks:
        assert block.alpha.item() == 0.0
        assert block.alpha.grad.abs().item() > 0  # training still starts
        for p in block.f.parameters():
            assert torch.count_nonzero(p.grad) == 0
    # Every block is the identity, so the input gets exactly the head's gradient.
    alone = x.detach().requires_grad_()
    (head_only,) = torch.autograd.grad(model.head(alone).sum(), alone)
    assert torch.equal(x.grad, head_only)


def test_prenorm_transformer_is_causal():
    loaded, namespace = load("prenorm_transformer")
    ids = loaded.example_input()
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % namespace.VOCAB_SIZE
    with torch.no_grad():
        a, b = loaded.module(ids), loaded.module(changed)
    assert ids.dtype == torch.int64
    assert torch.equal(a[:, :-1], b[:, :-1])
    assert not torch.equal(a[:, -1], b[:, -1])


def test_postnorm_encoder_ignores_padding():
    loaded, _ = load("postnorm_encoder")
    inputs = loaded.example_input()
    padded = inputs["attention_mask"] == 0
    assert padded.any()
    changed = dict(inputs, input_ids=torch.where(padded, 7, inputs["input_ids"]))
    with torch.no_grad():
        a, b = loaded.module(**inputs), loaded.module(**changed)
    torch.testing.assert_close(a, b)


def test_gelu_is_the_tanh_approximation():
    _, namespace = load("prenorm_transformer")
    x = torch.linspace(-4, 4, 101)
    expected = torch.nn.functional.gelu(x, approximate="tanh")
    torch.testing.assert_close(namespace.NewGELU()(x), expected)


# The seed document's worked example (seeds/001): its printed gradients, with d cost = 1.
DOCUMENT = {"x": -16.0, "y": 12.0, "z": 2.0, "w": 0.0}
DOCUMENT_INTERMEDIATE = {"xy": 4.0, "zw": 2.0, "xy_plus_zw": 2.0, "residual": 2.0}


def test_seed_example_parameter_gradients_match_the_document():
    loaded, _ = load("seed_example")
    model = loaded.module
    out = run(model, loaded.example_input())
    assert out.sum().item() == 1.0  # cost = 2 * (-22) + 45
    names = list(DOCUMENT)
    grads = torch.autograd.grad(out.sum(), [getattr(model, n) for n in names])
    assert {n: g.item() for n, g in zip(names, grads, strict=True)} == DOCUMENT
    # The mean loss gives the same numbers: the probe is a batch of one.
    grads = torch.autograd.grad(run(model, loaded.example_input()).mean(), model.x)
    assert grads[0].item() == -16.0


def test_seed_example_intermediate_gradients_match_the_document():
    _, namespace = load("seed_example")
    leaves = [torch.tensor(v, requires_grad=True) for v in (3.0, -4.0, 2.0, -1.0)]
    values = namespace.computation(*leaves)
    assert values["cost"].item() == 1.0
    names = list(DOCUMENT_INTERMEDIATE)
    grads = torch.autograd.grad(values["cost"], [values[n] for n in names])
    assert {n: g.item() for n, g in zip(names, grads, strict=True)} == DOCUMENT_INTERMEDIATE


def test_seed_example_junction_sends_two_down_each_path_and_four_reach_the_fork():
    _, namespace = load("seed_example")
    leaves = [torch.tensor(v, requires_grad=True) for v in (3.0, -4.0, 2.0, -1.0)]
    values = namespace.computation(*leaves)
    junction, fork = values["residual"].grad_fn, values["xy"].grad_fn
    assert type(junction).__name__ == "AddBackward0"
    seen: dict[str, tuple] = {}
    junction.register_hook(lambda grad_in, grad_out: seen.__setitem__("paths", grad_in))
    fork.register_prehook(lambda grad_out: seen.__setitem__("fork", grad_out))
    torch.autograd.grad(values["cost"], leaves)
    skip, block = (g.item() for g in seen["paths"])  # residual = xy (skip) + xy_plus_zw (block)
    assert (skip, block) == (2.0, 2.0)
    assert seen["fork"][0].item() == 4.0
