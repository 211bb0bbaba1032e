"""Junctions from the autograd graph that the probe's forward pass built.

A junction is an addition `y = a + b` whose two operands both depend on a common activation
tensor x (the fork), where the longer operand (the block) uses at least one trainable parameter.
The other operand is the skip: `identity` when it is x itself, else `projection`. Where the data
stream reaches the add, the fork must be part of it (`gradflow.engine.values`): a tensor made from
parameters alone and added to the data in several places (a relative position bias that feeds
every layer's attention scores) is no fork. A computation on parameters alone, which no data
reaches, keeps its junctions.

An in-place add into a view (`a += b` where `a` slices another tensor) reaches autograd as a
`CopySlices` node on the view's base, which hides the add's operands. The forward recorder saw
them (`ViewAdd`), so such an add is searched from the operands' edges as they were before it.

Invariant the search relies on: autograd numbers nodes in creation order (`_sequence_nr`), and a
node is always created after the nodes it takes gradients to, so every edge runs from a higher
number to a lower one. Walking back from both operands, always expanding the highest-numbered
node first, a node is fully labelled with the operands that reach it by the time it is expanded;
the first node reached from both is the latest common ancestor: the fork. Each search stops there,
so its cost is the size of the two branches, never the whole graph.

A side is *shared* when the gradient its nodes carry is not its own alone: one of its nodes also
feeds code outside the junction (a norm whose output feeds two branches), or both sides pass
through one node on their way to the fork (the two halves of a `chunk`). Hooks on the side's
edges into the fork would then read gradient from outside the side, so a shared side's
contribution is taken by a separate vector-Jacobian product instead (`gradflow.engine.taps`).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradflow.engine.values import DataCheck

ADD_NODES = frozenset({"AddBackward0"})
_LEAF = "AccumulateGrad"
SKIP, BLOCK = 0, 1  # sides of a junction


@dataclass(frozen=True)
class Edge:
    """Gradient from `consumer` to the fork tensor arrives as `consumer`'s grad_inputs[index]."""

    consumer: Any
    index: int


@dataclass
class FoundJunction:
    """A junction located in the autograd graph (before it is named or measured)."""

    add: Any  # the AddBackward node of y
    fork: Any  # node producing x (AccumulateGrad when x is a model input)
    fork_output: int  # which output of `fork` is x
    skip_operand: int  # 0 or 1: which operand of the add is the skip branch
    skip: str  # "identity" | "projection"
    edges: tuple[list[Edge], list[Edge]]  # consumer edges into x, per side
    nodes: tuple[list[Any], list[Any]]  # branch nodes strictly between x and y, per side
    params: tuple[list[Any], list[Any]]  # trainable parameter tensors, per side
    order: int = field(default=0)  # the add's sequence number (forward order)
    shared: tuple[bool, bool] = (False, False)  # per side: its nodes carry gradient from elsewhere
    cut: int | None = None  # SKIP or BLOCK when that side's operand is a detached copy: no gradient
    exclusive: bool = False  # every consumer of the fork is on one of the two sides
    # A replayed junction has no sides' nodes (gradflow.engine.replay): what they gave when it
    # was first searched, its context edges and the parameters scaling its block, come with it.
    context: tuple[Any, ...] | None = None
    scales: tuple[Any, ...] | None = None
    # The operands' (node, output number) as searched; for an add into a view, where the add's
    # node does not say (see `view`). A replayed junction keeps the first graph's.
    operands: tuple[tuple[Any, int], ...] = ()
    view: Any = None  # the ViewAdd when the add wrote into a view (`add` is its CopySlices node)
    # Per side: its contribution to the fork is taken by a backward pass of its own from its
    # operand: a shared side, and the view an in-place add wrote into, whose gradient leaves the
    # add inside the base's gradient.
    separate: tuple[bool, bool] = (False, False)
    # The position in the found list of the junction whose block holds this one (see `nest`);
    # None for a junction on the stream. A replayed junction keeps the first graph's.
    nested_in: int | None = None

    @property
    def plain(self) -> bool:
        """An identity skip from a fork that only this junction consumes, with nothing shared,
        cut or at a model input, and an add that wrote into no view: the fork's whole gradient
        is the skip's plus the block's, and the skip's is the add's, so both sides follow from
        the gradients at the fork and at the add alone (see `gradflow.engine.taps`, captured
        junctions)."""
        return (
            self.skip == "identity"
            and self.exclusive
            and self.cut is None
            and not any(self.shared)
            and self.view is None
            and not _is_leaf(self.fork)
        )

    @property
    def block_operand(self) -> int:
        return 1 - self.skip_operand

    @property
    def view_is_fork(self) -> bool:
        """The view an in-place add wrote into is the fork itself (`x += f(x)`, x a view)."""
        node, output_nr = self.operands[0] if self.view is not None else (None, 0)
        return node is self.fork and output_nr == self.fork_output


