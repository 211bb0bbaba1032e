"""The ONNX backend conformance cases (the node tests the onnx package generates in memory), what is
out of scope for gradflow's executor, and how a case's outputs are compared with the expected ones.

Out of scope, and nothing else (every other case must pass):
  * bit operations (the Bitwise* operators, BitShift, BitCast);
  * quantized operators, and the sub-byte and 8-bit float element types (int4/uint4, int2/uint2,
    float4, float8) that only quantized graphs carry;
  * strings, sequences and optionals (operators and values);
  * training-only operators (the ai.onnx.preview.training domain) and classical machine learning
    (the ai.onnx.ml domain);
  * image and audio decoders.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import ml_dtypes
import numpy as np
import onnx
import torch
from onnx import AttributeProto, GraphProto, TensorProto, TypeProto

# group -> why gradflow does not need it
OUT_OF_SCOPE: dict[str, str] = {
    "bit operations": "integer bit manipulation carries no gradient",
    "quantized": "quantized kernels and 4/2-bit and float8 types: gradients are measured in float",
    "strings, sequences, optionals": "not tensors: no gradient flows through them",
    "training-only and ai.onnx.ml": "optimizer steps and classical ML models, not network layers",
    "decoders": "image and audio decoding happens before a network runs",
}

_OPS: dict[str, frozenset[str]] = {
    "bit operations": frozenset(
        {"BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot", "BitCast"}
    ),
    "quantized": frozenset(
        {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
         "QLinearMatMul", "ConvInteger", "MatMulInteger"}
    ),
    "strings, sequences, optionals": frozenset(
        {"StringConcat", "StringNormalizer", "StringSplit", "RegexFullMatch", "SequenceAt",
         "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength",
         "SequenceMap", "SplitToSequence", "ConcatFromSequence", "Optional", "OptionalGetElement",
         "OptionalHasElement"}
    ),
    "decoders": frozenset({"ImageDecoder"}),
}
_DOMAINS = {"ai.onnx.ml": "training-only and ai.onnx.ml",
            "ai.onnx.preview.training": "training-only and ai.onnx.ml"}
_LOW_BIT_TYPES = frozenset(
    {TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2,
     TensorProto.FLOAT8E5M2FNUZ, TensorProto.FLOAT8E8M0, TensorProto.INT4, TensorProto.UINT4,
     TensorProto.FLOAT4E2M1, TensorProto.INT2, TensorProto.UINT2}
)

# Operators whose outputs are random: checked by shape, dtype and moments, not by value.
RANDOM_OPS = frozenset({"Bernoulli", "Dropout", "RandomNormal", "RandomNormalLike",
                        "RandomUniform", "RandomUniformLike", "Multinomial"})


@dataclass(frozen=True)
class Case:
    """One conformance case: its name, the operator it tests, the model and one data set."""

    name: str
    op: str
    model: onnx.ModelProto
    inputs: tuple[Any, ...]
    outputs: tuple[Any, ...]
    rtol: float
    atol: float

    @property
    def random(self) -> bool:
        """Whether the case's expected outputs came from a random generator."""
        return any(n.op_type in RANDOM_OPS for n in self.model.graph.node) and (
            self.op != "Dropout" or "training" in self.name
        )


@cache
def all_cases() -> tuple[Case, ...]:
    """Every node conformance case of the installed onnx package, with the operator it tests
    (for an `_expanded` case, its function body's, the operator of the case it expands)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators' numpy casts warn about overflow
        collected = collect_testcases()
    ops = {c.name: c.model.graph.node[0].op_type for c in collected if "_expanded" not in c.name}
    cases = []
    for c in collected:
        assert c.model is not None and c.data_sets
        op = ops.get(c.name) or ops.get(c.name.split("_expanded")[0], c.model.graph.node[0].op_type)
        inputs, outputs = c.data_sets[0]
        cases.append(Case(c.name, op, c.model, tuple(inputs), tuple(outputs), c.rtol, c.atol))
    return tuple(cases)


def out_of_scope(model: onnx.ModelProto) -> str | None:
    """The out-of-scope group a case's model belongs to, or None when it is in scope."""
    for opset in model.opset_import:
        if opset.domain in _DOMAINS:
            return _DOMAINS[opset.domain]
    for graph in _graphs(model.graph):
        for node in graph.node:
            if node.domain in _DOMAINS:
                return _DOMAINS[node.domain]
            for group, ops in _OPS.items():
                if node.op_type in ops:
                    return group
            for attr in node.attribute:
                if attr.name == "to" and attr.type == AttributeProto.INT:
                    group = _type_group(attr.i)
                    if group:
                        return group
        for info in [*graph.input, *graph.output, *graph.value_info]:
            group = _value_group(info.type)
            if group:
                return group
        for tensor in graph.initializer:
            group = _type_group(tensor.data_type)
            if group:
                return group
    return None


def _graphs(graph: GraphProto) -> Iterator[GraphProto]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def _value_group(value: TypeProto) -> str | None:
    kind = value.WhichOneof("value")
    if kind in ("sequence_type", "optional_type", "map_type"):
        return "strings, sequences, optionals"
    if kind == "tensor_type":
        return _type_group(value.tensor_type.elem_type)
    return None


def _type_group(elem_type: int) -> str | None:
    if elem_type in _LOW_BIT_TYPES:
        return "quantized"
    if elem_type == TensorProto.STRING:
        return "strings, sequences, optionals"
    return None


