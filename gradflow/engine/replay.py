"""Junctions found once per graph shape: a second measurement of the same model with inputs of
the same shape builds the same autograd graph, so the search, the names and the notes of the
first are replayed on the new graph instead of made again (what `watch` does every N steps).

A shape is keyed by what the recorder saw for free: the adds in forward order, where each ran,
and how many autograd nodes lie between them (autograd numbers nodes in creation order), plus the
trainable parameters and the probe inputs. A replay finds each junction from its add by the
recorded route through `next_functions` and checks every node on the way by type; any mismatch
and the measurement searches the graph as the first did.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from gradflow.engine.junctions import Edge, FoundJunction
from gradflow.engine.naming import Naming

Route = tuple[int, ...]  # indices into next_functions, from an add down to a node


@dataclass(frozen=True)
class _Way:
    """How to reach one junction's nodes from its add, and what they are."""

    add: int  # position of the junction's add among the recorded adds
    fork: Route
    fork_type: str
    edges: tuple[tuple[tuple[Route, int], ...], tuple[tuple[Route, int], ...]]  # (route, index) per side
    context: tuple[tuple[Route, int], ...]  # the block's edges to its context (`engine.context`)
    types: tuple[str, ...]  # every node on every route, in order, by type name
    junction: FoundJunction  # as first found: its other fields (sides, parameters) carry over


@dataclass(frozen=True)
class Found:
    """What the search, the naming and the notes made of one graph."""

    junctions: list[FoundJunction]
    naming: list[Naming]
    notes: tuple[str, ...]
    used: list[bool]  # per trainable parameter: whether the forward pass used it


class Replays:
    """Found junctions per graph shape, for one model; a few shapes are kept."""

    KEEP = 4

    def __init__(self) -> None:
        self._shapes: dict[tuple[Any, ...], tuple[list[_Way], Found]] = {}
        # Junctions, by name, whose block's part of the fork's gradient was too small for a
        # captured difference when measured (`taps.Captured.exact`), or whose block a nearly
        # closed gate scales (`gates.nearly_closed`, which a replayed junction cannot tell):
        # hooked from then on, which costs no backward pass of their own. A name that now means
        # another junction costs at most a hook where a capture would do: the numbers are exact
        # either way.
        self.hooked: set[str] = set()

    def find(self, key: tuple[Any, ...] | None, adds: Sequence[Any]) -> Found | None:
        """The junctions of the graph whose adds (autograd nodes, in forward order) are `adds`,
        if a graph of the same shape was seen and the replay checks out."""
        if key is None:
            return None
        known = self._shapes.get(key)
        if known is None:
            return None
        ways, found = known
        junctions = []
        for way in ways:
            junction = _replay(way, adds)
            if junction is None:
                del self._shapes[key]
                return None
            junctions.append(junction)
        return replace(found, junctions=junctions)

    def keep(
        self, key: tuple[Any, ...] | None, adds: Sequence[Any], found: Found, params: Sequence[Any]
    ) -> None:
        """Remember how to find `found` again in a graph of shape `key`, when every junction's
        add is among the recorded `adds`; `params` are the trainable parameters."""
        if key is None:
            return
        position = {node: i for i, node in enumerate(adds)}
        param_ids = {id(p) for p in params}
        ways = []
        for junction in found.junctions:
            way = _way(junction, position, param_ids)
            if way is None:
                return  # an add no wrapper saw (inside torch's own code): search every time
            ways.append(way)
        if len(self._shapes) >= self.KEEP:
            self._shapes.pop(next(iter(self._shapes)))
        self._shapes[key] = (ways, replace(found, junctions=[]))


_REPLAYS: weakref.WeakKeyDictionary[Any, Replays] = weakref.WeakKeyDictionary()


def replays_of(model: Any) -> Replays:
    """The shapes seen for `model`, kept as long as the model lives."""
    known = _REPLAYS.get(model)
    if known is None:
        known = _REPLAYS[model] = Replays()
    return known


def shape_key(
    adds: Sequence[Any], sites: Sequence[Any], root: Any, extra: tuple[Any, ...]
) -> tuple[Any, ...] | None:
    """The shape of a graph from its recorded adds (nodes and sites, in forward order) and its
    root: the sites, the node count between consecutive adds and up to the root, and `extra`
    (the trainable parameters, the probe's inputs, the mode). None without a recorded add."""
    if not adds or root is None:
        return None
    first = adds[0]._sequence_nr()
    offsets = tuple(node._sequence_nr() - first for node in adds)
    return (tuple(sites), offsets, root._sequence_nr() - first, type(root).__name__, extra)


