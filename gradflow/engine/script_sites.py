"""Where each add of a TorchScript module ran, read from its compiled graphs.

A scripted module runs inside the TorchScript interpreter, where neither module hooks nor
TorchFunctionMode see anything. Its graphs still say, module by module, which adds run and from
which source line. Walking them in call order gives the adds in execution order; the caller
matches them one to one with the adds of the autograd graph, and only when the counts agree.
Control flow that could skip or repeat an add or a submodule call makes the order uncertain:
then nothing is returned and junctions keep positional names.
"""

from __future__ import annotations

import os
import re
from typing import Any

from gradflow.engine.sites import AddSite

_ADDS = ("aten::add", "aten::add_")
_SOURCE = re.compile(r'File "([^"]+)", line (\d+)|^\s*(\S+?)\((\d+)\):')


def script_add_sites(module: Any) -> list[AddSite] | None:
    """AddSites of every tensor + tensor add `module` runs, in execution order, or None."""
    sites: list[AddSite] = []
    try:
        ok = _walk(module, "", module.graph, sites)
    except (AttributeError, RuntimeError):
        return None
    return sites if ok else None


def _walk(module: Any, path: str, graph: Any, sites: list[AddSite]) -> bool:
    for node in graph.nodes():
        kind = node.kind()
        if kind in ("prim::If", "prim::Loop"):
            if any(_runs_adds(block) for block in node.blocks()):
                return False
        elif kind in _ADDS and _tensor_operands(node):
            sites.append(AddSite(path, _location(node)))
        elif kind == "prim::CallMethod":
            names = _attribute_path(node.inputsAt(0))
            if names is None:
                return False
            child = module
            for name in names:
                child = getattr(child, name)
            child_path = ".".join(p for p in (path, *names) if p)
            if not _walk(child, child_path, getattr(child, node.s("name")).graph, sites):
                return False
        # prim::CallFunction (compiled torch.nn.functional helpers) is not followed: an add in
        # one would make the counts disagree, and the caller then keeps positional names.
    return True


def _runs_adds(block: Any) -> bool:
    for node in block.nodes():
        if (node.kind() in _ADDS and _tensor_operands(node)) or node.kind() == "prim::CallMethod":
            return True
        if any(_runs_adds(inner) for inner in node.blocks()):
            return True
    return False


def _tensor_operands(node: Any) -> bool:
    inputs = list(node.inputs())
    return len(inputs) >= 2 and all(i.type().kind() == "TensorType" for i in inputs[:2])


def _attribute_path(value: Any) -> list[str] | None:
    """['layer1', '0'] for a value produced by GetAttr chains starting at self."""
    names: list[str] = []
    node = value.node()
    while node.kind() == "prim::GetAttr":
        names.append(node.s("name"))
        node = node.inputsAt(0).node()
    if node.kind() != "prim::Param":
        return None
    return names[::-1]


def _location(node: Any) -> str | None:
    text = node.sourceRange() or ""
    for line in text.splitlines():
        match = _SOURCE.search(line)
        if match:
            filename = match.group(1) or match.group(3)
            lineno = match.group(2) or match.group(4)
            shown = os.path.relpath(filename) if os.path.isabs(filename) else filename
            return f"{filename if shown.startswith('..') else shown}:{lineno}"
    return None
