"""OnnxModel: an ONNX graph run by torch operations, as a differentiable nn.Module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from onnx import ModelProto

from gradflow.errors import ModelError, SourceError, first_line
from gradflow.onnx import ops as _ops  # noqa: F401  (registers the kernels)
from gradflow.onnx.dtypes import torch_dtype, type_name
from gradflow.onnx.graph import STANDARD_DOMAINS, Graph, build_graph
from gradflow.onnx.plan import build_plan
from gradflow.onnx.prepare import prepare_model
from gradflow.onnx.source import read_model


@dataclass(frozen=True)
class InputSpec:
    """A graph input the caller must provide.

    `shape` holds ints for fixed dims and strings for symbolic (their ONNX name) or unknown
    ("?") dims.
    """

    name: str
    shape: list[int | str]
    dtype: torch.dtype


class OnnxModel(torch.nn.Module):
    """An ONNX graph executed node by node with torch operations, so autograd sees every op.

    Trainable initializers (floating, not scalar) are `nn.Parameter`s; other initializers,
    Constant nodes and everything computable from them alone are buffers. Parameter and buffer
    names are the ONNX names with "." replaced (see `onnx_names`). Each add (an `Add`, or a
    two-input `Sum`) reports its result through `gradflow.engine.sites.record_add`, naming the
    exporter's module scope, or the node itself where the graph records none (see
    `gradflow.onnx.add_names`).

    The exported graph fixes train/eval behaviour (dropout, batch-norm statistics), so
    `train()` and `eval()` change nothing here; `exported_mode` says which it is: "train" when
    some node computes with training semantics (batch statistics, dropping), else "eval".

    Args:
        model: an ONNX ModelProto, with tensor data loaded.
        prepared: True when `model` already went through `prepare_model` (skips it).

    Raises:
        SourceError: the model is malformed (see `prepare_model`).
        UnsupportedOpError: it uses operators or features the executor lacks.

    Example:
        >>> model = load_onnx_model("resnet.onnx")
        >>> model.input_specs[0].shape
        ['batch', 3, 224, 224]
        >>> logits = model(torch.randn(2, 3, 224, 224))
    """

    def __init__(self, model: ModelProto, *, prepared: bool = False) -> None:
        super().__init__()
        if not prepared:
            model = prepare_model(model)
        graph = build_graph(model)
        plan = build_plan(model, graph)
        self.graph: Graph = graph
        self.opset: int = next(
            (o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), 0
        )
        self.input_specs: list[InputSpec] = _input_specs(model, graph)
        self.exported_mode: str = "train" if plan.training_nodes else "eval"
        self.onnx_names: dict[str, str] = {}
        for attr, (tensor, onnx_name) in plan.parameters.items():
            self.register_parameter(attr, tensor)  # type: ignore[arg-type]
            self.onnx_names[attr] = onnx_name
        for attr, (tensor, onnx_name, persistent) in plan.buffers.items():
            self.register_buffer(attr, tensor, persistent=persistent)
            self.onnx_names[attr] = onnx_name
        self._n_slots = plan.n_slots
        self._input_names = plan.input_names
        self._input_slots = plan.input_slots
        self._input_index = {name: i for i, name in enumerate(plan.input_names)}
        self._state_slots = plan.state_slots
        self._output_slots = plan.output_slots
        self._single_output = len(plan.output_slots) == 1
        self._probability_outputs = _softmax_outputs(model, graph)
        # (kernel, input slots, output slot or slots, several outputs?, label for errors)
        self._loop: tuple[tuple[Any, ...], ...] = tuple(
            (
                step.run,
                step.inputs,
                step.outputs if len(step.outputs) > 1 else step.outputs[0],
                len(step.outputs) > 1,
                f"'{step.name}' ({step.op_type})",
            )
            for step in plan.steps
        )

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Run the graph.

        Args:
            *args: graph inputs in graph order (see `input_specs`).
            **kwargs: graph inputs by name.

        Returns:
            The graph output, or a tuple of them when the graph has several.

        Raises:
            TypeError: inputs missing, unknown or given twice.
            ModelError: a node failed; the message names it.
        """
        env: list[Any] = [None] * self._n_slots
        self._bind(env, args, kwargs)
        params = self._parameters
        buffers = self._buffers
        for slot, attr, is_param in self._state_slots:
            env[slot] = params[attr] if is_param else buffers[attr]
        step: tuple[Any, ...] = ()
        try:
            for step in self._loop:
                run, ins, out, multi, _label = step
                if multi:
                    for slot, value in zip(out, run(*[env[i] for i in ins])):
                        env[slot] = value
                else:
                    env[out] = run(*[env[i] for i in ins])
        except Exception as e:
            raise ModelError(f"ONNX node {step[4]} failed: {first_line(e)}") from e
        if self._single_output:
            return env[self._output_slots[0]]  # type: ignore[no-any-return]
        return tuple(env[slot] for slot in self._output_slots)

    def holds_probabilities(self, output: Any, chosen: torch.Tensor) -> bool:
        """Whether `chosen`, a tensor of what `forward` returned (`output`), is a graph output
        that a Softmax over its last axis produced: probabilities, not scores. gradflow's probe
        then takes their negative log-likelihood instead of a cross-entropy."""
        outputs = output if isinstance(output, tuple) else (output,)
        return any(o is chosen and p for o, p in zip(outputs, self._probability_outputs))

    def _bind(self, env: list[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        names = self._input_names
        if len(args) > len(names):
            raise TypeError(f"the ONNX graph takes {len(names)} inputs ({', '.join(names)}), "
                            f"got {len(args)}")
        for slot, value in zip(self._input_slots, args):
            env[slot] = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
        for name, value in kwargs.items():
            index = self._input_index.get(name)
            if index is None:
                raise TypeError(f"the ONNX graph has no input '{name}' (inputs: {', '.join(names)})")
            if index < len(args):
                raise TypeError(f"ONNX graph input '{name}' given twice")
            slot = self._input_slots[index]
            env[slot] = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
        if len(args) + len(kwargs) < len(names):
            given = set(names[: len(args)]) | set(kwargs)
            missing = [n for n in names if n not in given]
            raise TypeError(f"missing ONNX graph inputs: {', '.join(missing)}")

    def extra_repr(self) -> str:
        inputs = ", ".join(spec.name for spec in self.input_specs)
        return f"inputs=[{inputs}], nodes={len(self._loop)}, opset={self.opset}"


def load_onnx_model(path: str | Path) -> OnnxModel:
    """Load an ONNX file as a differentiable `OnnxModel`.

    Args:
        path: the .onnx file; external data must sit in its folder.

    Returns:
        The model, ready to run on CPU.

    Raises:
        SourceError: the file cannot be read, is not valid ONNX, or its external data is
            missing or outside its folder.
        UnsupportedOpError: the graph uses operators the executor lacks (all listed at once).

    Example:
        >>> model = load_onnx_model("model.onnx")
        >>> out = model(*[torch.zeros([d if isinstance(d, int) else 1 for d in s.shape],
        ...                           dtype=s.dtype) for s in model.input_specs])
    """
    return OnnxModel(read_model(path), prepared=True)


def _softmax_outputs(model: ModelProto, graph: Graph) -> tuple[bool, ...]:
    """Per graph output: whether a Softmax over its last axis produced it (through Identity)."""
    found = []
    for name in graph.outputs:
        index = graph.producer.get(name)
        while index is not None and graph.nodes[index].op_type == "Identity":
            index = graph.producer.get(graph.nodes[index].inputs[0])
        node = None if index is None else graph.nodes[index]
        if node is None or node.op_type != "Softmax" or node.domain not in STANDARD_DOMAINS:
            found.append(False)
            continue
        axis = next((a.i for a in model.graph.node[node.position].attribute if a.name == "axis"), -1)
        rank = len(graph.shapes.get(name, ())) or None
        found.append(axis == -1 or (rank is not None and axis == rank - 1))
    return tuple(found)


def _input_specs(model: ModelProto, graph: Graph) -> list[InputSpec]:
    infos = {info.name: info for info in model.graph.input}
    specs = []
    for name in graph.inputs:
        tensor_type = infos[name].type.tensor_type
        dtype = torch_dtype(tensor_type.elem_type)
        if dtype is None:
            raise SourceError(
                f"graph input '{name}' has element type {type_name(tensor_type.elem_type)}, "
                "which torch cannot hold; re-export the model with numeric inputs"
            )
        shape: list[int | str] = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in tensor_type.shape.dim
        ]
        specs.append(InputSpec(name, shape, dtype))
    return specs
