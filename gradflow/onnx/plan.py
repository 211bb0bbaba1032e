"""Compiling a prepared ONNX model into an execution plan: tensors in slots, kernels in steps.

Everything that does not depend on the runtime inputs happens here, once: operator lookup,
attribute parsing, kernel specialisation, and evaluation of every deterministic node whose inputs
are all constants. What remains is a flat list of steps that `OnnxModel.forward` runs in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import onnx
import torch
from onnx import GraphProto, ModelProto, NodeProto, TypeProto

from gradflow.errors import SourceError, UnsupportedOpError, first_line
from gradflow.onnx.add_names import add_names
from gradflow.onnx.attributes import node_attributes, tensor_from_proto
from gradflow.onnx.context import NodeContext, ValueInfo
from gradflow.onnx.dtypes import torch_dtype
from gradflow.onnx.graph import STANDARD_DOMAINS, Graph, Node, build_graph, subgraphs
from gradflow.onnx.registry import PASSTHROUGH, REGISTRY, Kernel, NotSupported, OpDef
from gradflow.onnx.subgraph import Subgraph
from gradflow.onnx.widen import widen_unsigned

# Slot 0 always holds None (absent optional inputs read it); slot 1 receives unused outputs.
ABSENT = 0
TRASH = 1


@dataclass(frozen=True)
class Step:
    """One kernel call: reads `inputs` slots, writes `outputs` slots (TRASH for unused ones)."""

    run: Kernel
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    name: str
    op_type: str


@dataclass
class Plan:
    """An executable form of a graph.

    `parameters` and `buffers` map module attribute names to (tensor, ONNX tensor name);
    `state_slots` says which slot each of them fills at the start of a forward;
    `training_nodes` names the nodes that compute with training semantics.
    """

    n_slots: int
    input_names: tuple[str, ...]
    input_slots: tuple[int, ...]
    steps: tuple[Step, ...]
    output_slots: tuple[int, ...]
    parameters: dict[str, tuple[torch.Tensor, str]] = field(default_factory=dict)
    buffers: dict[str, tuple[torch.Tensor, str, bool]] = field(default_factory=dict)
    state_slots: tuple[tuple[int, str, bool], ...] = ()
    training_nodes: tuple[str, ...] = ()


def build_plan(model: ModelProto, graph: Graph) -> Plan:
    """Compile `model` (prepared, see `prepare_model`) whose structure is `graph`.

    Args:
        model: the prepared model, with tensor data loaded.
        graph: `build_graph(model)`.

    Returns:
        The plan.

    Raises:
        UnsupportedOpError: some live node has no registered kernel, or uses a feature its
            kernel lacks; the one-line message lists every such operator and node.
    """
    return _Planner(model, graph).build()


class _Planner:
    def __init__(self, model: ModelProto, graph: Graph) -> None:
        self.model = model
        self.graph = graph
        self.opsets = {
            ("" if o.domain in STANDARD_DOMAINS else o.domain): o.version for o in model.opset_import
        }
        self.live = graph.live_nodes()
        self.add_names = add_names(graph)
        self.used: dict[str, int] = {}  # tensor -> number of live readers
        for node in self.live:
            for name in node.reads:
                if name:
                    self.used[name] = self.used.get(name, 0) + 1
        for name in graph.outputs:
            self.used[name] = self.used.get(name, 0) + 1
        self.constants: dict[str, torch.Tensor] = {}
        self.initializer_names: set[str] = set()
        self.params: dict[str, torch.nn.Parameter] = {}
        self.alias: dict[str, str] = {}
        # Types of this graph's tensors, for the outer values its subgraphs read.
        self.types: dict[str, TypeProto] = {
            info.name: info.type
            for info in [*model.graph.input, *model.graph.value_info, *model.graph.output]
        }
        self.missing: dict[str, list[str]] = {}  # operator -> node names
        self.unsupported: list[str] = []  # "node (op): feature"
        self.training_nodes: list[str] = []

    def build(self) -> Plan:
        plan = self.compile()
        self._raise_if_unsupported()
        return plan

    def compile(self) -> Plan:
        """The plan, leaving what is unsupported in `missing` and `unsupported`."""
        opdefs = self._resolve_ops()
        self._load_initializers()
        pending: list[tuple[Kernel, Node]] = []
        for node in self.live:
            opdef = opdefs.get(node.index)
            if opdef is not None:
                self._compile_node(node, opdef, pending)
        return self._assign_slots(pending)

    def _resolve_ops(self) -> dict[int, OpDef]:
        opdefs: dict[int, OpDef] = {}
        for node in self.live:
            domain = "" if node.domain in STANDARD_DOMAINS else node.domain
            opset = self.opsets.get(domain)
            opdef = None if opset is None else REGISTRY.find(domain, node.op_type, opset)
            if opdef is None:
                label = f"{domain}.{node.op_type}" if domain else node.op_type
                if opset is not None:
                    label += f"-{opset}"
                self.missing.setdefault(label, []).append(node.name)
            else:
                opdefs[node.index] = opdef
        return opdefs

    def _load_initializers(self) -> None:
        for tensor in self.model.graph.initializer:
            if tensor.name not in self.used:
                continue
            try:
                value = tensor_from_proto(tensor)
            except NotSupported as e:
                self.unsupported.append(f"initializer '{tensor.name}': {e}")
                continue
            self.initializer_names.add(tensor.name)
            if tensor.name in self.graph.trainable:
                self.params[tensor.name] = torch.nn.Parameter(value)
            else:
                self.constants[tensor.name] = value

    def _compile_node(self, node: Node, opdef: OpDef, pending: list[tuple[Kernel, Node]]) -> None:
        proto = self.model.graph.node[node.position]
        inputs = tuple(self._resolve(name) for name in node.inputs)
        implicit = tuple(self._resolve(name) for name in node.implicit)
        compiled: dict[str, Subgraph] = {}
        for attr, graph in subgraphs(proto):
            subgraph = self._compile_subgraph(graph, node.implicit)
            if subgraph is not None:
                compiled[attr] = subgraph
        if len(compiled) < len(subgraphs(proto)):
            return  # what a subgraph lacks is listed with the rest
        try:
            ctx = self._context(node, proto, opdef, inputs, compiled)
            kernel = widen_unsigned(opdef.factory(ctx), ctx)
        except NotSupported as e:
            self.unsupported.append(f"{node.name} ({node.op_type}): {e}")
            return
        if opdef.trains is not None and opdef.trains(ctx):
            self.training_nodes.append(node.name)
        present = [name for name in inputs + implicit if name]
        if opdef.deterministic and all(name in self.constants for name in present):
            self._fold(node, kernel, inputs + implicit)
        elif kernel is PASSTHROUGH:
            self.alias[node.outputs[0]] = inputs[0]
        else:
            pending.append((kernel, node))

    def _fold(self, node: Node, kernel: Kernel, inputs: tuple[str, ...]) -> None:
        args = [self.constants[name] if name else None for name in inputs]
        try:
            with torch.no_grad():
                result = kernel(*args)
        except Exception as e:
            raise SourceError(
                f"node '{node.name}' ({node.op_type}) fails on its constant inputs "
                f"({first_line(e)}); the ONNX graph is inconsistent: re-export it"
            ) from e
        results = (result,) if len(node.outputs) == 1 else tuple(result)
        for name, value in zip(node.outputs, results):
            if name and isinstance(value, torch.Tensor):
                self.constants[name] = value

    def _compile_subgraph(self, graph: GraphProto, outer: tuple[str, ...]) -> Subgraph | None:
        """`graph` as a callable taking its inputs, then the values of `outer` (see Subgraph);
        None when it uses operators or features the executor lacks, which are then listed in
        this planner's `missing` and `unsupported`."""
        model = ModelProto()
        model.ir_version = self.model.ir_version
        model.opset_import.extend(self.model.opset_import)
        model.graph.CopyFrom(graph)
        for name in outer:
            info = model.graph.input.add()
            info.name = name
            if name in self.types:
                info.type.CopyFrom(self.types[name])
        structure = replace(build_graph(model), trainable=frozenset())
        planner = _Planner(model, structure)
        plan = planner.compile()
        if planner.missing or planner.unsupported:
            for op, nodes in planner.missing.items():
                self.missing.setdefault(op, []).extend(nodes)
            self.unsupported.extend(planner.unsupported)
            return None
        return Subgraph(plan, len(graph.input))

    def _context(
        self,
        node: Node,
        proto: NodeProto,
        opdef: OpDef,
        inputs: tuple[str, ...],
        compiled: dict[str, Subgraph],
    ) -> NodeContext:
        domain = opdef.key.domain
        opset = self.opsets[domain]
        schema = None
        try:
            schema = onnx.defs.get_schema(node.op_type, opset, domain)
        except onnx.defs.SchemaError:
            pass
        return NodeContext(
            name=node.name,
            op_type=node.op_type,
            domain=domain,
            opset=opset,
            module=self.add_names.get(
                node.name, node.module if node.module is not None else node.name
            ),
            attrs=node_attributes(proto, schema),
            inputs=tuple(self._value_info(name) for name in inputs),
            outputs=tuple(self._value_info(name, output=True) for name in node.outputs),
            subgraphs=compiled,
            implicit=node.implicit,
        )

    def _value_info(self, name: str, output: bool = False) -> ValueInfo:
        if not name:
            return ValueInfo(present=False, used=False)
        const = None if output else self.constants.get(name)
        if const is not None:
            return ValueInfo(present=True, const=const, dtype=const.dtype, rank=const.dim())
        elem = self.graph.elem_types.get(name)
        shape = self.graph.shapes.get(name)
        return ValueInfo(
            present=True,
            dtype=torch_dtype(elem) if elem else None,
            rank=len(shape) if shape is not None else None,
            used=name in self.used,
        )

    def _resolve(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def _raise_if_unsupported(self) -> None:
        if not self.missing and not self.unsupported:
            return
        parts = [
            f"{op} (nodes: {_names(nodes)})" for op, nodes in sorted(self.missing.items())
        ]
        if parts:
            message = "unsupported ONNX operators: " + "; ".join(parts)
        else:
            message = "unsupported ONNX operator features"
        if self.unsupported:
            message += "; unsupported features: " + "; ".join(self.unsupported)
        message += (
            ". The gradflow ONNX executor cannot run this graph: re-export without these "
            "operators, or report them to the gradflow developers"
        )
        raise UnsupportedOpError(message)

    def _assign_slots(self, pending: list[tuple[Kernel, Node]]) -> Plan:
        slots: dict[str, int] = {}
        n_slots = 2
        state: list[tuple[int, str, bool]] = []
        parameters: dict[str, tuple[torch.Tensor, str]] = {}
        buffers: dict[str, tuple[torch.Tensor, str, bool]] = {}
        names = _AttributeNames()

        def slot(name: str) -> int:
            nonlocal n_slots
            if not name:
                return ABSENT
            name = self._resolve(name)
            if name not in slots:
                slots[name] = n_slots
                n_slots += 1
                if name in self.params:
                    attr = names.take(name)
                    parameters[attr] = (self.params[name], name)
                    state.append((slots[name], attr, True))
                elif name in self.constants:
                    attr = names.take(name)
                    persistent = name in self.initializer_names
                    buffers[attr] = (self.constants[name], name, persistent)
                    state.append((slots[name], attr, False))
            return slots[name]

        input_slots = tuple(slot(name) for name in self.graph.inputs)
        steps = []
        for kernel, node in pending:
            ins = tuple(slot(name) for name in node.reads)
            outs = tuple(
                slot(name) if name and name in self.used else TRASH for name in node.outputs
            )
            steps.append(Step(kernel, ins, outs, node.name, node.op_type))
        output_slots = tuple(slot(name) for name in self.graph.outputs)
        return Plan(
            n_slots=n_slots,
            input_names=self.graph.inputs,
            input_slots=input_slots,
            steps=tuple(steps),
            output_slots=output_slots,
            parameters=parameters,
            buffers=buffers,
            state_slots=tuple(state),
            training_nodes=tuple(self.training_nodes),
        )


class _AttributeNames:
    """Unique nn.Module attribute names for ONNX tensor names ("." is not allowed in them)."""

    # OnnxModel's own attributes start with "_" or are listed here.
    _RESERVED = frozenset(dir(torch.nn.Module)) | {
        "training", "onnx_names", "input_specs", "graph", "exported_mode"
    }

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def take(self, onnx_name: str) -> str:
        base = onnx_name.replace(".", "_") or "tensor"
        if base.startswith("_"):
            base = "t" + base
        name = base
        k = 1
        while name in self.taken or name in self._RESERVED:
            name = f"{base}_{k}"
            k += 1
        self.taken.add(name)
        return name


def _names(nodes: Iterable[str], limit: int = 20) -> str:
    nodes = list(nodes)
    shown = ", ".join(nodes[:limit])
    return shown + (f", and {len(nodes) - limit} more" if len(nodes) > limit else "")
