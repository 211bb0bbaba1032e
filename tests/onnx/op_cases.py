"""The per-operator test table: one-node models with representative inputs and attributes.

Every registered kernel (operator and opset range) must be exercised by at least one case;
`test_ops.py` checks that and runs each case against onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

_rng = np.random.default_rng(1234)


def f32(*shape: int, low: float | None = None, high: float | None = None) -> np.ndarray:
    if low is not None and high is not None:
        return _rng.uniform(low, high, size=shape).astype(np.float32)
    return _rng.standard_normal(shape).astype(np.float32)


def i64(values: Any) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def b(values: Any) -> np.ndarray:
    return np.array(values, dtype=bool)


def scalar(value: float) -> np.ndarray:
    return np.array(value, dtype=np.float32)


@dataclass(frozen=True)
class OpCase:
    """One node: `op` at `opset`, with `inputs` (None = absent) and `attrs`. Inputs listed in
    `const` are initializers in the "const" variant; every input is a graph input in the
    "runtime" variant unless it is in `always_const`."""

    op: str
    inputs: tuple[np.ndarray | None, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    opset: int = 18
    n_outputs: int = 1
    const: tuple[int, ...] = ()
    always_const: tuple[int, ...] = ()
    label: str = ""

    @property
    def id(self) -> str:
        return f"{self.op}-{self.opset}{'-' + self.label if self.label else ''}"


def case(op: str, *inputs: np.ndarray | None, **kw: Any) -> OpCase:
    attrs = kw.pop("attrs", {})
    return OpCase(op, tuple(inputs), attrs, **kw)


def _unary_cases() -> list[OpCase]:
    domains = {
        "Sqrt": (0.1, 4.0), "Log": (0.1, 4.0), "Reciprocal": (0.5, 3.0),
        "Asin": (-0.9, 0.9), "Acos": (-0.9, 0.9), "Atanh": (-0.9, 0.9), "Acosh": (1.1, 4.0),
    }
    ops = ["Neg", "Abs", "Reciprocal", "Sqrt", "Exp", "Log", "Floor", "Ceil", "Round", "Sign",
           "Erf", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh",
           "Atanh", "Relu", "Sigmoid", "Tanh", "Softsign", "Softplus", "HardSwish"]
    cases = []
    for op in ops:
        low, high = domains.get(op, (-3.0, 3.0))
        x = f32(2, 3, 4, low=low, high=high)
        if op == "Round":
            x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.4, -0.6], dtype=np.float32)
        cases.append(case(op, x, opset=13 if op != "HardSwish" else 14))
    cases.append(case("Mish", f32(2, 5), opset=18))
    cases.append(case("Gelu", f32(2, 5), opset=20))
    cases.append(case("Gelu", f32(2, 5), opset=20, attrs={"approximate": "tanh"}, label="tanh"))
    cases.append(case("Abs", i64([-3, 0, 4]), opset=13, label="int"))
    cases.append(case("Neg", i64([-3, 0, 4]), opset=18, label="int"))
    return cases


def _binary_cases() -> list[OpCase]:
    cases = []
    for op in ("Add", "Sub", "Mul", "Div"):
        cases.append(case(op, f32(2, 3, 4), f32(4), opset=13, label="broadcast"))
        cases.append(case(op, f32(2, 3), scalar(0.7), const=(1,), label="scalar"))
        cases.append(case(op, scalar(1.3), f32(3, 2), const=(0,), label="scalar-first"))
    cases += [
        case("Add", f32(2, 3), np.array([0.25], dtype=np.float32), const=(1,), label="one"),
        case("Add", i64([[1, 2], [3, 4]]), i64([10, -20]), label="int"),
        case("Div", i64([7, -7, 9, -9]), i64([2, 2, -4, -4]), label="int"),
        case("Div", i64([7, -7, 9]), i64(3), const=(1,), label="int-scalar"),
        case("Pow", f32(2, 3, low=0.5, high=2.0), f32(2, 3, low=-2, high=2), opset=13),
        case("Pow", f32(2, 3), np.array(3.0, dtype=np.float32), const=(1,), label="cube"),
        case("Pow", f32(2, 3, low=0.5, high=2.0), i64(2), label="int-exponent"),
        case("Mod", i64([7, -7, 7, -7]), i64([3, 3, -3, -3]), opset=13),
        case("Mod", f32(2, 3) * 5, f32(2, 3, low=1, high=2), attrs={"fmod": 1}, label="fmod"),
        case("Sum", f32(2, 3), f32(3), f32(2, 1), opset=13),
        case("Mean", f32(2, 3), f32(3), f32(2, 3), opset=13),
        case("Max", f32(2, 3), f32(3), opset=13),
        case("Min", f32(2, 3), f32(2, 3), f32(1), opset=13),
        case("Max", f32(4), opset=13, label="single"),
    ]
    return cases


def _activation_cases() -> list[OpCase]:
    return [
        case("LeakyRelu", f32(3, 4), opset=13, attrs={"alpha": 0.1}),
        case("PRelu", f32(2, 3, 4, 4), f32(3, 1, 1), opset=13, const=(1,)),
        case("PRelu", f32(2, 5), f32(5), opset=16, label="vector"),
        case("Elu", f32(3, 4), opset=13, attrs={"alpha": 0.7}),
        case("Selu", f32(3, 4), opset=13),
        case("Selu", f32(3, 4), opset=13, attrs={"alpha": 1.5, "gamma": 2.0}, label="custom"),
        case("Celu", f32(3, 4), opset=13, attrs={"alpha": 1.5}),
        case("ThresholdedRelu", f32(3, 4), opset=13, attrs={"alpha": 0.5}),
        case("HardSigmoid", f32(3, 4) * 4, opset=13),
        case("HardSigmoid", f32(3, 4) * 4, opset=13, attrs={"alpha": 1 / 6}, label="torch"),
        case("Clip", f32(3, 4) * 3, scalar(-1.0), scalar(2.0), opset=13, const=(1, 2)),
        case("Clip", f32(3, 4) * 3, None, scalar(0.5), opset=13, const=(2,), label="max-only"),
        case("Clip", f32(3, 4) * 3, opset=13, label="unbounded"),
        case("Clip", i64([-5, 0, 3, 9]), i64(0), i64(6), opset=13, label="int"),
        case("Softmax", f32(2, 3, 4), opset=13, attrs={"axis": 1}),
        case("Softmax", f32(2, 3, 4), opset=13, label="default"),
        case("LogSoftmax", f32(2, 3, 4), opset=13, attrs={"axis": -1}),
    ]


def _logic_cases() -> list[OpCase]:
    x, y = f32(2, 3), f32(2, 3)
    y[0, 0] = x[0, 0]
    cases = [case(op, x, y, opset=13) for op in
             ("Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual")]
    cases += [case(op, b([[True, False], [True, True]]), b([False, True]), opset=13)
              for op in ("And", "Or", "Xor")]
    nan_inf = np.array([1.0, np.nan, np.inf, -np.inf, -2.0], dtype=np.float32)
    cases += [
        case("Equal", i64([1, 2, 3]), i64(2), const=(1,), label="int-scalar"),
        case("Not", b([True, False, True]), opset=13),
        case("IsNaN", nan_inf, opset=13),
        case("IsInf", nan_inf, opset=13),
        case("IsInf", nan_inf, opset=13, attrs={"detect_negative": 0}, label="positive"),
        case("IsInf", nan_inf, opset=13, attrs={"detect_positive": 0}, label="negative"),
        case("Where", b([[True, False, True], [False, False, True]]), f32(2, 3), f32(3), opset=13),
        case("Where", b([[True, False], [False, True]]), f32(2, 2),
             np.array(-np.inf, dtype=np.float32), const=(2,), label="scalar"),
    ]
    return cases


def _linalg_cases() -> list[OpCase]:
    return [
        case("MatMul", f32(3, 4), f32(4, 5), opset=13),
        case("MatMul", f32(2, 3, 4), f32(4, 5), opset=13, const=(1,), label="3d-weight"),
        case("MatMul", f32(2, 2, 3, 4), f32(2, 2, 4, 3), opset=13, label="batched"),
        case("Gemm", f32(3, 4), f32(5, 4), f32(5), opset=13, attrs={"transB": 1}, const=(1, 2),
             label="linear"),
        case("Gemm", f32(4, 3), f32(4, 5), f32(3, 5), opset=13,
             attrs={"transA": 1, "alpha": 0.5, "beta": 2.0}, label="general"),
        case("Gemm", f32(3, 4), f32(4, 5), opset=13, attrs={"alpha": 2.0}, label="no-c"),
        case("Gemm", f32(3, 4), f32(5, 4), f32(1, 5), opset=13, attrs={"transB": 1},
             label="row-bias"),
        case("Einsum", f32(2, 3, 4), f32(2, 4, 5), opset=13, attrs={"equation": "bij,bjk->bik"}),
        case("Einsum", f32(3, 4), opset=13, attrs={"equation": "ij -> ji"}, label="transpose"),
    ]


def _cast_cases() -> list[OpCase]:
    return [
        case("Identity", f32(2, 3), opset=13),
        case("Cast", f32(2, 3) * 4, opset=13, attrs={"to": 7}, label="to-int64"),
        case("Cast", i64([1, -2, 3]), opset=19, attrs={"to": 1}, label="to-float"),
        case("Cast", np.array([0.0, 1.5, -2.0], dtype=np.float32), opset=21, attrs={"to": 9},
             label="to-bool"),
        case("Cast", f32(2, 3), opset=13, attrs={"to": 1}, label="same"),
        case("Cast", f32(2, 3), opset=13, attrs={"to": 11}, label="to-double"),
        case("CastLike", i64([1, 2]), f32(1), opset=15),
    ]


def _conv_cases() -> list[OpCase]:
    return [
        case("Conv", f32(2, 4, 8, 8), f32(6, 2, 3, 3), f32(6), opset=13, const=(1, 2),
             attrs={"pads": [1, 1, 1, 1], "strides": [2, 1], "dilations": [1, 2], "group": 2}),
        case("Conv", f32(2, 3, 9), f32(4, 3, 3), opset=13, attrs={"pads": [2, 0]},
             label="1d-asymmetric"),
        case("Conv", f32(1, 3, 7, 6), f32(4, 3, 3, 2), opset=22,
             attrs={"auto_pad": "SAME_UPPER", "strides": [2, 2]}, label="same-upper"),
        case("Conv", f32(1, 3, 7, 6), f32(4, 3, 2, 2), opset=13,
             attrs={"auto_pad": "SAME_LOWER"}, label="same-lower"),
        case("Conv", f32(1, 2, 4, 5, 5), f32(3, 2, 2, 3, 3), opset=13, label="3d"),
        case("Conv", f32(2, 8, 6, 6), f32(8, 1, 3, 3), opset=13, const=(1,),
             attrs={"group": 8, "pads": [1, 1, 1, 1]}, label="depthwise"),
        case("ConvTranspose", f32(1, 4, 5, 5), f32(4, 3, 3, 3), f32(3), opset=13, const=(1, 2),
             attrs={"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
        case("ConvTranspose", f32(1, 2, 4, 4), f32(2, 2, 3, 3), opset=13,
             attrs={"strides": [2, 2], "pads": [0, 1, 1, 0]}, label="asymmetric"),
        case("ConvTranspose", f32(1, 2, 5), f32(2, 4, 3), opset=13,
             attrs={"group": 2, "strides": [3]}, label="1d-groups"),
    ]


def _pool_cases() -> list[OpCase]:
    x = f32(2, 3, 9, 9)
    return [
        case("MaxPool", x, opset=13, attrs={"kernel_shape": [3, 3], "strides": [2, 2],
                                            "pads": [1, 1, 1, 1]}),
        case("MaxPool", x, opset=13, attrs={"kernel_shape": [2, 2], "strides": [2, 2],
                                            "ceil_mode": 1}, label="ceil"),
        case("MaxPool", x, opset=13, attrs={"kernel_shape": [3, 3], "dilations": [2, 2]},
             label="dilated"),
        case("MaxPool", x, opset=13, attrs={"kernel_shape": [3, 3], "pads": [0, 1, 2, 1]},
             label="asymmetric"),
        case("MaxPool", x, opset=22, attrs={"kernel_shape": [2, 3], "strides": [2, 2],
                                            "auto_pad": "SAME_UPPER"}, label="same-upper"),
        case("MaxPool", f32(2, 3, 10), opset=13, attrs={"kernel_shape": [3]}, label="1d"),
        case("MaxPool", x, opset=13, n_outputs=2, attrs={"kernel_shape": [3, 3],
                                                         "strides": [2, 2]}, label="indices"),
        case("AveragePool", x, opset=13, attrs={"kernel_shape": [3, 3], "strides": [2, 2],
                                                "pads": [1, 1, 1, 1]}),
        case("AveragePool", x, opset=19, attrs={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                                                "count_include_pad": 1}, label="include-pad"),
        case("AveragePool", x, opset=13, attrs={"kernel_shape": [3, 3], "pads": [0, 1, 2, 2]},
             label="asymmetric"),
        case("AveragePool", x, opset=13, attrs={"kernel_shape": [3, 3], "pads": [0, 1, 2, 2],
                                                "count_include_pad": 1},
             label="asymmetric-include"),
        case("AveragePool", x, opset=13, attrs={"kernel_shape": [2, 2], "strides": [2, 2],
                                                "ceil_mode": 1}, label="ceil"),
        case("GlobalAveragePool", x, opset=13),
        case("GlobalMaxPool", x, opset=13),
    ]


def _norm_cases() -> list[OpCase]:
    x = f32(4, 3, 5, 5)
    c = (f32(3), f32(3), f32(3), f32(3, low=0.5, high=2.0))
    return [
        case("BatchNormalization", x, *c, opset=15, const=(1, 2, 3, 4)),
        case("BatchNormalization", x, *c, opset=15, const=(1, 2, 3, 4), n_outputs=3,
             attrs={"training_mode": 1, "momentum": 0.8}, label="training"),
        case("BatchNormalization", x, *c, opset=13, const=(1, 2, 3, 4)),
        case("BatchNormalization", x, *c, opset=13, const=(1, 2, 3, 4), n_outputs=5,
             label="training"),
        case("LayerNormalization", f32(2, 5, 8), f32(8), f32(8), opset=17, const=(1, 2)),
        case("LayerNormalization", f32(2, 3, 4), f32(3, 4), f32(4), opset=17, const=(1, 2),
             attrs={"axis": 1, "epsilon": 1e-3}, n_outputs=3, label="axis1-stats"),
        case("LayerNormalization", f32(2, 5, 8), f32(8), opset=17, label="no-bias"),
        case("InstanceNormalization", x, f32(3), f32(3), opset=13, const=(1, 2)),
        case("GroupNormalization", f32(2, 6, 4, 4), f32(6), f32(6), opset=21,
             attrs={"num_groups": 3}, const=(1, 2)),
        case("RMSNormalization", f32(2, 5, 8), f32(8), opset=23, const=(1,)),
        case("RMSNormalization", f32(2, 3, 4), f32(4), opset=23, attrs={"axis": 1},
             label="axis1"),
    ]


def _attention_cases() -> list[OpCase]:
    q, k, v = f32(2, 4, 5, 8), f32(2, 4, 7, 8), f32(2, 4, 7, 6)
    mask_bool = _rng.random((5, 7)) > 0.3
    mask_bool[:, 0] = True
    square_mask = _rng.random((6, 6)) > 0.3
    return [
        case("Attention", q, k, v, opset=23),
        case("Attention", f32(2, 4, 6, 8), f32(2, 4, 6, 8), f32(2, 4, 6, 8), opset=23,
             attrs={"is_causal": 1}, label="causal"),
        case("Attention", q, k, v, mask_bool, opset=23, label="bool-mask"),
        case("Attention", q, k, v, f32(5, 7), opset=23, attrs={"scale": 0.3},
             label="float-mask"),
        case("Attention", f32(2, 5, 32), f32(2, 7, 16), f32(2, 7, 16), opset=23,
             attrs={"q_num_heads": 4, "kv_num_heads": 2}, label="3d-gqa"),
        case("Attention", f32(2, 4, 3, 8), f32(2, 4, 3, 8), f32(2, 4, 3, 8), None,
             f32(2, 4, 4, 8), f32(2, 4, 4, 8), opset=23, n_outputs=3,
             attrs={"is_causal": 1}, label="past-causal"),
        case("Attention", q, k, v, opset=23, attrs={"softcap": 2.0}, label="softcap"),
        case("Attention", f32(2, 4, 6, 8), f32(2, 4, 6, 8), f32(2, 4, 6, 8), square_mask,
             opset=23, attrs={"is_causal": 1}, label="causal-mask"),
    ]


def _dropout_cases() -> list[OpCase]:
    return [
        case("Dropout", f32(3, 4), opset=13),
        case("Dropout", f32(3, 4), scalar(0.3), opset=13, const=(1,), n_outputs=2,
             label="mask"),
        case("Dropout", f32(3, 4), scalar(0.0), np.array(True), opset=13, const=(1, 2),
             n_outputs=2, label="training-zero"),
    ]


def _generator_cases() -> list[OpCase]:
    from onnx import numpy_helper

    return [
        case("Constant", opset=13, attrs={"value": numpy_helper.from_array(f32(2, 3))}),
        case("Constant", opset=13, attrs={"value_float": 2.5}, label="float"),
        case("Constant", opset=13, attrs={"value_ints": [1, 2, 3]}, label="ints"),
        case("ConstantOfShape", i64([2, 3]), opset=13,
             attrs={"value": numpy_helper.from_array(i64([7]))}),
        case("ConstantOfShape", i64([2, 1, 3]), opset=20, label="default-zero"),
        case("Range", i64(2), i64(11), i64(3), opset=13),
        case("Range", scalar(0.5), scalar(3.0), scalar(0.75), opset=13, label="float"),
    ]


def _shape_cases() -> list[OpCase]:
    x = f32(2, 3, 4)
    return [
        case("Shape", x, opset=13),
        case("Shape", x, opset=15, attrs={"start": 1, "end": -1}, label="slice"),
        case("Size", x, opset=13),
        case("Reshape", x, i64([0, -1]), opset=13, const=(1,)),
        case("Reshape", x, i64([4, 6]), opset=14, const=(1,), label="fixed"),
        case("Reshape", f32(0, 3), i64([3, 0]), opset=14, attrs={"allowzero": 1},
             always_const=(1,), label="allowzero"),
        case("Flatten", x, opset=13),
        case("Flatten", x, opset=13, attrs={"axis": 0}, label="axis0"),
        case("Flatten", x, opset=13, attrs={"axis": -1}, label="axis-1"),
        case("Squeeze", f32(2, 1, 3, 1), i64([1, -1]), opset=13, const=(1,)),
        case("Squeeze", f32(2, 1, 3, 1), opset=13, label="all"),
        case("Unsqueeze", x, i64([0, -1]), opset=13, const=(1,)),
        case("Unsqueeze", x, i64([1]), opset=13, const=(1,), label="one"),
        case("Transpose", x, opset=13, attrs={"perm": [2, 0, 1]}),
        case("Transpose", x, opset=13, label="reverse"),
        case("Transpose", x, opset=13, attrs={"perm": [0, 1, 2]}, label="identity"),
        case("Expand", f32(3, 1), i64([2, 1, 6]), opset=13, const=(1,)),
    ]


def _indexing_cases() -> list[OpCase]:
    data = f32(5, 4, 3)
    return [
        case("Gather", data, i64(2), opset=13, const=(1,), label="scalar"),
        case("Gather", data, i64([[0, -1], [2, 3]]), opset=13, attrs={"axis": 1}),
        case("Gather", f32(10, 4), i64([[1, 2, 9], [0, 0, 3]]), opset=13, const=(0,),
             label="embedding"),
        case("Gather", i64([4, 5, 6]), i64(-1), opset=13, const=(1,), label="shape"),
        case("GatherElements", f32(3, 4), i64([[0, -1, 2, 1], [3, 0, 0, 1]]), opset=13,
             attrs={"axis": 1}),
        case("GatherND", f32(3, 4, 5), i64([[0, 1], [2, -1]]), opset=13),
        case("GatherND", f32(2, 3, 4), i64([[1], [2]]), opset=13, attrs={"batch_dims": 1},
             label="batch"),
        case("Slice", f32(6, 7), i64([1, 0]), i64([5, 9223372036854775807]), i64([0, 1]),
             i64([2, 3]), opset=13, const=(1, 2, 3, 4)),
        case("Slice", f32(6, 7), i64([-1]), i64([-9223372036854775807]), i64([-1]), i64([-2]),
             opset=13, const=(1, 2, 3, 4), label="backwards"),
        case("Slice", f32(4, 5), i64([1]), i64([-1]), opset=13, const=(1, 2), label="short"),
        case("Trilu", f32(4, 5), opset=14),
        case("Trilu", f32(2, 4, 5), i64(-1), opset=14, attrs={"upper": 0}, const=(1,),
             label="lower"),
        case("ScatterND", f32(4, 3), i64([[1], [3]]), f32(2, 3), opset=13),
        case("ScatterND", f32(4, 3), i64([[1, 2], [3, 0]]), f32(2), opset=16,
             attrs={"reduction": "add"}, label="add"),
        case("ScatterElements", f32(3, 4), i64([[0, -1], [2, 1]]), f32(2, 2), opset=13,
             attrs={"axis": 1}),
        case("ScatterElements", f32(3, 4), i64([[0, 0], [2, 1]]), f32(2, 2), opset=16,
             attrs={"axis": 1, "reduction": "add"}, label="add"),
        case("ScatterElements", f32(3, 4), i64([[0, 3], [2, 1]]), f32(2, 2), opset=18,
             attrs={"axis": 1, "reduction": "max"}, label="max"),
        case("NonZero", b([[True, False, True], [False, True, True]]), opset=13),
    ]


def _joining_cases() -> list[OpCase]:
    return [
        case("Concat", f32(2, 3), f32(2, 1), f32(2, 4), opset=13, attrs={"axis": -1}),
        case("Split", f32(2, 6), i64([1, 5]), opset=13, n_outputs=2, attrs={"axis": 1},
             const=(1,)),
        case("Split", f32(6, 2), opset=13, n_outputs=3, label="equal"),
        case("Split", f32(2, 7), opset=18, n_outputs=3, attrs={"axis": 1, "num_outputs": 3},
             label="uneven"),
        case("Tile", f32(2, 3), i64([2, 1]), opset=13, const=(1,)),
        case("Pad", f32(2, 3, 4), i64([0, 1, 2, 0, 0, 1]), scalar(1.5), opset=13,
             const=(1, 2)),
        case("Pad", f32(1, 2, 4, 5), i64([0, 0, 2, 1, 0, 0, 1, 2]), opset=13,
             attrs={"mode": "reflect"}, const=(1,), label="reflect"),
        case("Pad", f32(1, 2, 4, 5), i64([0, 0, 1, 3, 0, 0, 2, 0]), opset=13,
             attrs={"mode": "edge"}, const=(1,), label="edge"),
        case("Pad", f32(1, 2, 4, 5), i64([1, 2, 0, 1]), None, i64([2, 3]), opset=19,
             attrs={"mode": "wrap"}, const=(1, 3), label="wrap-axes"),
        case("Pad", f32(3, 4), i64([-1, 1, 0, -2]), opset=18, const=(1,), label="crop"),
    ]


def _reduce_cases() -> list[OpCase]:
    x = f32(2, 3, 4, low=0.1, high=2.0)
    cases = []
    for op in ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
               "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"):
        cases.append(case(op, x, opset=13, attrs={"axes": [1, -1]}, label="attr"))
        cases.append(case(op, x, i64([0, 2]), opset=18, attrs={"keepdims": 0}, const=(1,)))
    cases += [
        case("ReduceMean", x, opset=13, label="all"),
        case("ReduceMean", x, opset=18, label="all"),
        case("ReduceMean", x, i64([]), opset=18, attrs={"noop_with_empty_axes": 1},
             always_const=(1,), label="noop"),
        case("ReduceSum", x, i64([-1]), opset=13, const=(1,)),
        case("ReduceSum", x, opset=13, attrs={"keepdims": 0}, label="all"),
        case("ArgMax", np.array([[1, 3, 3], [2, 2, 0]], dtype=np.float32), opset=13),
        case("ArgMax", np.array([[1, 3, 3], [2, 2, 0]], dtype=np.float32), opset=13,
             attrs={"axis": 1, "keepdims": 0, "select_last_index": 1}, label="last"),
        case("ArgMin", np.array([[1, 0, 0], [2, 2, 5]], dtype=np.float32), opset=13,
             attrs={"axis": -1}),
        case("CumSum", f32(3, 4), i64(1), opset=13, const=(1,)),
        case("CumSum", f32(3, 4), i64(0), opset=13, attrs={"exclusive": 1, "reverse": 1},
             label="exclusive-reverse"),
    ]
    return cases


def _newest_opset_cases() -> list[OpCase]:
    # The newest opset the installed onnx knows, for the operators exporters emit most.
    import onnx

    newest = onnx.defs.onnx_opset_version()
    cases = [
        case("Add", f32(2, 3), f32(3)),
        case("MatMul", f32(2, 3), f32(3, 4)),
        case("Reshape", f32(2, 3, 4), i64([0, -1]), const=(1,)),
        case("Conv", f32(1, 2, 5, 5), f32(3, 2, 3, 3), attrs={"pads": [1, 1, 1, 1]}),
        case("LayerNormalization", f32(2, 4), f32(4), f32(4), const=(1, 2)),
        case("Attention", f32(2, 4, 5, 8), f32(2, 4, 5, 8), f32(2, 4, 5, 8),
             attrs={"is_causal": 1}),
        case("Attention", f32(2, 4, 6, 8), f32(2, 4, 6, 8), f32(2, 4, 6, 8), label="window",
             attrs={"is_causal": 1, "left_window_size": 2, "right_window_size": 0}),
        case("Cast", f32(3), attrs={"to": 7}),
        case("Softmax", f32(2, 3)),
        case("Gelu", f32(4)),
        case("Split", f32(4, 2), attrs={"num_outputs": 2}, n_outputs=2),
        case("ReduceMean", f32(2, 3), i64([1]), const=(1,)),
        case("MaxPool", f32(1, 1, 5, 5), attrs={"kernel_shape": [2, 2]}),
        case("Shape", f32(2, 3)),
        case("Squeeze", f32(2, 1), i64([1]), const=(1,)),
        case("Where", b([True, False]), f32(2), f32(2)),
        case("Flatten", f32(2, 3, 4)),
        case("Pad", f32(2, 3), i64([1, 1, 1, 1]), const=(1,)),
        case("ConstantOfShape", i64([2, 3])),
        case("Range", i64(0), i64(5), i64(1)),
    ]
    return [OpCase(c.op, c.inputs, c.attrs, newest, c.n_outputs, c.const, c.always_const,
                   c.label or "newest") for c in cases]


def _imported_graph_cases() -> list[OpCase]:
    # Operators of graphs that other exporters and older model zoos emit, at configurations the
    # conformance cases leave out.
    image = f32(1, 3, 6, 8)
    seq = f32(5, 2, 3)  # [seq, batch, input]
    lengths = np.array([5, 3], dtype=np.int32)
    h0, c0 = f32(2, 2, 4), f32(2, 2, 4)
    return [
        case("Resize", image, None, np.array([1, 1, 2, 2], np.float32), opset=13,
             attrs={"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                    "nearest_mode": "floor"}, const=(2,), label="nearest-x2"),
        case("Resize", image, None, None, i64([1, 3, 9, 5]), opset=13,
             attrs={"mode": "linear", "coordinate_transformation_mode": "align_corners"},
             const=(3,), label="linear-align-corners"),
        case("Resize", image, None, np.array([1, 1, 0.5, 0.75], np.float32), opset=13,
             attrs={"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
             const=(2,), label="linear-down"),
        case("Resize", image, None, np.array([1, 1, 1.5, 2], np.float32), opset=13,
             attrs={"mode": "cubic"}, const=(2,), label="cubic"),
        case("Resize", image, None, None, i64([3, 4]), opset=18,
             attrs={"mode": "linear", "antialias": 1, "axes": [2, 3]}, const=(3,),
             label="antialias-axes"),
        case("LRN", f32(2, 6, 3, 3), opset=13, attrs={"size": 5, "alpha": 1e-3}),
        case("TopK", f32(3, 7), i64([3]), opset=13, n_outputs=2, const=(1,)),
        case("TopK", f32(3, 7), i64([2]), opset=13, n_outputs=2, const=(1,),
             attrs={"axis": 0, "largest": 0}, label="smallest"),
        case("RNN", seq, f32(2, 4, 3), f32(2, 4, 4), f32(2, 8), lengths, h0, opset=14,
             n_outputs=2, const=(1, 2, 3), attrs={"hidden_size": 4, "direction": "bidirectional",
                                                  "activations": ["Relu", "Tanh"]}),
        case("GRU", seq, f32(2, 12, 3), f32(2, 12, 4), f32(2, 24), lengths, h0, opset=14,
             n_outputs=2, const=(1, 2, 3), attrs={"hidden_size": 4, "direction": "bidirectional",
                                                  "linear_before_reset": 1, "clip": 1.5}),
        case("LSTM", seq, f32(2, 16, 3), f32(2, 16, 4), f32(2, 32), lengths, h0, c0, f32(2, 12),
             opset=14, n_outputs=3, const=(1, 2, 3, 7),
             attrs={"hidden_size": 4, "direction": "bidirectional"}, label="peepholes"),
        case("LSTM", seq, f32(1, 16, 3), f32(1, 16, 4), opset=14, n_outputs=3, const=(1, 2),
             attrs={"hidden_size": 4, "direction": "reverse", "input_forget": 1},
             label="reverse-coupled"),
        case("GridSample", image, f32(1, 4, 5, 2, low=-1.2, high=1.2), opset=16,
             attrs={"mode": "bilinear", "padding_mode": "zeros"}),
        case("GridSample", image, f32(1, 4, 5, 2, low=-1.2, high=1.2), opset=16,
             attrs={"mode": "bicubic", "padding_mode": "reflection", "align_corners": 1},
             label="bicubic"),
        case("GridSample", f32(1, 2, 3, 4, 5), f32(1, 2, 3, 4, 3, low=-1, high=1), opset=20,
             attrs={"mode": "linear", "padding_mode": "border"}, label="3d"),
        case("DepthToSpace", f32(1, 8, 2, 3), opset=13, attrs={"blocksize": 2, "mode": "CRD"}),
        case("SpaceToDepth", f32(1, 2, 4, 6), opset=13, attrs={"blocksize": 2}),
        case("RoiAlign", f32(2, 3, 8, 8), np.array([[0, 0, 5, 5], [1.5, 2, 7, 6.5]], np.float32),
             np.array([0, 1], np.int64), opset=13, const=(1, 2),
             attrs={"output_height": 3, "output_width": 2, "sampling_ratio": 2}),
        case("RoiAlign", f32(2, 3, 8, 8), np.array([[0, 0, 5, 5], [1.5, 2, 7, 6.5]], np.float32),
             np.array([0, 1], np.int64), opset=16, const=(1, 2),
             attrs={"output_height": 2, "output_width": 2, "mode": "max"}, label="max"),
        case("LpPool", f32(1, 2, 6, 6), opset=18,
             attrs={"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "p": 3}),
        case("AveragePool", f32(1, 2, 7, 7), opset=19,
             attrs={"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [1, 1, 2, 2]},
             label="dilated"),
        case("MaxUnpool", np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2),
             i64([[[[5, 2], [9, 15]]]]), opset=13, attrs={"kernel_shape": [2, 2],
                                                      "strides": [2, 2]}, const=(1,)),
        case("Hardmax", f32(3, 5), opset=13),
        case("LpNormalization", f32(3, 5), opset=13, attrs={"p": 1, "axis": 0}),
        case("MeanVarianceNormalization", f32(2, 3, 4, 4), opset=18, attrs={"axes": [2, 3]}),
        case("Shrink", f32(3, 4), opset=13, attrs={"lambd": 0.3, "bias": 0.1}),
        case("NegativeLogLikelihoodLoss", f32(4, 5, 3), i64([[0, 1, 4], [2, 2, -1], [3, 0, 1],
                                                            [4, -1, 2]]), f32(5), opset=13,
             attrs={"ignore_index": -1}),
        case("SoftmaxCrossEntropyLoss", f32(4, 5), i64([0, 2, 4, 1]), opset=13, n_outputs=2,
             attrs={"reduction": "sum"}),
        case("OneHot", i64([[0, 3], [-1, 2]]), i64(4), np.array([0, 5], np.float32), opset=13,
             attrs={"axis": 1}, const=(1, 2)),
        case("Compress", f32(3, 4), b([True, False, True]), opset=13, attrs={"axis": 0}),
        case("ReverseSequence", f32(4, 3, 2), i64([4, 1, 3]), opset=13),
        case("EyeLike", f32(3, 5), opset=13, attrs={"k": 1}),
        case("Unique", np.array([3, 1, 3, 2, 1], np.float32), opset=13, n_outputs=4,
             attrs={"sorted": 0}),
        case("CumProd", f32(2, 4), i64(1), opset=26, const=(1,)),
        case("NonMaxSuppression", np.array([[[0, 0, 1, 1], [0, 0.1, 1, 1.1], [0, 2, 1, 3]]],
                                           np.float32),
             np.array([[[0.9, 0.8, 0.7]]], np.float32), i64([2]), np.array([0.5], np.float32),
             opset=13, const=(2, 3)),
        case("Col2Im", f32(1, 4, 6), i64([3, 4]), i64([2, 2]), opset=18, const=(1, 2)),
        case("CenterCropPad", f32(4, 5), i64([3, 7]), opset=18, const=(1,)),
        case("GlobalLpPool", f32(2, 3, 4, 5), opset=13, attrs={"p": 3}),
        case("MaxRoiPool", f32(2, 3, 8, 10),
             np.array([[0, 1, 1, 6, 5], [1, 0.4, 2.6, 9.5, 7], [0, 8, 6, 12, 9]], np.float32),
             opset=13, attrs={"pooled_shape": [2, 3], "spatial_scale": 1.0}, const=(1,)),
    ]


def all_cases() -> list[OpCase]:
    return (
        _unary_cases() + _binary_cases() + _activation_cases() + _logic_cases()
        + _linalg_cases() + _cast_cases() + _conv_cases() + _pool_cases() + _norm_cases()
        + _attention_cases() + _dropout_cases() + _generator_cases() + _shape_cases()
        + _indexing_cases() + _joining_cases() + _reduce_cases() + _newest_opset_cases()
        + _imported_graph_cases()
    )
