"""Building one-node ONNX models and comparing the executor with onnxruntime."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper, shape_inference

from gradflow.onnx import OnnxModel

RTOL = 1e-4


def one_node_model(
    op_type: str,
    inputs: Sequence[np.ndarray | None],
    attrs: Mapping[str, Any] | None = None,
    *,
    n_outputs: int = 1,
    opset: int = 18,
    const: Sequence[int] = (),
    domain: str = "",
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A model holding one node; inputs listed in `const` become initializers, None inputs are
    absent optional inputs. Returns the model and the feeds for its graph inputs."""
    names, graph_inputs, initializers, feeds = [], [], [], {}
    for i, value in enumerate(inputs):
        if value is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        if i in const:
            initializers.append(numpy_helper.from_array(value, name))
        else:
            elem = helper.np_dtype_to_tensor_dtype(value.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, elem, list(value.shape)))
            feeds[name] = value
    outputs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, names, outputs, name=f"the_{op_type}", domain=domain,
                            **dict(attrs or {}))
    graph = helper.make_graph(
        [node], "one_node", graph_inputs,
        [helper.make_empty_tensor_value_info(o) for o in outputs], initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    model = shape_inference.infer_shapes(model, strict_mode=True)
    _complete_output_types(model, feeds)
    return model, feeds


def _complete_output_types(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> None:
    # The checker wants an element type and a rank on every graph output; where shape
    # inference gives none (dynamic shapes, function ops), take them from onnxruntime.
    outputs = model.graph.output
    if all(o.type.tensor_type.elem_type and o.type.tensor_type.HasField("shape")
           for o in outputs):
        return
    values = run_ort(model, feeds)
    for info, value in zip(list(outputs), values, strict=True):
        array = np.asarray(value)
        elem = helper.np_dtype_to_tensor_dtype(array.dtype)
        info.CopyFrom(helper.make_tensor_value_info(info.name, elem, [None] * array.ndim))


def run_ort(model: onnx.ModelProto | str | Path, feeds: Mapping[str, np.ndarray]) -> list[Any]:
    source = model if isinstance(model, (str, Path)) else model.SerializeToString()
    session = ort.InferenceSession(
        str(source) if isinstance(source, Path) else source, providers=["CPUExecutionProvider"]
    )
    return list(session.run(None, dict(feeds)))


def run_executor(model: OnnxModel, feeds: Mapping[str, np.ndarray]) -> list[torch.Tensor]:
    args = {name: torch.from_numpy(np.array(value, copy=True)) for name, value in feeds.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = model(**args)
    return list(out) if isinstance(out, tuple) else [out]


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """Largest difference over the largest reference magnitude, on finite values; inf if the
    non-finite values (nan, +-inf) differ."""
    finite = np.isfinite(ref)
    if not np.array_equal(finite, np.isfinite(ours)):
        return float("inf")
    special_ours, special_ref = ours[~finite], ref[~finite]
    if not np.array_equal(special_ours, special_ref, equal_nan=True):
        return float("inf")
    if not finite.any():
        return 0.0
    a, r = ours[finite].astype(np.float64), ref[finite].astype(np.float64)
    return float(np.max(np.abs(a - r))) / max(float(np.max(np.abs(r))), 1e-6)


def assert_matches(ours: torch.Tensor | None, ref: np.ndarray, what: str = "") -> None:
    """Same shape and dtype; floats within RTOL of the reference's largest magnitude, other
    types exactly equal."""
    assert ours is not None, f"{what}: executor produced no value"
    got = ours.detach().numpy()
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    assert got.dtype == ref.dtype, f"{what}: dtype {got.dtype} != {ref.dtype}"
    if np.issubdtype(ref.dtype, np.floating):
        error = relative_error(got, ref)
        assert error <= RTOL, f"{what}: relative error {error:.2e} > {RTOL}"
    else:
        np.testing.assert_array_equal(got, ref, err_msg=what)
