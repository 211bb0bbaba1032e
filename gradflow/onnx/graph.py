"""The structure of an ONNX graph: nodes in topological order and who produces each tensor.

Everything here is structural (names, edges, element types); no tensor data is read. Both the
executor and the static junction finder build on a `Graph`.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from onnx import AttributeProto, GraphProto, ModelProto, NodeProto

from gradflow.errors import SourceError
from gradflow.onnx.dtypes import FLOATING_TYPES
from gradflow.onnx.scopes import module_scope

STANDARD_DOMAINS = ("", "ai.onnx")

# Inputs that hold statistics rather than weights: an initializer seen only here is not trainable.
_STATISTICS_INPUTS = frozenset({("BatchNormalization", 3), ("BatchNormalization", 4)})


@dataclass(frozen=True)
class Node:
    """One ONNX node.

    `index` is its position in topological order, `position` its position in the file;
    `name` is unique and never empty (`named` is False where the file gave the node no name of
    its own, or a duplicate one, and `name` was made up); an empty string in `inputs`/`outputs` is an absent
    optional input/output; `implicit` are the tensors of this graph its subgraphs (If, Loop,
    Scan bodies) read by name; `module` is the exporter's module scope (None when it recorded
    none).
    """

    index: int
    position: int
    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    module: str | None
    implicit: tuple[str, ...] = ()
    named: bool = True

    @property
    def reads(self) -> tuple[str, ...]:
        """Every tensor the node depends on: its inputs, then its subgraphs' outer values."""
        return self.inputs + self.implicit


@dataclass(frozen=True)
class TensorMeta:
    """Element type (ONNX enum) and shape of an initializer."""

    elem_type: int
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class Graph:
    """A graph's structure.

    Invariants: `nodes[i].index == i`; every node input is a graph input, an initializer or the
    output of an earlier node; `producer` maps each node output to its node's index.
    """

    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    initializers: Mapping[str, TensorMeta]
    trainable: frozenset[str]
    elem_types: Mapping[str, int]
    shapes: Mapping[str, tuple[int | str | None, ...]]
    producer: Mapping[str, int]

    def live_nodes(self) -> list[Node]:
        """The nodes that the graph outputs depend on, in topological order."""
        needed = set(self.outputs)
        live = [False] * len(self.nodes)
        for node in reversed(self.nodes):
            if any(o in needed for o in node.outputs if o):
                live[node.index] = True
                needed.update(i for i in node.reads if i)
        return [n for n in self.nodes if live[n.index]]


def build_graph(model: ModelProto) -> Graph:
    """Index `model.graph`, ordering its nodes topologically.

    Args:
        model: a model whose graph has passed `topological_order` (see `prepare_model`).

    Returns:
        The graph structure.

    Raises:
        SourceError: the graph has a cycle or reads a tensor nothing provides.
    """
    graph = model.graph
    initializers = {
        t.name: TensorMeta(t.data_type, tuple(int(d) for d in t.dims)) for t in graph.initializer
    }
    inputs = tuple(i.name for i in graph.input if i.name not in initializers)
    order = topological_order(graph.node, set(inputs) | set(initializers))
    names = _unique_names(graph.node)
    nodes = tuple(
        Node(
            index=k,
            position=i,
            name=names[i],
            op_type=graph.node[i].op_type,
            domain=graph.node[i].domain,
            inputs=tuple(graph.node[i].input),
            outputs=tuple(graph.node[i].output),
            module=module_scope(graph.node[i]),
            implicit=outer_values(graph.node[i]),
            named=names[i] == graph.node[i].name,
        )
        for k, i in enumerate(order)
    )
    producer = {o: n.index for n in nodes for o in n.outputs if o}
    return Graph(
        nodes=nodes,
        inputs=inputs,
        outputs=tuple(o.name for o in graph.output),
        initializers=initializers,
        trainable=_trainable(nodes, initializers),
        elem_types=_elem_types(graph, initializers),
        shapes=_shapes(graph, initializers),
        producer=producer,
    )