def to_torch(value: Any) -> torch.Tensor:
    """A case's input (numpy array or scalar, bfloat16 included, or TensorProto) as a tensor."""
    if isinstance(value, TensorProto):
        value = onnx.numpy_helper.to_array(value)
    array = np.asarray(value)
    if array.dtype == ml_dtypes.bfloat16:
        bits = np.array(array, copy=True).view(np.uint16).reshape(array.shape)
        return torch.from_numpy(bits).view(torch.bfloat16)
    return torch.from_numpy(np.array(array, copy=True))


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """An executor output as a numpy array of the same element type (bfloat16 included)."""
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.uint16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def run(case: Case, inputs: Sequence[torch.Tensor] | None = None) -> list[Any]:
    """The executor's outputs for `case` (on its data set, or on `inputs`)."""
    from gradflow.onnx import OnnxModel

    model = OnnxModel(case.model)
    names = [i.name for i in case.model.graph.input]
    values = [to_torch(v) for v in case.inputs] if inputs is None else list(inputs)
    with torch.no_grad():
        out = model(**dict(zip(names, values)))
    return list(out) if isinstance(out, tuple) else [out]


def assert_outputs_match(case: Case, got: Sequence[Any]) -> None:
    """Same number of outputs, each with the expected shape and element type, and values within
    the case's tolerances; bfloat16 and float16 to two of their units in the last place (the ONNX
    backend test runner allows bfloat16 that much; float16 gets the same, since the expected
    values round after every numpy step while torch rounds once, after computing a softmax or a
    product in float32)."""
    assert len(got) == len(case.outputs), f"{len(got)} outputs, expected {len(case.outputs)}"
    for i, (ours, expected) in enumerate(zip(got, case.outputs)):
        ref = np.asarray(
            onnx.numpy_helper.to_array(expected) if isinstance(expected, TensorProto) else expected
        )
        assert isinstance(ours, torch.Tensor), f"output {i}: {type(ours).__name__}, not a tensor"
        value = to_numpy(ours)
        assert value.shape == ref.shape, f"output {i}: shape {value.shape}, expected {ref.shape}"
        assert value.dtype == ref.dtype, f"output {i}: dtype {value.dtype}, expected {ref.dtype}"
        rtol = case.rtol
        if ref.dtype == ml_dtypes.bfloat16:
            rtol = max(rtol, 2**-6)
            value, ref = value.astype(np.float32), ref.astype(np.float32)
        elif ref.dtype == np.float16:
            rtol = max(rtol, 2**-9)
        np.testing.assert_allclose(value, ref, rtol=rtol, atol=case.atol, err_msg=f"output {i}")


def assert_random_outputs_plausible(case: Case, runs: int = 200) -> None:
    """A random operator's outputs over `runs` executions: the expected shapes and element types
    each time, and moments that match the distribution (within five standard errors)."""
    from gradflow.onnx import OnnxModel

    model = OnnxModel(case.model)
    names = [i.name for i in case.model.graph.input]
    inputs = [to_torch(v) for v in case.inputs]
    samples: list[list[torch.Tensor]] = []
    for _ in range(runs):
        with torch.no_grad():
            out = model(**dict(zip(names, inputs)))
        outs = list(out) if isinstance(out, tuple) else [out]
        for i, (ours, expected) in enumerate(zip(outs, case.outputs)):
            ref = np.asarray(expected)
            assert to_numpy(ours).shape == ref.shape, f"output {i}: shape {tuple(ours.shape)}"
            assert to_numpy(ours).dtype == ref.dtype, f"output {i}: dtype {ours.dtype}"
        samples.append(outs)
    if case.op == "Bernoulli":
        p = inputs[0].double()
        if "_expanded" in case.name:
            # The onnx package's function body for Bernoulli is Cast(Greater(RandomUniformLike(p),
            # p)), which draws 1 with probability 1 - p, not p as the operator specifies: the
            # expanded graph is checked for what it computes.
            p = 1 - p
        drawn = torch.stack([s[0].double() for s in samples])
        assert set(drawn.unique().tolist()) <= {0.0, 1.0}
        if any(a.name == "seed" for n in case.model.graph.node for a in n.attribute):
            # A seed repeats the draw every run: the moments are over the elements.
            assert (drawn == drawn[0]).all(), "a seeded Bernoulli gave different draws"
            spread = 5 * torch.sqrt((p * (1 - p)).sum()) / p.numel()
            assert (drawn[0].mean() - p.mean()).abs() <= spread, "Bernoulli mean differs from p"
        else:
            spread = 5 * torch.sqrt(p * (1 - p) / runs) + 1e-9
            assert ((drawn.mean(0) - p).abs() <= spread).all(), "Bernoulli means differ from p"
    elif case.op == "Dropout":
        x = inputs[0].double()
        ratio = float(inputs[1]) if len(inputs) > 1 else 0.5
        kept_total = 0.0
        for outs in samples:
            y = outs[0].double()
            kept = outs[1] if len(outs) > 1 else y != 0
            torch.testing.assert_close(y, torch.where(kept, x / (1 - ratio), 0.0))
            kept_total += kept.double().mean().item()
        share = kept_total / runs
        spread = 5 * (ratio * (1 - ratio) / (runs * x.numel())) ** 0.5
        assert abs(share - (1 - ratio)) <= spread, f"kept {share:.3f}, expected {1 - ratio}"
    else:
        raise AssertionError(f"no moment check for random operator {case.op}")
