"""Gates: parameters that scale a block's path, so that a block can start closed on purpose.

Many architectures start some blocks at the identity: the last BatchNorm's scale at 0
(zero-init residual), a skip gain or ReZero gate at 0, a layer scale at 1e-6. Such a block passes
(almost) nothing back at initialisation, like a dead one, but the gate's own gradient is not zero,
so the first optimizer step opens it. `gate_candidates` finds the parameters that multiply a
block's path in the autograd graph; `gradflow.engine.report` decides from their values and
gradients whether one of them holds the block closed (the junction is then `dormant`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from gradflow.engine import norms
from gradflow.engine.junctions import BLOCK, FoundJunction

_LEAF = torch._C._functions.AccumulateGrad  # the node type of a leaf tensor
_ALL = None

# Operations whose output is the path times a parameter, and the input slots such a parameter
# comes in by (None: any). A bias enters by a slot of its own and is not a scale: a block behind
# dead ReLUs whose output bias learns is dead, not gated.
SCALES: dict[str, tuple[int, ...] | None] = {
    "MulBackward0": _ALL,  # gain * f(x), layer scale, RMSNorm's weight
    "DivBackward0": (0,),
    "MmBackward0": _ALL,
    "BmmBackward0": _ALL,
    "MvBackward0": _ALL,
    "DotBackward0": _ALL,
    "AddmmBackward0": (1, 2),  # a Linear's weight; its bias is slot 0
    "AddbmmBackward0": (1, 2),
    "BaddbmmBackward0": (1, 2),
    "AddmvBackward0": (1, 2),
    "AddcmulBackward0": (1, 2),
    "LinearBackward0": (1,),
    "ConvolutionBackward0": (1,),  # a convolution's weight; its bias is slot 2
    "NativeBatchNormBackward0": (1,),  # a norm's scale; its shift is slot 2
    "CudnnBatchNormBackward0": (1,),
    "MiopenBatchNormBackward0": (1,),
    "NativeLayerNormBackward0": (1,),
    "NativeGroupNormBackward0": (1,),
}

# Operations that hand a parameter on unchanged in value: views, copies, casts (autocast).
VIEWS = frozenset({
    "ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0", "TBackward0",
    "TransposeBackward0", "PermuteBackward0", "ExpandBackward0", "UnsqueezeBackward0",
    "SqueezeBackward0", "SqueezeBackward1", "SqueezeBackward2", "SqueezeBackward3",
    "CloneBackward0", "ToCopyBackward0", "AliasBackward0", "ExpandAsBackward0",
})


def gate_candidates(junction: FoundJunction, index_of: dict[int, int]) -> list[int]:
    """Positions, in the list `index_of` numbers (id(parameter) -> position), of the trainable
    parameters that scale `junction`'s block path, in the block's node order."""
    found: list[int] = []
    for param in scaling_parameters(junction):
        position = index_of.get(id(param))
        if position is not None and position not in found:
            found.append(position)
    return found


def scaling_parameters(junction: FoundJunction) -> list[torch.Tensor]:
    """The leaf tensors that scale `junction`'s block path, in the block's node order."""
    if junction.scales is not None:  # replayed: found when it was first searched
        return list(junction.scales)
    found: list[torch.Tensor] = []
    for node in junction.nodes[BLOCK]:
        slots = SCALES.get(type(node).__name__, ())
        edges = node.next_functions
        for slot in range(len(edges)) if slots is _ALL else slots:
            if slot >= len(edges):
                continue
            param = _parameter_behind(edges[slot][0])
            if param is not None and all(param is not seen for seen in found):
                found.append(param)
    return found


def _parameter_behind(node: Any) -> torch.Tensor | None:
    """The leaf tensor `node` hands on through views and casts, if it is one."""
    while node is not None and type(node).__name__ in VIEWS:
        node = node.next_functions[0][0]
    if node is not None and type(node) is _LEAF:
        return node.variable  # type: ignore[no-any-return]
    return None


def largest_magnitudes(params: Sequence[torch.Tensor], device: torch.device) -> list[float]:
    """max |p| of each parameter, brought to the host in one transfer. A sharded parameter
    (a DTensor: every rank asks for the same ones, in the same order) is gathered first."""
    params = [p.full_tensor() if hasattr(p, "full_tensor") else p for p in params]
    full = [p for p in params if p.numel()]
    if not full:
        return [0.0] * len(params)
    taken = iter(norms.to_host([_magnitudes(full)], device))
    return [next(taken) if p.numel() else 0.0 for p in params]


def _magnitudes(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """max |t| of each non-empty tensor, as one float32 vector on their device: one `aminmax` pass
    per tensor, then one maximum over the stacked minima and maxima. (`abs().max()` makes a copy
    of each tensor, and on the CPU the batched infinity norm is slower still.)"""
    with torch.no_grad():
        pairs = [torch.aminmax(t.detach()) for t in tensors]
        low = torch.stack([pair.min.float() for pair in pairs])
        high = torch.stack([pair.max.float() for pair in pairs])
        return torch.maximum(high, -low)


# A gate at most this large in magnitude holds its block almost closed: the block's part of the
# fork's gradient is then too small for a captured junction's difference (`taps.Captured`).
SMALL_GATE = 1e-3
_GATE_SLOTS: dict[str, tuple[int, ...] | None] = {
    "MulBackward0": _ALL,  # a layer scale, a skip gain, a ReZero gate
    "NativeBatchNormBackward0": (1,),  # a zero-initialised last norm's scale
    "NativeLayerNormBackward0": (1,),
    "NativeGroupNormBackward0": (1,),
}


def nearly_closed(junctions: Sequence[FoundJunction], device: torch.device) -> list[bool]:
    """Per junction: whether a gate (a layer scale, a gain, a norm's scale) on its block path is
    at most SMALL_GATE in magnitude, from one batched reduction over all such gates. Only
    junctions with their block's nodes (searched, not replayed) are looked at; the others get
    False."""
    gates: list[torch.Tensor] = []
    owner: list[int] = []
    for k, junction in enumerate(junctions):
        seen: list[torch.Tensor] = []
        for node in junction.nodes[BLOCK]:
            name = type(node).__name__
            if name not in _GATE_SLOTS:
                continue
            slots = _GATE_SLOTS[name]
            edges = node.next_functions
            for slot in range(len(edges)) if slots is _ALL else slots:
                if slot < len(edges):
                    param = _parameter_behind(edges[slot][0])
                    if param is not None and param.numel() and all(param is not s for s in seen):
                        seen.append(param)
        gates += seen
        owner += [k] * len(seen)
    closed = [False] * len(junctions)
    if not gates:
        return closed
    for k, value in zip(owner, norms.to_host([_magnitudes(gates)], device)):
        if value <= SMALL_GATE:
            closed[k] = True
    return closed