def _is_leaf(node: Any) -> bool:
    return type(node).__name__ == _LEAF


def all_nodes(roots: Iterable[Any], uses: dict[Any, int] | None = None) -> list[Any]:
    """Every autograd node reachable from `roots` (each once). When given, `uses` is filled with
    how many edges lead into each node (its consumers, with multiplicity)."""
    seen: set[Any] = set()
    stack = [r for r in roots if r is not None]
    out: list[Any] = []
    counts: dict[Any, int] = {} if uses is None else uses
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        out.append(node)
        for child, _ in node.next_functions:
            if child is not None:
                counts[child] = counts.get(child, 0) + 1
                if child not in seen:
                    stack.append(child)
    return out


def _feeds_param(node: Any, param_ids: set[int], fed: set[Any]) -> bool:
    """True when a trainable parameter can be reached from `node`, walking towards the inputs.
    `fed` holds nodes already known to reach one; the walk stops at the first it finds."""
    seen: set[Any] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if current in fed:
            return True
        if current in seen:
            continue
        seen.add(current)
        if _is_leaf(current):
            if id(current.variable) in param_ids:
                return True
            continue
        stack.extend(child for child, _ in current.next_functions if child is not None)
    return False


def input_forks(found: Iterable[FoundJunction]) -> dict[int, Any]:
    """id(AccumulateGrad node) -> the input tensor it feeds, for the junctions that fork at an input."""
    return {id(j.fork): j.fork.variable for j in found if _is_leaf(j.fork)}


def needed_inputs(
    found: Iterable[FoundJunction], leaves: Iterable[Any], params: Iterable[Any], forks: dict[int, Any]
) -> list[Any]:
    """Input tensors (`leaves`) whose gradients a measured backward pass must ask for: the inputs a
    junction forks at (`forks`, from `input_forks`), and all of them when some fork has no
    parameter upstream, since a pass that asks only for parameter gradients would skip that fork's
    node and its hooks. Asking for input gradients nobody needs costs a whole extra backward
    pass through the first layer.

    A junction's add reaches the parameters its branches use, so a fork that is another
    junction's add (every fork but the first in a residual stack) needs no walk."""
    found = list(found)
    param_ids = {id(p) for p in params}
    fed = {j.add for j in found}
    for j in found:
        if not _is_leaf(j.fork) and not _feeds_param(j.fork, param_ids, fed):
            return list(leaves)
        fed.add(j.fork)
    return [t for t in leaves if any(t is v for v in forks.values())]


