"""The ONNX executor (`gradflow.onnx.load_onnx_model`): gradflow on an exported model.

The model is exported in eval mode (the exported graph fixes dropout and batch-norm behaviour),
loaded by gradflow's executor, and timed like the PyTorch models: inspect against the bare
forward and backward of the same executor module. For scale, the executor's bare step is also
paired with the bare step of the original PyTorch model in eval mode.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from benchmarks.timing import interleaved
from benchmarks.workloads import bare_step, inspect_step


def missing() -> str | None:
    """None when the executor can be imported, else why not."""
    try:
        from gradflow.onnx import load_onnx_model  # noqa: F401
    except ImportError as e:
        return f"gradflow.onnx.load_onnx_model not importable: {e}"
    return None


def export(model: torch.nn.Module, inputs: Any, path: Path) -> None:
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    model.eval()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17)
        except Exception:  # the TorchScript exporter is deprecated; fall back to dynamo
            torch.onnx.export(model, args, str(path), dynamo=True, external_data=False)


def onnx_figures(model: torch.nn.Module, inputs: Any, pairs: int, warmup: int) -> dict[str, Any]:
    from gradflow.onnx import load_onnx_model

    with tempfile.TemporaryDirectory(prefix="gradflow-bench-") as folder:
        path = Path(folder) / "model.onnx"
        export(model, inputs, path)
        executor = load_onnx_model(path)
    nodes = len(getattr(executor, "_loop", ()) or ())
    inspect_pairs = interleaved(bare_step(executor, inputs, mode="eval"),
                                inspect_step(executor, inputs, mode="eval"), pairs, warmup)
    executor_pairs = interleaved(bare_step(model, inputs, mode="eval"),
                                 bare_step(executor, inputs, mode="eval"), pairs, warmup)
    return {
        "onnx_nodes": nodes or None,
        "inspect": inspect_pairs.summary(),
        "executor_vs_torch": executor_pairs.summary(),
    }
