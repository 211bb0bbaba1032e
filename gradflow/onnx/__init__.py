"""A differentiable ONNX executor: ONNX graphs run by torch operations as an nn.Module.

    >>> from gradflow.onnx import load_onnx_model
    >>> model = load_onnx_model("model.onnx")
    >>> y = model(x)
    >>> y.sum().backward()   # parameters (the ONNX weights) now have .grad
"""

from gradflow.onnx.model import InputSpec, OnnxModel, load_onnx_model

__all__ = ["InputSpec", "OnnxModel", "load_onnx_model"]