def find_junctions(
    roots: Iterable[Any],
    params: Iterable[Any],
    inputs: Iterable[Any],
    nodes: Iterable[Any] | None = None,
    uses: dict[Any, int] | None = None,
    cuts: dict[Any, tuple[int, Any]] | None = None,
    view_adds: dict[Any, Any] | None = None,
    is_data: DataCheck | None = None,
) -> list[FoundJunction]:
    """Find every junction in the graph behind `roots`, in forward order.

    Args:
        roots: autograd nodes to walk back from (the loss's grad_fn).
        params: the model's trainable parameters (leaves that may make a branch a block).
        inputs: probe input tensors that require grad (leaves that may be a fork).
        nodes, uses: every node behind `roots` and its consumer count, when the caller has
            already walked the graph (`all_nodes`).
        cuts: add node -> (operand index, (node, output number)) for adds whose operand is a detached
            copy of a graph tensor (`ForwardRecorder.cuts`): the add is searched as if that
            operand were still attached, and the junction says which side is cut.
        view_adds: CopySlices node -> ViewAdd for in-place adds into a view
            (`ForwardRecorder.view_adds`): searched from the operands' edges before the add.
        is_data: whether a node's tensor is data (`gradflow.engine.values.DataCheck`); an add
            that data reaches through a fork that is not data is no junction. None: every fork
            counts.
    Returns:
        FoundJunctions sorted by the add's position in the forward pass, each with the junction
        it is nested in (`nest`).
    """
    param_ids = {id(p) for p in params}
    input_ids = {id(t) for t in inputs}
    if nodes is None or uses is None:
        uses = {}
        nodes = all_nodes(roots, uses)
    found = []
    for node in nodes:
        if type(node).__name__ not in ADD_NODES:
            continue
        operands = node.next_functions
        if len(operands) != 2:
            continue
        cut = None
        if operands[0][0] is None or operands[1][0] is None:
            known = (cuts or {}).get(node)
            if known is None or operands[1 - known[0]][0] is None:
                continue  # an add of a constant (a mask, a buffer), or of two
            cut, source = known
            operands = tuple(source if i == cut else op for i, op in enumerate(operands))
        junction = _search(node, operands, param_ids, input_ids, uses, cut)
        if junction is not None:
            found.append(junction)
    for node, view in (view_adds or {}).items():
        if node in uses:  # the add's result reaches the loss
            junction = _search(node, view.operands, param_ids, input_ids, uses, None, view)
            if junction is not None:
                found.append(junction)
    found.sort(key=lambda j: j.order)
    if is_data is None:
        return nest(found)
    kept = []
    for junction in found:  # in forward order, so a fork's walk stops at an earlier junction's add
        if _is_leaf(junction.fork) or is_data(junction.fork):  # a leaf fork is a probe input
            is_data.known(junction.add)
            kept.append(junction)
        elif not any(is_data(node) for node, _ in junction.operands):
            kept.append(junction)  # no data reaches the add at all: a computation on parameters
    return nest(kept)


def nest(found: list[FoundJunction]) -> list[FoundJunction]:
    """Set each junction's `nested_in`: the position in `found` (forward order) of the innermost
    junction whose paths hold both its fork and its add, strictly between that junction's fork
    and add (a residual inside an attention block, the skip of a selective scan inside its
    layer, a multi-branch net's branches inside its fuse add); None for a junction on the
    stream. Returns `found`.

    A nested junction's gradient is what its enclosing junction's path passes it, so the depth of
    the stream (survival, vanishing) is judged on the stream's junctions alone. Both paths count:
    where a fuse add joins two branches that both train, which one is the block (the longer) says
    nothing about which is the stream. Of two junctions holding the same one, the inner lies
    inside the outer's paths, so its paths are the shorter."""
    holders: dict[Any, list[int]] = {}  # node -> the junctions with it on one of their paths
    for m, junction in enumerate(found):
        for node in (*junction.nodes[SKIP], *junction.nodes[BLOCK]):
            holders.setdefault(node, []).append(m)
    size = [len(j.nodes[SKIP]) + len(j.nodes[BLOCK]) for j in found]
    for junction in found:
        around = set(holders.get(junction.add, ())).intersection(holders.get(junction.fork, ()))
        junction.nested_in = min(around, key=lambda m: (size[m], m)) if around else None
    return found


def subtractions_shaped_like_junctions(
    nodes: Iterable[Any], params: Iterable[Any], inputs: Iterable[Any], uses: dict[Any, int]
) -> int:
    """How many of the subtraction nodes among `nodes` have a junction's shape (both operands from
    one fork, one through a trainable parameter: `x - f(x)`). gradflow measures adds; a note
    counts these."""
    param_ids = {id(p) for p in params}
    input_ids = {id(t) for t in inputs}
    count = 0
    for node in nodes:
        if type(node).__name__ != "SubBackward0":
            continue
        operands = node.next_functions
        if len(operands) == 2 and all(child is not None for child, _ in operands):
            count += _search(node, operands, param_ids, input_ids, uses, None) is not None
    return count


