"""Models exported by torch.onnx.export (dynamo and legacy, eval and train): the executor
against onnxruntime, its gradients against PyTorch's, and the add sites it reports."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch

from gradflow.engine.sites import recording
from gradflow.onnx import load_onnx_model
from gradflow.onnx.static import SkipKind, static_junctions
from tests.onnx.conftest import CASES, MODELS, Exported, case_id, export
from tests.onnx.helpers import assert_matches, relative_error, run_ort
from tests.onnx.models import TokenEncoder

Case = tuple[str, str, str, "int | None"]


def _loss(out: torch.Tensor) -> torch.Tensor:
    # A fixed random projection: outputs of a final LayerNorm make mean(out**2) nearly constant,
    # which would leave only rounding noise in the gradients.
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    return (out * weights).sum()


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_onnxruntime(case: Case, exported: Callable[..., Exported]) -> None:
    ex = exported(*case)
    model = load_onnx_model(ex.path)
    feeds = {spec.name: arg.numpy() for spec, arg in zip(model.input_specs, ex.args, strict=True)}
    expected = run_ort(ex.path, feeds)
    out = model(*ex.args)
    got = out if isinstance(out, tuple) else (out,)
    assert len(got) == len(expected)
    for i, ref in enumerate(expected):
        assert_matches(got[i], np.asarray(ref), f"{ex.key} output {i}")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_every_parameter_gets_a_gradient(case: Case, exported: Callable[..., Exported]) -> None:
    ex = exported(*case)
    model = load_onnx_model(ex.path)
    assert len(list(model.parameters())) > 0
    out = model(*ex.args)
    _loss(out[0] if isinstance(out, tuple) else out).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{ex.key}: no gradient for {model.onnx_names[name]}"
        assert torch.isfinite(param.grad).all(), f"{ex.key}: non-finite gradient for {name}"


LEGACY_TRAIN = [c for c in CASES if c[1] == "legacy" and c[2] == "train"]


@pytest.mark.parametrize("case", LEGACY_TRAIN, ids=case_id)
def test_gradients_equal_pytorch(case: Case, exported: Callable[..., Exported]) -> None:
    # Legacy training-mode exports keep the parameters as initializers named like the torch
    # parameters, and the graph computes what the model computes in train mode (no dropout).
    ex = exported(*case)
    executor = load_onnx_model(ex.path)
    torch_params = dict(ex.model.named_parameters())
    ex.model.zero_grad(set_to_none=True)
    expected = ex.model(*ex.args)
    _loss(expected).backward()
    got = executor(*ex.args)
    assert relative_error(got.detach().numpy(), expected.detach().numpy()) < 1e-4
    _loss(got).backward()
    pairs = []
    for name, param in executor.named_parameters():
        reference = torch_params.get(executor.onnx_names[name])
        if reference is not None and reference.shape == param.shape:
            assert reference.grad is not None and param.grad is not None
            pairs.append((executor.onnx_names[name], param.grad, reference.grad))
    # Some gradients are zero in exact arithmetic (a key bias under softmax); judge those
    # against the largest gradient of the model, not against their own rounding noise.
    floor = 1e-3 * max(float(ref.abs().max()) for _, _, ref in pairs)
    for name, grad, ref in pairs:
        error = float((grad - ref).abs().max()) / max(float(ref.abs().max()), floor)
        assert error < 1e-3, f"{ex.key}: gradient of {name} off by {error:.2e}"
    compared = len(pairs)
    assert compared >= len(torch_params) // 2, f"{ex.key}: only {compared} parameters matched"


EXPECTED_SITES = {
    "resnet": {"stages.0.0", "stages.0.1", "stages.1.0"},
    "mobilenet": {"block"},
    "encoder": {"layers.0", "layers.1"},
    "gpt2": {"model.transformer.h.0", "model.transformer.h.1"},
    "bert": {
        f"model.encoder.layer.{i}.{part}" for i in (0, 1) for part in ("attention.output", "output")
    },
}


@pytest.mark.parametrize("case", [c for c in CASES if c[3] is None], ids=case_id)
def test_add_sites_name_the_exporters_modules(case: Case, exported: Callable[..., Exported]) -> None:
    ex = exported(*case)
    model = load_onnx_model(ex.path)
    with recording() as sites:
        model(*ex.args)
    modules = {site.module for site in sites.values()}
    assert EXPECTED_SITES[case[0]] <= modules, f"{ex.key}: recorded {sorted(modules)}"
    locations = {site.location for site in sites.values()}
    node_names = {node.name for node in model.graph.nodes if node.op_type == "Add"}
    assert locations <= node_names


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_static_junctions(case: Case, exported: Callable[..., Exported]) -> None:
    ex = exported(*case)
    _, _, junctions, projections = MODELS[case[0]]
    found = static_junctions(ex.path)
    assert len(found) == junctions, f"{ex.key}: {[j.name for j in found]}"
    kinds = [j.skip for j in found]
    assert kinds.count(SkipKind.PROJECTION) == projections
    assert kinds.count(SkipKind.IDENTITY) == junctions - projections
    assert all(j.params > 0 and j.block_nodes for j in found)
    assert {j.module for j in found} == EXPECTED_SITES[case[0]]


def test_static_junctions_agree_on_model_and_file(exported: Callable[..., Exported]) -> None:
    ex = exported("resnet", "legacy", "train")
    assert static_junctions(load_onnx_model(ex.path)) == static_junctions(ex.path)


def test_input_specs(exported: Callable[..., Exported]) -> None:
    ex = exported("bert", "dynamo", "eval")
    specs = load_onnx_model(ex.path).input_specs
    assert [s.name for s in specs] == ["ids", "mask"]
    assert [s.dtype for s in specs] == [torch.int64, torch.int64]
    assert [s.shape for s in specs] == [[2, 12], [2, 12]]


def test_inputs_by_keyword(exported: Callable[..., Exported]) -> None:
    ex = exported("bert", "dynamo", "eval")
    model = load_onnx_model(ex.path)
    ids, mask = ex.args
    torch.testing.assert_close(model(mask=mask, ids=ids), model(ids, mask))
    torch.testing.assert_close(model(ids, mask=mask), model(ids, mask))
    with pytest.raises(TypeError, match="missing ONNX graph inputs: mask"):
        model(ids)
    with pytest.raises(TypeError, match="given twice"):
        model(ids, ids=ids)
    with pytest.raises(TypeError, match="no input 'tokens'"):
        model(ids, mask, tokens=ids)


def test_dropout_in_a_training_export_is_live(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = TokenEncoder(dropout=0.5).train()
    ids = torch.randint(0, 50, (2, 12))
    export(model, (ids,), tmp_path / "m.onnx", dynamo=False)
    executor = load_onnx_model(tmp_path / "m.onnx")
    first, second = executor(ids), executor(ids)
    assert not torch.equal(first, second)
    _loss(first).backward()
    assert all(p.grad is not None for p in executor.parameters())


@pytest.mark.parametrize("name", ["resnet", "gpt2"])
def test_dynamic_shapes(tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    # Legacy exports with dynamic axes run at sizes other than the exported ones.
    make_model, make_args, _, _ = MODELS[name]
    torch.manual_seed(0)
    model = make_model().eval()
    args = make_args()
    names = ["x"] if name == "resnet" else ["ids", "mask"]
    axes = {n: {0: "batch", 1: "seq"} for n in names} if name == "gpt2" else {
        "x": {0: "batch", 2: "height", 3: "width"}}
    path = tmp_path / "dynamic.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), dynamo=False, input_names=names,
                          dynamic_axes=axes)
    executor = load_onnx_model(path)
    assert all(isinstance(d, str) for d in executor.input_specs[0].shape[:1])
    bigger = tuple(torch.cat([a, a[:1]], 0) for a in args)
    if name == "resnet":
        bigger = (torch.randn(3, 3, 20, 24),)
    else:
        bigger = tuple(torch.cat([b, b[:, :4]], 1) for b in bigger)
    expected = run_ort(path, {n: b.numpy() for n, b in zip(names, bigger, strict=True)})[0]
    assert_matches(executor(*bigger), np.asarray(expected), f"{name} at {bigger[0].shape}")
