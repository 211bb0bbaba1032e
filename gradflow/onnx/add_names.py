"""The names junctions take from the ONNX graph: where a residual add sits.

An add is an `Add` node or a `Sum` of two inputs (older exporters add residuals with `Sum`).
A graph exported from PyTorch names each add after the module scope the exporter recorded. A
graph from another toolchain records none: its adds are named after the node's name, or the
node's output tensor where the file gives the node no name, shortened so that a user can still
find them in the graph:

* a tensor's output index (`:0`) is dropped;
* a last path part that only repeats the operator (`conv2_block1_add/add`) is dropped;
* leading path parts all such names share (`StatefulPartitionedCall/resnet50/`) are dropped;
* what is left keeps its last 48 characters.
"""

from __future__ import annotations

import re

from gradflow.onnx.graph import STANDARD_DOMAINS, Graph, Node

MAX_LENGTH = 48
_OUTPUT_INDEX = re.compile(r":\d+$")


def is_add(node: Node) -> bool:
    """An Add node, or a Sum of two inputs."""
    if node.domain not in STANDARD_DOMAINS:
        return False
    return node.op_type == "Add" or (node.op_type == "Sum" and len(node.inputs) == 2)


def add_names(graph: Graph) -> dict[str, str]:
    """The name a junction at each add node of `graph` takes, keyed by node name.

    Args:
        graph: the graph's structure.

    Returns:
        node name -> the exporter's module scope for it, or, where it recorded none, the
        shortened node (or output tensor) name.

    Example:
        >>> add_names(graph)  # a tf2onnx ResNet-50
        {'StatefulPartitionedCall/resnet50/conv2_block1_add/add': 'conv2_block1_add', ...}
    """
    adds = [node for node in graph.nodes if is_add(node)]
    names = {node.name: node.module for node in adds if node.module is not None}
    unscoped = [node for node in adds if node.module is None]
    paths = [_path(node) for node in unscoped]
    shared = _shared_prefix(paths)
    for node, path in zip(unscoped, paths):
        names[node.name] = _shorten("/".join(path[shared:]))
    return names


def _path(node: Node) -> list[str]:
    text = node.name if node.named else next((o for o in node.outputs if o), node.name)
    parts = [p for p in _OUTPUT_INDEX.sub("", text).split("/") if p]
    if len(parts) > 1 and parts[-1].lower() == node.op_type.lower():
        parts.pop()
    return parts or [text]


def _shared_prefix(paths: list[list[str]]) -> int:
    """How many leading parts every path shares, leaving each at least one of its own (none for a
    single path, which has nothing to be told apart from)."""
    if len(paths) < 2:
        return 0
    shared = 0
    shortest = min(len(p) for p in paths)
    while shared < shortest - 1 and all(p[shared] == paths[0][shared] for p in paths):
        shared += 1
    return shared


def _shorten(name: str) -> str:
    return name if len(name) <= MAX_LENGTH else "..." + name[-(MAX_LENGTH - 3):]
