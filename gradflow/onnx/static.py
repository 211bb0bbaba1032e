"""Residual junctions found in an ONNX graph itself, without running it.

A junction is an add (an `Add`, or a `Sum` of two inputs) whose two inputs both depend on one
floating-point tensor, the fork, where the longer branch from the fork (the block) consumes at
least one trainable initializer. The other branch is the skip: "identity" when the add reads the
fork itself, else "projection".

Shape-only dependencies do not count: a value computed from `Shape(x)` does not depend on x's
data. So positional embeddings sliced to the input's length, masks built from sequence lengths,
bias adds, GELU's `x + 0.044715 * x^3` (no trainable weight in the block) and sums of embeddings
looked up by the same integer ids (an integer fork) are not junctions.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from onnx import ModelProto

from gradflow.choices import Choice
from gradflow.onnx.add_names import add_names, is_add
from gradflow.onnx.dtypes import FLOATING_TYPES
from gradflow.onnx.graph import Graph, Node, build_graph

if TYPE_CHECKING:
    from gradflow.onnx.model import OnnxModel

# (op_type, input position) edges that carry only shape or type information.
_SHAPE_ONLY_INPUTS = {("CastLike", 1)}
_SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})

_A, _B, _BOTH = 1, 2, 3


class SkipKind(Choice):
    """What the skip branch of a junction does to the fork tensor."""

    IDENTITY = "identity"
    PROJECTION = "projection"


@dataclass(frozen=True)
class StaticJunction:
    """A residual junction found in the ONNX graph.

    `name` is the add node; `module` the exporter's module scope for it (the shortened node name
    when it recorded none, see `gradflow.onnx.add_names`); `fork` the tensor both branches start
    from; `block_nodes` and `skip_nodes` the nodes on each branch, in topological order;
    `params` the number of elements of the trainable initializers the block consumes.
    """

    name: str
    module: str
    fork: str
    skip: SkipKind
    block_nodes: tuple[str, ...]
    skip_nodes: tuple[str, ...]
    params: int


def static_junctions(model: ModelProto | OnnxModel | str | Path) -> list[StaticJunction]:
    """Find the residual junctions of an ONNX graph without running it.

    Args:
        model: a ModelProto, a loaded `OnnxModel`, or the path of an .onnx file (read without
            its external data, which is not needed).

    Returns:
        The junctions, in topological order of their Add nodes.

    Raises:
        SourceError: the model is malformed (see `prepare_model`).

    Example:
        >>> for j in static_junctions("resnet18.onnx"):
        ...     print(j.module, j.skip, j.params)
        layer1.0 identity 73728
    """
    return _Finder(_graph_of(model)).junctions()


def _graph_of(model: ModelProto | OnnxModel | str | Path) -> Graph:
    if isinstance(model, (str, Path)):
        from gradflow.onnx.source import read_model

        return build_graph(read_model(model, load_data=False))
    if isinstance(model, ModelProto):
        from gradflow.onnx.prepare import prepare_model

        return build_graph(prepare_model(model))
    return model.graph


class _Finder:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes = graph.nodes
        self.inputs = {name: k for k, name in enumerate(graph.inputs)}
        self.weights = _static_weights(graph)
        self.names = add_names(graph)

    def junctions(self) -> list[StaticJunction]:
        found = []
        for node in self.nodes:
            if is_add(node) and len(node.inputs) == 2:
                junction = self._junction(node)
                if junction is not None:
                    found.append(junction)
        return found

    def _key(self, tensor: str) -> tuple[int, int] | None:
        # Heap order: topological position of the producer (graph inputs come first).
        # None for tensors that are not data: initializers and weight-only subgraphs.
        if tensor in self.weights:
            return None
        index = self.graph.producer.get(tensor)
        if index is not None:
            return (index, self.nodes[index].outputs.index(tensor))
        if tensor in self.inputs:
            return (-1 - len(self.inputs) + self.inputs[tensor], 0)
        return None

    def _fork(self, a: str, b: str) -> tuple[str, dict[str, int]] | None:
        """The latest tensor both `a` and `b` depend on, and the side marks of every tensor
        visited after it. Invariant: tensors leave the heap in decreasing topological order,
        so a tensor's mark is complete when it is popped, and the first tensor popped with
        both marks is the latest common ancestor."""
        marks: dict[str, int] = {}
        heap: list[tuple[tuple[int, int], str]] = []
        count = {_A: 0, _B: 0}

        def reach(tensor: str, side: int) -> None:
            key = self._key(tensor)
            if key is None:
                return
            old = marks.get(tensor, 0)
            if old & side:
                return
            marks[tensor] = old | side
            if old == 0:
                heapq.heappush(heap, ((-key[0], -key[1]), tensor))
            count[side] += 1

        reach(a, _A)
        reach(b, _B)
        while heap and count[_A] and count[_B]:
            _, tensor = heapq.heappop(heap)
            mark = marks[tensor]
            if mark == _BOTH:
                return tensor, marks
            count[mark] -= 1
            index = self.graph.producer.get(tensor)
            if index is None:
                continue
            node = self.nodes[index]
            if node.op_type in _SHAPE_ONLY_OPS:
                continue
            for pos, name in enumerate(node.inputs):
                if name and (node.op_type, pos) not in _SHAPE_ONLY_INPUTS:
                    reach(name, mark)
        return None

    def _junction(self, add: Node) -> StaticJunction | None:
        a, b = add.inputs
        if not a or not b or a == b:
            return None
        found = self._fork(a, b)
        if found is None:
            return None
        fork, marks = found
        elem = self.graph.elem_types.get(fork)
        if elem is not None and elem not in FLOATING_TYPES:
            return None
        sides, on_path = self._branches(fork, marks)
        weights = {side: self._params(nodes) for side, nodes in sides.items()}
        # The block is the longer branch; on a tie, the one with more weights.
        block_side = max(
            (_A, _B), key=lambda s: (len(sides[s]), sum(weights[s].values()), s == _A)
        )
        skip_side = _B if block_side == _A else _A
        if not weights[block_side] or not self._enters_alone(fork, sides[block_side], on_path):
            return None
        skip_input = b if block_side == _A else a
        return StaticJunction(
            name=add.name,
            module=self.names[add.name],
            fork=fork,
            skip=SkipKind.IDENTITY if skip_input == fork else SkipKind.PROJECTION,
            block_nodes=tuple(self.nodes[i].name for i in sides[block_side]),
            skip_nodes=tuple(self.nodes[i].name for i in sides[skip_side]),
            params=sum(weights[block_side].values()),
        )

    def _enters_alone(self, fork: str, block: list[int], on_path: set[str]) -> bool:
        # In a residual block the fork enters alone: the nodes reading it combine it only with
        # weights, constants, integer (shape) values or the fork's own descendants. A fork
        # that is merged into another float stream (an attention mask or position bias reused
        # by later layers) does not start a block.
        for index in block:
            node = self.nodes[index]
            if fork not in node.inputs:
                continue
            for name in node.inputs:
                if not name or name in on_path or name in self.weights:
                    continue
                if self.graph.elem_types.get(name) in FLOATING_TYPES:
                    return False
        return True

    def _branches(
        self, fork: str, marks: Mapping[str, int]
    ) -> tuple[dict[int, list[int]], set[str]]:
        # The nodes on a path from the fork to each Add input, by side. Nodes reached only
        # through side inputs (masks, other graph inputs) are visited but not on a path.
        fork_index = self.graph.producer.get(fork, -1)
        visited: dict[int, int] = {}
        for tensor, mark in marks.items():
            index = self.graph.producer.get(tensor)
            if index is not None and index > fork_index and mark != _BOTH:
                visited[index] = visited.get(index, 0) | mark
        on_path: set[str] = {fork}
        sides: dict[int, list[int]] = {_A: [], _B: []}
        for index in sorted(visited):
            node = self.nodes[index]
            if node.op_type in _SHAPE_ONLY_OPS:
                continue
            if any(
                name in on_path and (node.op_type, pos) not in _SHAPE_ONLY_INPUTS
                for pos, name in enumerate(node.inputs)
            ):
                on_path.update(o for o in node.outputs if o)
                for side in (_A, _B):
                    if visited[index] & side:
                        sides[side].append(index)
        return sides, on_path

    def _params(self, indices: list[int]) -> dict[str, int]:
        params: dict[str, int] = {}
        for index in indices:
            for name in self.nodes[index].inputs:
                params.update(self.weights.get(name, {}))
        return params


def _static_weights(graph: Graph) -> dict[str, dict[str, int]]:
    """Tensors computed from initializers and constants alone, each with the trainable
    initializers (name -> element count) it is computed from."""
    weights: dict[str, dict[str, int]] = {
        name: ({name: meta.numel} if name in graph.trainable else {})
        for name, meta in graph.initializers.items()
    }
    for node in graph.nodes:
        present = [name for name in node.inputs if name]
        if node.op_type in ("RandomNormal", "RandomUniform") or not all(
            name in weights for name in present
        ):
            continue
        merged: dict[str, int] = {}
        for name in present:
            merged.update(weights[name])
        for out in node.outputs:
            if out:
                weights[out] = merged
    return weights
