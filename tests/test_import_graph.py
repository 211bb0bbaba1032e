"""The package's import graph, read from the source (ast), module-level imports only: imports
inside a function run when it is called and are how a module reaches upward lazily; imports under
`if TYPE_CHECKING:` never run.

Data flows one way (source -> loader -> module -> probe -> engine -> report -> renderer), so the
module-level graph has no cycles, and nothing below the renderers loads them: the rules of
`gradflow.gate` and the result types (Report, CheckResult, Comparison, Track, WatchRecord) show
themselves through a one-line delegation that imports `gradflow.render` when called.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import gradflow

PACKAGE = Path(gradflow.__file__).parent

# The modules whose classes a verb returns; each reaches the renderers only lazily.
RESULT_TYPES = ("gradflow.engine.report", "gradflow.gate.result", "gradflow.drivers.compare",
                "gradflow.track.result", "gradflow.watching.record", "gradflow.track.watch_log",
                "gradflow.track.arms")
# What may load the renderers at import time: the renderers themselves and the CLI above them.
ABOVE_RENDER = ("gradflow.render", "gradflow.cli")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported: at top level, or inside
    if / try / with blocks there, but not in functions, classes' methods or `if TYPE_CHECKING:`."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level(block)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            yield from _module_level(node.body)


def _imported(name: str, path: Path) -> set[str]:
    """The gradflow modules `name` imports at module level: `from pkg import sub` counts as
    pkg.sub when that is a module, else as pkg."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _module_level(tree.body):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            targets.add(sub if sub in MODULES else base)
    return {t for t in targets if t in MODULES and t != name}


GRAPH = {name: _imported(name, path) for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(GRAPH[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def _reach(start: str) -> dict[str, str]:
    """Every module `start` loads at import time, each with the module that imports it."""
    seen = {start: ""}
    todo = [start]
    while todo:
        node = todo.pop()
        for target in GRAPH[node]:
            if target not in seen:
                seen[target] = node
                todo.append(target)
    return seen


def _path(reached: dict[str, str], end: str) -> str:
    chain = [end]
    while reached[chain[-1]]:
        chain.append(reached[chain[-1]])
    return " -> ".join(reversed(chain))


def _under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_graph_is_read() -> None:
    assert "gradflow.engine.report" in GRAPH["gradflow.gate.result"]
    assert "gradflow.registry" in GRAPH["gradflow.gate.catalog"]
    # a lazy import inside a function is not an edge
    assert "gradflow.render.json" not in GRAPH["gradflow.drivers.check"]


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_the_gate_does_not_load_the_renderers() -> None:
    for name in sorted(MODULES):
        if _under(name, ("gradflow.gate",)):
            reached = _reach(name)
            loaded = [_path(reached, m) for m in reached if _under(m, ("gradflow.render",))]
            assert not loaded, loaded


def test_result_types_reach_the_renderers_only_lazily() -> None:
    for name in RESULT_TYPES:
        reached = _reach(name)
        loaded = [_path(reached, m) for m in reached if _under(m, ("gradflow.render",))]
        assert not loaded, loaded


def test_nothing_below_the_renderers_loads_them() -> None:
    for name in sorted(MODULES):
        if _under(name, ABOVE_RENDER) or name in ("gradflow", "gradflow.__main__"):
            continue
        reached = _reach(name)
        loaded = [_path(reached, m) for m in reached if _under(m, ("gradflow.render",))]
        assert not loaded, loaded
