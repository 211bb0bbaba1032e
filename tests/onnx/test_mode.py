"""An ONNX graph's nodes fix its mode (batch statistics, dropout): the report says the mode the
numbers come from, whatever --mode asks, with a note when the two differ."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gradflow.onnx import load_onnx_model
from tests.onnx.conftest import export
from tests.onnx.helpers import run_ort
from tests.onnx.models import TokenEncoder
from tests.test_cli_inspect import _load_sample

NOTE = "this ONNX graph runs in {} mode"


@pytest.fixture(scope="module")
def tiny_resnet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """tiny_resnet exported by the legacy exporter in train mode (batch statistics) and in eval
    mode (batch norm folded into the convolutions)."""
    folder = tmp_path_factory.mktemp("mode")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    paths = {}
    for mode in ("train", "eval"):
        paths[mode] = folder / f"{mode}.onnx"
        # A fresh model each time: a train-mode export runs forward and updates the statistics.
        export(_tiny_resnet(mode), (x,), paths[mode], dynamo=False)
    return paths


def _tiny_resnet(mode: str) -> torch.nn.Module:
    return _load_sample("tiny_resnet").build().train(mode == "train")


def _input_name(path: Path) -> str:
    return load_onnx_model(path).input_specs[0].name


def _probe_file(folder: Path) -> Path:
    path = folder / "x.pt"
    if not path.exists():
        torch.save(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)), path)
    return path


@pytest.mark.parametrize("exported_in", ["train", "eval"])
@pytest.mark.parametrize("asked", ["train", "eval"])
def test_report_says_the_mode_the_graph_runs_in(gradflow_cli, tiny_resnet, exported_in: str,
                                                asked: str) -> None:
    path = tiny_resnet[exported_in]
    probe = _probe_file(path.parent)
    args = ("inspect", path, "--mode", asked, "--loss", "sum", "--input", probe)
    table = gradflow_cli(*args)
    assert table.exit_code == 0, table.output
    document = json.loads(gradflow_cli(*args, "--format", "json").stdout)
    assert document["probe"]["mode"] == exported_in
    assert f"· {exported_in} mode ·" in table.stdout
    notes = document["summary"]["notes"]
    if asked == exported_in:
        assert not any("ONNX graph runs in" in n for n in notes), notes
    else:
        assert any(n.startswith(NOTE.format(exported_in)) for n in notes), notes
        assert f"note: {NOTE.format(exported_in)}" in table.stdout
    # The numbers come from that mode: the loss (the sum of the output) is onnxruntime's output
    # on the same input, and the PyTorch model's output in that mode, not in the other.
    loss = document["summary"]["loss"]
    x = torch.load(probe)
    (out,) = run_ort(path, {_input_name(path): x.numpy()})
    assert loss == pytest.approx(float(np.sum(out, dtype=np.float64)), rel=1e-4, abs=1e-4)
    other_mode = "eval" if exported_in == "train" else "train"
    with torch.no_grad():
        same = _tiny_resnet(exported_in)(x).sum().item()
        other = _tiny_resnet(other_mode)(x).sum().item()
    assert loss == pytest.approx(same, rel=1e-4, abs=1e-4)
    assert abs(loss - other) > 1e-2


def test_exported_mode_follows_the_nodes(tmp_path: Path, tiny_resnet) -> None:
    assert load_onnx_model(tiny_resnet["train"]).exported_mode == "train"
    assert load_onnx_model(tiny_resnet["eval"]).exported_mode == "eval"
    # Opset 13: the statistics outputs select training mode.
    export(_tiny_resnet("train"), (torch.randn(2, 3, 32, 32),), tmp_path / "o13.onnx", dynamo=False, opset=13)
    assert load_onnx_model(tmp_path / "o13.onnx").exported_mode == "train"
    # Dropout that drops (training_mode a constant True), and none at all.
    ids = torch.randint(1, 50, (2, 12))
    export(TokenEncoder(dropout=0.5).train(), (ids,), tmp_path / "drop.onnx", dynamo=False)
    assert load_onnx_model(tmp_path / "drop.onnx").exported_mode == "train"
    export(TokenEncoder(dropout=0.5).eval(), (ids,), tmp_path / "nodrop.onnx", dynamo=False)
    assert load_onnx_model(tmp_path / "nodrop.onnx").exported_mode == "eval"
