"""One walk over the model's module tree, shared by every step of a measurement.

The state guard, the forward recorder, the parameter list and the report each need the model's
modules or parameters. Walking a 2,000-module tree takes milliseconds, so a measurement walks it
once and hands this inventory around.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

COMPILED_NOTE = (
    "measured the eager module behind torch.compile: a compiled graph reaches autograd as one "
    "opaque node, with no adds inside to find"
)


def eager(model: torch.nn.Module) -> tuple[torch.nn.Module, tuple[str, ...]]:
    """The module `torch.compile` wraps (it shares the parameters), and a note saying so; any
    other model as it is. The compiled wrapper is never called, so nothing is compiled."""
    inner = getattr(model, "_orig_mod", None)
    if type(model).__name__ == "OptimizedModule" and isinstance(inner, torch.nn.Module):
        return inner, (COMPILED_NOTE,)
    return model, ()


@dataclass(frozen=True)
class Inventory:
    """`modules`: every (name, module) pair, a shared module under each of its names;
    `parameters`: (name, parameter) as `named_parameters()` gives them, each parameter once."""

    modules: tuple[tuple[str, torch.nn.Module], ...]
    parameters: tuple[tuple[str, torch.nn.Parameter], ...]
    unique_modules: tuple[torch.nn.Module, ...] = field(init=False)

    def __post_init__(self) -> None:
        seen: dict[int, torch.nn.Module] = {}
        for _, module in self.modules:
            seen.setdefault(id(module), module)
        object.__setattr__(self, "unique_modules", tuple(seen.values()))

    @classmethod
    def of(cls, model: torch.nn.Module) -> Inventory:
        """The modules as `named_modules(remove_duplicate=False)` lists them and the parameters
        as `named_parameters()` does, from one walk instead of two nested generators."""
        modules: list[tuple[str, torch.nn.Module]] = []
        parameters: list[tuple[str, torch.nn.Parameter]] = []
        seen: set[int] = set()
        stack: list[tuple[str, torch.nn.Module]] = [("", model)]
        while stack:
            prefix, module = stack.pop()
            modules.append((prefix, module))
            dot = prefix + "." if prefix else ""
            for name, param in module._parameters.items():
                if param is not None and id(param) not in seen:
                    seen.add(id(param))
                    parameters.append((dot + name, param))
            children = [(dot + name, child) for name, child in module._modules.items() if child is not None]
            stack.extend(reversed(children))
        return cls(tuple(modules), tuple(parameters))

    @cached_property
    def trainable(self) -> list[torch.Tensor]:
        """The parameters that require grad, in `named_parameters()` order."""
        return [p for _, p in self.parameters if p.requires_grad]

    @cached_property
    def parameter_names(self) -> dict[int, str]:
        """id(parameter) -> its dotted name."""
        return {id(p): name for name, p in self.parameters}

    def parameter_count(self) -> int:
        return sum(p.numel() for _, p in self.parameters)

    @cached_property
    def devices(self) -> list[torch.device]:
        """Where the model computes: its first parameter's device (see `device`), then every other
        device a parameter lives on, as in a model split across GPUs. The state guard forks these
        devices' generators and the probe seeds them: worked out once per measurement."""
        first = self.device()
        others = {p.device for _, p in self.parameters if not p.is_cpu} - {first}
        return [first, *sorted(others, key=str)]

    def device(self) -> torch.device:
        """Where the model lives: its first parameter's device, else its first buffer's, else cpu."""
        for _, param in self.parameters:
            return param.device
        for module in self.unique_modules:
            for buffer in module._buffers.values():
                if buffer is not None:
                    return buffer.device
        return torch.device("cpu")
