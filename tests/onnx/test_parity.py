"""The bundled sample models exported to ONNX (default and legacy exporter), inspected in eval
mode on the same input, give the same junctions, in the same order, with the same gradient
norms as inspecting the PyTorch model itself."""

from __future__ import annotations

import warnings

import pytest
import torch

import gradflow
from gradflow.onnx import load_onnx_model
from tests.test_cli_inspect import _load_sample

pytest.importorskip("onnxscript")

METRICS = ("grad_out", "grad_skip", "grad_block", "grad_in")


def _export(model, inputs, path, dynamo: bool):  # type: ignore[no-untyped-def]
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    kwargs = {}
    if isinstance(inputs, dict):
        args, kwargs = (), inputs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), kwargs=kwargs or None, dynamo=dynamo,
                          **({} if dynamo else {"opset_version": 17}))


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy"])
# Not seed_example: its four scalar parameters become constants in ONNX (scalar floating
# initializers are constants by design), so there is no trainable block and no junction there.
@pytest.mark.parametrize("sample", ["tiny_resnet", "prenorm_transformer", "postnorm_encoder", "deep_mlp"])
def test_onnx_path_matches_the_pytorch_path(sample, dynamo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    module = _load_sample(sample)
    model, inputs = module.build().eval(), module.example_input()
    path = tmp_path / f"{sample}.onnx"
    _export(model, inputs, path, dynamo)
    executor = load_onnx_model(path)
    loss = "mse"
    eager = gradflow.inspect(model, inputs, mode="eval", loss=loss)
    onnx_inputs = {s.name: v for s, v in zip(executor.input_specs, inputs.values())} if isinstance(inputs, dict) else inputs
    onnx = gradflow.inspect(executor, onnx_inputs, mode="eval", loss=loss)
    assert len(onnx.junctions) == len(eager.junctions) > 0
    assert [j.skip for j in onnx.junctions] == [j.skip for j in eager.junctions]
    for a, b in zip(eager.junctions, onnx.junctions):
        for metric in METRICS:
            assert getattr(b, metric) == pytest.approx(getattr(a, metric), rel=1e-4, abs=1e-9), (a.name, metric)
    assert onnx.summary.loss == pytest.approx(eager.summary.loss, rel=1e-5)
