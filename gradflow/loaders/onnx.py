"""ONNX models (`.onnx`), run by gradflow's own executor in gradflow.onnx."""

from __future__ import annotations

from pathlib import Path

from gradflow.errors import GradflowError, SourceError
from gradflow.loaders._text import describe
from gradflow.loaders.base import LoadedModel, LoadOptions
from gradflow.loaders.registry import register


@register("onnx", form="ONNX model (.onnx)", extensions=(".onnx",))
def load_onnx(spec: str, options: LoadOptions) -> LoadedModel:
    """Build an nn.Module that executes the ONNX graph; its `input_specs` come along."""
    try:
        # gradflow.onnx is developed separately and may not provide this yet: hence the ignore.
        from gradflow.onnx import load_onnx_model  # type: ignore[attr-defined,unused-ignore]
    except ImportError as e:
        raise SourceError(
            "ONNX support is not available yet (gradflow.onnx provides no load_onnx_model); "
            "export the model with torch.export (.pt2) or TorchScript instead"
        ) from e
    try:
        module = load_onnx_model(str(Path(spec).expanduser()))
    except GradflowError:
        raise  # already one line that says what to do (e.g. UnsupportedOpError)
    except Exception as e:
        raise SourceError(f"cannot load ONNX model {spec}: {describe(e)}") from e
    specs = getattr(module, "input_specs", None)
    return LoadedModel(
        module=module,
        source=spec,
        format="onnx",
        input_specs=list(specs) if specs is not None else None,
    )
