"""The module scope an exporter recorded for an ONNX node, as a dotted module path.

Three sources, best first:

* the dynamo exporter's `pkg.torch.onnx.name_scopes` metadata, a Python list literal such as
  `['', 'layer1', 'layer1.0', 'add']`: the root, then each enclosing module by its full dotted
  path, then the FX node itself;
* its older `namespace` metadata, `': Net/layer1: Sequential/layer1.0: Block/add: aten.add.Tensor'`;
* the legacy (TorchScript) exporter's node name, `/layer1/layer1.0/conv1/Conv`, whose parts are
  module names relative to the nearest enclosing non-container module (so children of a
  Sequential appear as `layer1.0`, not `0`).
"""

from __future__ import annotations

import ast

from onnx import NodeProto

_NAME_SCOPES = "pkg.torch.onnx.name_scopes"
_NAMESPACE = "namespace"


def module_scope(node: NodeProto) -> str | None:
    """The dotted path of the module that emitted `node` ("" for the root module).

    Args:
        node: an ONNX node.

    Returns:
        The module path, or None when the exporter recorded no scope.
    """
    meta = {prop.key: prop.value for prop in node.metadata_props}
    if _NAME_SCOPES in meta:
        scope = _from_name_scopes(meta[_NAME_SCOPES])
        if scope is not None:
            return scope
    if _NAMESPACE in meta:
        scope = _from_namespace(meta[_NAMESPACE])
        if scope is not None:
            return scope
    if node.name.startswith("/"):
        return _from_legacy_name(node.name)
    return None


def _from_name_scopes(text: str) -> str | None:
    try:
        scopes = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        return None
    # The last entry names the FX node, not a module.
    return scopes[-2] if len(scopes) >= 2 else ""


def _from_namespace(text: str) -> str | None:
    parts = [part.split(":", 1)[0].strip() for part in text.split("/")]
    if len(parts) < 2:
        return None
    return parts[-2]


def _from_legacy_name(name: str) -> str:
    parts = [p for p in name.split("/")[1:-1] if p]
    path = ""
    base = ""  # full path of the module the previous part was named relative to
    previous = ""
    for part in parts:
        if previous and part.startswith(previous + "."):
            # A container's child, named relative to the same module as the container.
            path = f"{base}.{part}" if base else part
        else:
            base = path
            path = f"{path}.{part}" if path else part
        previous = part
    return path