def topological_order(nodes: Sequence[NodeProto], available: set[str]) -> list[int]:
    """Indices of `nodes` in an order where every node comes after the producers of its inputs.

    Args:
        nodes: the graph's nodes, in any order.
        available: tensors that exist before any node runs (graph inputs and initializers).

    Returns:
        A permutation of `range(len(nodes))`; stable for already-sorted graphs.

    Raises:
        SourceError: two nodes produce the same tensor, a node reads a tensor nothing provides,
            or the graph has a cycle.
    """
    producer: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for out in node.output:
            if not out:
                continue
            if out in producer or out in available:
                raise SourceError(
                    f"tensor '{out}' is produced twice (by node {_label(node)}); "
                    "the ONNX graph is malformed: re-export it"
                )
            producer[out] = i
    waiting = [0] * len(nodes)
    readers: list[list[int]] = [[] for _ in nodes]
    in_order = True
    for i, node in enumerate(nodes):
        for name in set(node.input) | set(outer_values(node)):
            if not name or name in available:
                continue
            if name not in producer:
                raise SourceError(
                    f"node {_label(node)} reads tensor '{name}' that no node, graph input or "
                    "initializer provides; the ONNX file is incomplete: re-export it"
                )
            waiting[i] += 1
            readers[producer[name]].append(i)
            in_order = in_order and producer[name] < i
    if in_order:
        return list(range(len(nodes)))
    # Kahn's algorithm, always taking the earliest ready node so the file's order is kept
    # wherever it is already valid.
    ready = [i for i in range(len(nodes)) if waiting[i] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for r in readers[i]:
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(ready, r)
    if len(order) != len(nodes):
        cycle = _find_cycle(nodes, producer, {i for i in range(len(nodes)) if waiting[i] > 0})
        raise SourceError(
            "the ONNX graph has a cycle (" + " -> ".join(_label(nodes[i]) for i in cycle) + "); "
            "ONNX graphs must be acyclic: re-export the model"
        )
    return order


def _find_cycle(nodes: Sequence[NodeProto], producer: dict[str, int], stuck: set[int]) -> list[int]:
    # Every stuck node has a stuck producer, so walking producers must revisit a node.
    start = min(stuck)
    seen: dict[int, int] = {}
    path: list[int] = []
    i = start
    while i not in seen:
        seen[i] = len(path)
        path.append(i)
        i = next(
            producer[name]
            for name in [*nodes[i].input, *outer_values(nodes[i])]
            if name in producer and producer[name] in stuck
        )
    return path[seen[i] :] + [i]


def subgraphs(node: NodeProto) -> list[tuple[str, GraphProto]]:
    """The node's graph-valued attributes (If branches, Loop and Scan bodies), by name."""
    found = []
    for attr in node.attribute:
        if attr.type == AttributeProto.GRAPH:
            found.append((attr.name, attr.g))
        elif attr.type == AttributeProto.GRAPHS:
            found += [(attr.name, g) for g in attr.graphs]
    return found


def outer_values(node: NodeProto) -> tuple[str, ...]:
    """The tensors a node's subgraphs read from the enclosing scope, in order of first use."""
    if not node.attribute:
        return ()
    found: dict[str, None] = {}
    for _, graph in subgraphs(node):
        for name in _free_names(graph):
            found[name] = None
    return tuple(found)


def _free_names(graph: GraphProto) -> list[str]:
    # Names a graph reads that it does not define itself (its inputs, initializers, outputs
    # of its nodes), including those its own subgraphs read from it or from further out.
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    defined |= {t.name for t in graph.sparse_initializer}
    free: dict[str, None] = {}
    for node in graph.node:
        for name in [*node.input, *outer_values(node)]:
            if name and name not in defined:
                free[name] = None
        defined.update(node.output)
    for out in graph.output:
        if out.name not in defined:
            free[out.name] = None
    return list(free)


def _label(node: NodeProto) -> str:
    return f"'{node.name}' ({node.op_type})" if node.name else f"({node.op_type})"


def _unique_names(nodes: Sequence[NodeProto]) -> list[str]:
    taken: set[str] = set()
    names: list[str] = []
    for i, node in enumerate(nodes):
        name = node.name
        if not name or name in taken:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
        taken.add(name)
        names.append(name)
    return names


def _trainable(nodes: Sequence[Node], initializers: Mapping[str, TensorMeta]) -> frozenset[str]:
    # Trainable: floating, not a scalar (exporters store constants such as GELU's 0.044715 as
    # rank-0 initializers), and read by some node in a weight role.
    candidates = {
        name
        for name, meta in initializers.items()
        if meta.elem_type in FLOATING_TYPES and len(meta.shape) > 0
    }
    trainable: set[str] = set()
    for node in nodes:
        for pos, name in enumerate(node.reads):  # a weight a subgraph reads counts too
            if name in candidates and (node.op_type, pos) not in _STATISTICS_INPUTS:
                trainable.add(name)
    return frozenset(trainable)


def _elem_types(graph: GraphProto, initializers: Mapping[str, TensorMeta]) -> dict[str, int]:
    types: dict[str, int] = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            types[info.name] = info.type.tensor_type.elem_type
    for name, meta in initializers.items():
        types[name] = meta.elem_type
    return types


def _shapes(
    graph: GraphProto, initializers: Mapping[str, TensorMeta]
) -> dict[str, tuple[int | str | None, ...]]:
    # Known dims are ints, symbolic ones their dim_param, unknown ones None.
    shapes: dict[str, tuple[int | str | None, ...]] = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = info.type.tensor_type
        if info.type.HasField("tensor_type") and tensor_type.HasField("shape"):
            shapes[info.name] = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in tensor_type.shape.dim
            )
    for name, meta in initializers.items():
        shapes[name] = meta.shape
    return shapes