def _way(junction: FoundJunction, position: dict[Any, int], param_ids: set[int]) -> _Way | None:
    from gradflow.engine.context import context_edges
    from gradflow.engine.gates import scaling_parameters

    add = position.get(junction.add)
    if add is None or junction.view is not None:
        # An add into a view is measured from its operands' edges before the add and the view's
        # geometry, which belong to the graph they were recorded in: search every time.
        return None
    types: list[str] = []
    fork = _route(junction.add, junction.fork, types)
    if fork is None:
        return None
    sides = []
    for side in junction.edges:
        routes = []
        for edge in side:
            route = _route(junction.add, edge.consumer, types)
            if route is None:
                return None
            routes.append((route, edge.index))
        sides.append(tuple(routes))
    context = []
    for read in context_edges(junction, param_ids):
        route = _route(junction.add, read.consumer, types)
        if route is None:
            return None
        context.append((route, read.index))
    # The sides' nodes served the naming, the context and the gates: keep what they gave.
    light = replace(junction, nodes=([], []), scales=tuple(scaling_parameters(junction)))
    return _Way(
        add, fork, type(junction.fork).__name__, (sides[0], sides[1]), tuple(context), tuple(types), light
    )


def _route(start: Any, target: Any, types: list[str]) -> Route | None:
    """Indices into next_functions leading from `start` to `target`, found by a walk that
    never goes below the target's creation number; the types of the nodes on it go to `types`."""
    if start is target:
        return ()
    floor = target._sequence_nr()
    leaf = type(target).__name__ == "AccumulateGrad"
    parents: dict[Any, tuple[Any, int]] = {}
    stack = [start]
    seen = {start}
    while stack:
        node = stack.pop()
        for index, (child, _) in enumerate(node.next_functions):
            if child is None or child in seen:
                continue
            if child is target:
                route = [index]
                while node is not start:
                    node, step = parents[node]
                    route.append(step)
                route.reverse()
                _types(start, route, types)
                return tuple(route)
            seen.add(child)
            if leaf or child._sequence_nr() > floor:
                parents[child] = (node, index)
                stack.append(child)
    return None


def _types(start: Any, route: Sequence[int], types: list[str]) -> None:
    node = start
    for index in route:
        node = node.next_functions[index][0]
        types.append(type(node).__name__)


def _follow(start: Any, route: Route, types: list[str]) -> Any:
    node = start
    for index in route:
        functions = node.next_functions
        if index >= len(functions) or functions[index][0] is None:
            return None
        node = functions[index][0]
        types.append(type(node).__name__)
    return node


def _replay(way: _Way, adds: Sequence[Any]) -> FoundJunction | None:
    from gradflow.engine.context import ContextEdge

    if way.add >= len(adds):
        return None
    add = adds[way.add]
    types: list[str] = []
    fork = _follow(add, way.fork, types)
    if fork is None or type(fork).__name__ != way.fork_type:
        return None
    edges: list[list[Edge]] = [[], []]
    for side, routes in enumerate(way.edges):
        for route, index in routes:
            consumer = _follow(add, route, types)
            if consumer is None or consumer.next_functions[index][0] is not fork:
                return None
            edges[side].append(Edge(consumer, index))
    context = []
    for route, index in way.context:
        consumer = _follow(add, route, types)
        if consumer is None or index >= len(consumer.next_functions):
            return None
        context.append(ContextEdge(consumer, index, consumer.next_functions[index]))
    if tuple(types) != way.types:
        return None
    return _copy(
        way.junction, add=add, fork=fork, edges=(edges[0], edges[1]), order=add._sequence_nr(),
        context=tuple(context),
    )


def _copy(junction: FoundJunction, **changes: Any) -> FoundJunction:
    """`dataclasses.replace(junction, **changes)` without its checks, which cost more than the
    rest of a junction's replay: FoundJunction has no `__post_init__` and no field outside
    `__init__`, so a copy of its fields is the same object."""
    copy = object.__new__(FoundJunction)
    copy.__dict__.update(junction.__dict__, **changes)
    return copy


def forget(model: Any) -> None:
    """Drop what was kept for `model`: its next measurement searches its graph as the first did."""
    _REPLAYS.pop(model, None)