class _Walk:
    """Labels for one search: bit 1 = reached from operand 0, bit 2 = from operand 1."""

    def __init__(self, input_ids: set[int]) -> None:
        self.input_ids = input_ids
        self.mask: dict[Any, int] = {}
        self.outputs: dict[Any, tuple[set[int], set[int]]] = {}
        self.heap: list[tuple[int, int, Any]] = []
        self.pending = [0, 0, 0, 0]  # queued, unexpanded nodes carrying bit 1 / bit 2
        self.leaves: dict[Any, int] = {}
        self.lone_inputs = [0, 0, 0, 0]  # input leaves reached from exactly one side, by bit
        self.expanded: list[Any] = []

    def reach(self, node: Any, bits: int, output_nr: int) -> None:
        # The hottest function of detection: written out rather than looped. Leaves come first:
        # they are never expanded, so the output numbers that locate a fork are not kept for them.
        if type(node).__name__ == _LEAF:
            old_bits = self.leaves.get(node, 0)
            new_bits = old_bits | bits
            self.leaves[node] = new_bits
            if id(node.variable) in self.input_ids and new_bits != old_bits:
                self.lone_inputs[old_bits] -= old_bits in (1, 2)
                self.lone_inputs[new_bits] += new_bits in (1, 2)
            return
        outs = self.outputs.get(node)
        if outs is None:
            outs = self.outputs[node] = (set(), set())
        if bits & 1:
            outs[0].add(output_nr)
        if bits & 2:
            outs[1].add(output_nr)
        old = self.mask.get(node)
        if old is None:
            self.mask[node] = bits
            heapq.heappush(self.heap, (-node._sequence_nr(), id(node), node))
            added = bits
        else:
            added = bits & ~old
            if not added:
                return
            self.mask[node] = old | bits
        if added & 1:
            self.pending[1] += 1
        if added & 2:
            self.pending[2] += 1

    def exhausted(self) -> bool:
        """True when one side has nothing left to expand and no input leaf awaits the other."""
        pending, lone = self.pending, self.lone_inputs
        return (pending[1] == 0 and lone[1] == 0) or (pending[2] == 0 and lone[2] == 0)


def _search(
    add: Any,
    operands: tuple[tuple[Any, int], ...],
    param_ids: set[int],
    input_ids: set[int],
    uses: dict[Any, int],
    cut: int | None,
    view: Any = None,
) -> FoundJunction | None:
    walk = _Walk(input_ids)
    (a, a_nr), (b, b_nr) = operands
    if a is b and a_nr == b_nr:
        return None  # x + x: one operand, no branches
    walk.reach(a, 1, a_nr)
    walk.reach(b, 2, b_nr)
    fork = None
    fork_output = 0
    while walk.heap and not walk.exhausted():
        _, _, node = heapq.heappop(walk.heap)
        bits = walk.mask[node]
        for bit in (1, 2):
            if bits & bit:
                walk.pending[bit] -= 1
        if bits == 3:
            common = walk.outputs[node][0] & walk.outputs[node][1]
            if common:
                fork, fork_output = node, min(common)
                break
            # Both branches start from different outputs of one node (a split): search on.
        walk.expanded.append(node)
        for child, nr in node.next_functions:
            if child is not None:
                walk.reach(child, bits, nr)
    if fork is None:
        for leaf, bits in walk.leaves.items():
            if bits == 3 and id(leaf.variable) in input_ids:
                fork, fork_output = leaf, 0
                break
        if fork is None:
            return None
        # The fork is a model input: whatever is still queued hangs off the branches (weights
        # reshaped inside the block, say) and belongs to them.
        while walk.heap:
            _, _, node = heapq.heappop(walk.heap)
            walk.expanded.append(node)
            for child, nr in node.next_functions:
                if child is not None:
                    walk.reach(child, walk.mask[node], nr)
    return _classify(add, operands, fork, fork_output, walk, param_ids, uses, cut, view)


