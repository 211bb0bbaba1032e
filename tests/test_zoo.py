"""gradflow on the model code people train: every architecture of the zoo (tests/fixtures/zoo.py)
as a new user would run it, checked against what the library declares and against plain autograd.

For each architecture: the junction count equals the count its own code declares; every metric
of every junction is finite; each junction's `param_grad` equals plain autograd over exactly the
block's parameters, which the modules a user reads (`block_modules`) hold, none of them a module
holding the add's own module; the model's parameters, buffers and `.grad` are untouched.

And `gradflow check` at its defaults passes every architecture as its library initialises it
(zero-initialised branches, small layer scales and heads included), letting go only the
parameters the architecture leaves unused on purpose (`Arch.unused`, each entry saying why),
which plain autograd confirms get no gradient."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

import gradflow
from gradflow.engine.measure import locate
from gradflow.engine.report import METRICS, on_stream
from gradflow.gate import CheckSettings
from gradflow.gate.rules import allowed

zoo = pytest.importorskip("tests.fixtures.zoo")


def _build(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = zoo.ZOO[name].build()
    with torch.no_grad():  # zero-initialised gains and norms would leave blocks without gradient
        for param in model.parameters():
            if param.is_floating_point() and not param.any():
                param.uniform_(-0.1, 0.1)
    return model


def _deterministic(model: nn.Module) -> None:
    for name, module in model.named_modules():
        assert getattr(module, "p", 0.0) == 0.0 or not isinstance(module, nn.modules.dropout._DropoutNd), name
        assert not getattr(module, "drop_prob", 0.0), name  # timm's DropPath


def _snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "grads": {n: p.grad.clone() for n, p in model.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
    }


def _output(out: Any) -> torch.Tensor:
    """The tensor the probe takes its loss on: a tensor; else `logits`, else `last_hidden_state`,
    else the first floating tensor of a mapping or tuple."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping) or hasattr(out, "keys"):
        for key in ("logits", "last_hidden_state"):
            if isinstance(out.get(key), torch.Tensor):
                return out[key]
        out = tuple(out.values())
    return next(t for t in out if isinstance(t, torch.Tensor) and t.is_floating_point())


def _autograd(model: nn.Module, inputs: Any) -> dict[str, torch.Tensor | None]:
    """Every parameter's gradient of the probe's loss (mse on the output), by plain autograd."""
    model.train()
    out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    loss = _output(out).float().pow(2).mean()
    names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])
    return dict(zip(names, torch.autograd.grad(loss, params, allow_unused=True)))


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_zoo(name: str) -> None:
    arch = zoo.ZOO[name]
    model = _build(name)
    _deterministic(model)
    inputs = arch.inputs()
    with torch.no_grad():
        for param in model.parameters():
            param.grad = torch.rand_like(param)  # a user's stale gradients
    before = _snapshot(model)

    report = gradflow.inspect(model, inputs, loss="mse", mode="train")
    found = locate(model, inputs, mode="train")
    after = _snapshot(model)

    # Untouched: parameters, buffers, .grad and requires_grad, bit for bit.
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    for key, grad in before["grads"].items():
        assert torch.equal(grad, after["grads"][key]), key
    assert before["requires_grad"] == after["requires_grad"]

    expected = arch.junctions(model)
    assert len(report.junctions) == expected, [j.name for j in report.junctions]
    assert [j.name for j in found] == [j.name for j in report.junctions]
    assert report.summary.loss is not None and math.isfinite(report.summary.loss)

    for junction in report.junctions:
        for metric in METRICS:
            value = junction.metric(metric)
            assert value is not None and math.isfinite(value), (junction.name, metric, value)

    grads = _autograd(model, inputs)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for junction, located in zip(report.junctions, found):
        block = [names[i] for i in located.block_params]
        assert block, junction.name
        assert all(grads[n] is not None for n in block), junction.name  # each is used
        # The modules a user reads hold the block's parameters, and none holds the add's module.
        assert all(any(n.startswith(m + ".") for m in junction.block_modules) for n in block), (
            junction.name, junction.block_modules, block)
        assert not [m for m in junction.block_modules if junction.module.startswith(m + ".")], (
            junction.name, junction.module, junction.block_modules)
        assert junction.params == sum(model.get_parameter(n).numel() for n in block), junction.name
        reference = math.sqrt(sum(grads[n].double().pow(2).sum().item() for n in block))  # type: ignore[union-attr]
        assert junction.param_grad == pytest.approx(reference, rel=1e-4, abs=1e-9), junction.name


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_zoo_passes_check_at_defaults(name: str) -> None:
    arch = zoo.ZOO[name]
    torch.manual_seed(0)
    model = arch.build()  # as the library initialises it: zero gains and heads stay zero
    inputs = (arch.check_inputs or arch.inputs)()

    result = gradflow.check(model, inputs, settings=CheckSettings(allow_unused=arch.unused))

    assert result.passed, [(v.rule, v.subject, v.message) for v in result.errors]
    report = result.report
    # What was let go is exactly the parameters autograd gives no gradient, and nothing else
    # went without one.
    grads = _autograd(model, inputs)
    without = sorted(n for n, g in grads.items() if g is None)
    assert sorted(report.summary.params_unused) == without
    assert [n for n in without if not allowed(n, arch.unused)] == []
    assert all(any(allowed(n, (p,)) for n in without) for p in arch.unused), arch.unused
    # The survival is taken over the junctions on the stream.
    stream = on_stream(report.junctions)
    if stream and stream[-1].grad_out:
        assert report.summary.survival == stream[0].grad_in / stream[-1].grad_out
