"""What a block reads besides its fork and its parameters: the junction's context.

Most blocks read only the fork x and their own parameters. Some read more: a cross-attention
sub-layer reads the encoder's states, a block may read a tensor an earlier layer made (T5's
position bias). The gradient a block sends to those tensors is part of what it passes back. A
cross-attention block reaches the decoder stream only through its queries, weakly at
initialisation, while it passes gradient to the encoder side and its key and value projections
learn; a block behind dead ReLUs passes nothing back anywhere. `grad_context` (the norm of the
gradient the block sends to its context) tells the two apart (`gradflow.engine.report`).

The context edges of a junction are the edges from its block's nodes to tensors outside the
junction: a node made before the fork (the search never expanded it, see
`gradflow.engine.junctions`), another output of the fork's node, or a leaf that is not a trainable
parameter (a probe input). Edges into nodes both sides share lead to the fork, so they are not
context.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gradflow.engine.junctions import BLOCK, FoundJunction

_LEAF = torch._C._functions.AccumulateGrad  # the node type of a leaf tensor


@dataclass(frozen=True)
class ContextEdge:
    """The block node `consumer` sends gradient to the tensor `read` (an autograd node and its
    output number) as its grad_inputs[index]."""

    consumer: Any
    index: int
    read: tuple[Any, int]


def context_edges(junction: FoundJunction, param_ids: set[int]) -> list[ContextEdge]:
    """The edges from `junction`'s block to its context, in the block's node order; none when the
    block's operand is a detached copy (no gradient enters the block)."""
    if junction.cut == BLOCK:
        return []
    if junction.context is not None:  # replayed: its context was found when it was first searched
        return list(junction.context)
    block = set(junction.nodes[BLOCK])
    fork, fork_output = junction.fork, junction.fork_output
    # Nodes made after the fork were all expanded by the search; older ones never were.
    fork_order = None if type(fork) is _LEAF else fork._sequence_nr()
    edges = []
    # Every edge of the block passes here: the common cases (a node of the block, a parameter)
    # are ruled out first.
    for node in junction.nodes[BLOCK]:
        for index, (child, output) in enumerate(node.next_functions):
            if child is None or child in block:
                continue
            if child is fork:
                if output == fork_output:
                    continue  # the fork itself; another of its node's outputs is context (a split)
            elif type(child) is _LEAF:
                if id(child.variable) in param_ids:
                    continue
            elif fork_order is None or child._sequence_nr() > fork_order:
                continue  # expanded, so shared with the skip: it leads to the fork
            edges.append(ContextEdge(node, index, (child, output)))
    return edges


def contexts_of(
    junctions: Sequence[FoundJunction], measured: Iterable[int], params: Iterable[Any]
) -> dict[int, list[ContextEdge]]:
    """The context edges of each measured junction that has any, by junction index."""
    param_ids = {id(p) for p in params}
    found = {i: context_edges(junctions[i], param_ids) for i in measured}
    return {i: edges for i, edges in found.items() if edges}