def _classify(
    add: Any,
    operands: tuple[tuple[Any, int], ...],
    fork: Any,
    fork_output: int,
    walk: _Walk,
    param_ids: set[int],
    uses: dict[Any, int],
    cut: int | None,
    view: Any = None,
) -> FoundJunction | None:
    nodes: tuple[list[Any], list[Any]] = ([], [])
    params: tuple[list[Any], list[Any]] = ([], [])
    seen_params: tuple[set[int], set[int]] = (set(), set())
    edges: tuple[list[Edge], list[Edge]] = ([], [])
    meet = False  # both sides pass through one node before the fork (a split)
    (a, a_nr), (b, b_nr) = operands
    for operand, (child, nr) in enumerate(((a, a_nr), (b, b_nr))):
        # The view an in-place add wrote into leaves the add inside the base's gradient: no edge.
        if child is fork and nr == fork_output and not (view is not None and operand == 0):
            edges[operand].append(Edge(add, operand))
        if _is_leaf(child):
            _add_param(child, operand, params, seen_params, param_ids)
    for node in walk.expanded:
        bits = walk.mask[node]
        if bits not in (1, 2):
            meet = meet or bits == 3
            continue
        side = bits - 1
        nodes[side].append(node)
        for index, (child, nr) in enumerate(node.next_functions):
            if child is fork and nr == fork_output:
                edges[side].append(Edge(node, index))
            elif child is not None and _is_leaf(child):
                _add_param(child, side, params, seen_params, param_ids)
    has_params = (bool(params[0]), bool(params[1]))
    if not any(has_params):
        return None
    if has_params[0] != has_params[1]:
        block = 0 if has_params[0] else 1
    else:
        # Both branches train: the longer one is the block (ties: more parameters, then operand 1).
        key0 = (len(nodes[0]), _numel(params[0]))
        key1 = (len(nodes[1]), _numel(params[1]))
        block = 0 if key0 > key1 else 1
    skip = 1 - block
    skip_node, skip_nr = operands[skip]
    identity = skip_node is fork and skip_nr == fork_output
    shared = [meet or _used_outside(nodes[side], add, uses) for side in (0, 1)]
    exclusive = uses.get(fork, 0) == len(edges[0]) + len(edges[1])
    return FoundJunction(
        add=add,
        fork=fork,
        fork_output=fork_output,
        skip_operand=skip,
        skip="identity" if identity else "projection",
        edges=(edges[skip], edges[block]),
        nodes=(nodes[skip], nodes[block]),
        params=(params[skip], params[block]),
        order=add._sequence_nr(),
        shared=(shared[skip], shared[block]),
        cut=None if cut is None else (SKIP if cut == skip else BLOCK),
        exclusive=exclusive,
        operands=(operands[0], operands[1]),
        view=view,
        separate=(
            shared[skip] or (view is not None and skip == 0),
            shared[block] or (view is not None and block == 0),
        ),
    )


def _used_outside(side: list[Any], add: Any, uses: dict[Any, int]) -> bool:
    """True when a node of `side` has a consumer outside the side and the add, so the gradient
    it passes on carries that consumer's part too. A node with one consumer is reached through
    it, so only nodes used more than once need their consumers counted."""
    inside = {n: 0 for n in side if uses.get(n, 0) > 1}
    if not inside:
        return False
    for consumer in (add, *side):
        for child, _ in consumer.next_functions:
            if child in inside:
                inside[child] += 1
    return any(uses[n] > count for n, count in inside.items())


def _add_param(
    leaf: Any,
    side: int,
    params: tuple[list[Any], list[Any]],
    seen: tuple[set[int], set[int]],
    param_ids: set[int],
) -> None:
    tensor = leaf.variable
    if id(tensor) in param_ids and id(tensor) not in seen[side]:
        seen[side].add(id(tensor))
        params[side].append(tensor)


def _numel(tensors: list[Any]) -> int:
    return sum(t.numel() for t in tensors)
