"""A graph attribute (an If branch, a Loop or Scan body) compiled into a callable.

A subgraph reads its formal inputs and, by name, tensors of the graphs around it. It is compiled
like a whole graph whose inputs are its formal inputs followed by those outer values; its
initializers are constants (a body's weights are not trainable parameters of the model), which
follow the device of the values it is called with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from gradflow.onnx.plan import Plan


class Subgraph:
    """Runs a compiled subgraph: `subgraph(*inputs, *outer)` returns the list of its outputs.

    `n_inputs` is the number of formal inputs; the outer values follow them, in the order of
    the node's `implicit` names.
    """

    def __init__(self, plan: Plan, n_inputs: int) -> None:
        self.n_inputs = n_inputs
        self._n_slots = plan.n_slots
        self._input_slots = plan.input_slots
        self._output_slots = plan.output_slots
        tensors: Mapping[str, Any] = {
            **{k: v[0] for k, v in plan.parameters.items()},
            **{k: v[0] for k, v in plan.buffers.items()},
        }
        self._state = tuple((slot, tensors[attr]) for slot, attr, _ in plan.state_slots)
        self._moved: dict[torch.device, tuple[tuple[int, torch.Tensor], ...]] = {}
        self._steps: tuple[tuple[Any, ...], ...] = tuple(
            (step.run, step.inputs, step.outputs if len(step.outputs) > 1 else step.outputs[0],
             len(step.outputs) > 1)
            for step in plan.steps
        )

    def __call__(self, *values: Any) -> list[Any]:
        env: list[Any] = [None] * self._n_slots
        for slot, value in zip(self._input_slots, values):
            env[slot] = value if isinstance(value, torch.Tensor) or value is None else torch.as_tensor(value)
        for slot, tensor in self._state_on(values):
            env[slot] = tensor
        out: Any
        for run, ins, out, multi in self._steps:
            if multi:
                for slot, value in zip(out, run(*[env[i] for i in ins])):
                    env[slot] = value
            else:
                env[out] = run(*[env[i] for i in ins])
        return [env[slot] for slot in self._output_slots]

    def _state_on(self, values: tuple[Any, ...]) -> tuple[tuple[int, torch.Tensor], ...]:
        """The constants, on the device of the first tensor among `values` (moved once)."""
        device = next((v.device for v in values if isinstance(v, torch.Tensor)), None)
        if device is None or all(t.device == device for _, t in self._state):
            return self._state
        if device not in self._moved:
            self._moved[device] = tuple((slot, t.to(device)) for slot, t in self._state)
        return self._moved[device]
