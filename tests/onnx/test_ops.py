"""Every registered kernel, one node at a time, against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradflow.onnx import OnnxModel
from gradflow.onnx.registry import REGISTRY
from tests.onnx.helpers import assert_matches, one_node_model, run_executor, run_ort
from tests.onnx.op_cases import OpCase, all_cases

CASES = all_cases()


def _model(c: OpCase, variant: str):  # type: ignore[no-untyped-def]
    const = c.const if variant == "const" else c.always_const
    return one_node_model(
        c.op, c.inputs, c.attrs, n_outputs=c.n_outputs, opset=c.opset, const=const
    )


# The "runtime" variant feeds the inputs that "const" bakes in, where that makes a difference.
VARIANTS = [(c, "const") for c in CASES] + [
    (c, "runtime") for c in CASES if not set(c.const) <= set(c.always_const)
]


@pytest.mark.parametrize(("c", "variant"), VARIANTS, ids=[f"{c.id}-{v}" for c, v in VARIANTS])
def test_matches_onnxruntime(c: OpCase, variant: str) -> None:
    model, feeds = _model(c, variant)
    expected = run_ort(model, feeds)
    got = run_executor(OnnxModel(model), feeds)
    for i, ref in enumerate(expected):
        assert_matches(got[i], np.asarray(ref), f"{c.id} output {i}")


@pytest.mark.parametrize("c", [c for c in CASES if c.op not in ("Dropout",)],
                         ids=lambda c: c.id)
def test_backward_runs(c: OpCase) -> None:
    # Floating inputs require grad; whatever comes out floating can be backpropagated.
    model, feeds = _model(c, "runtime")
    executor = OnnxModel(model)
    args = {}
    for name, value in feeds.items():
        tensor = torch.from_numpy(np.array(value, copy=True))
        if tensor.is_floating_point():
            tensor.requires_grad_(True)
        args[name] = tensor
    out = executor(**args)
    outs = out if isinstance(out, tuple) else (out,)
    loss = sum(o.sum() for o in outs if o is not None and o.requires_grad)
    if isinstance(loss, torch.Tensor):
        loss.backward()


def test_every_kernel_has_a_case() -> None:
    # A case here (against onnxruntime) or a conformance case the executor passes (against the
    # expected outputs onnx ships) covers the operator at the case's opset.
    # Random generators are checked by their moments instead.
    from tests.onnx.test_conformance import passing_node_opsets
    from tests.onnx.test_random_ops import COVERED as RANDOM

    covered = {(c.op, c.opset) for c in CASES} | passing_node_opsets() | RANDOM
    missing = [
        str(op.key) for op in REGISTRY
        if not any(op.key.op_type == name and op.key.covers(opset) for name, opset in covered)
    ]
    assert not missing, f"kernels without a test case: {missing}"
