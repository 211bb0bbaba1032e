"""What the forward pass knows and the autograd graph forgets: which module ran each add, where.

`ForwardRecorder` is active only while the probe runs forward. It keeps a stack of the model's
modules (a wrapper around `_call_impl` on the model's own module classes), sees every addition
through wrappers around the six ways eager code adds tensors (`+`, `+=`, `1 + t`, `torch.add`,
`Tensor.add`, `Tensor.add_`), so each add is named after the innermost module and the user's
source line, and lets the model set `requires_grad` on a tensor derived from its input as it
could alone; it also notes which parameters the forward pass reads (a wrapper around the same
classes' `__getattr__`). All are installed on entry and removed on exit. Each module call notes
the range of autograd sequence numbers it created, so a path can list the modules that ran its
operations (`gradflow.engine.naming`). An in-place add into a view, which autograd records as
`CopySlices` without its operands, is noted with the operands' gradient edges as they were
before the add (`ViewAdd`). Only module calls, additions and lookups of a module's parameters, buffers and
submodules pay for the recording: a TorchFunctionMode would send every operation of the forward
pass through Python. Which tensors carry the probe's data is tracked on the probe's own tensors
(`gradflow.engine.values`). Exported programs run through an fx Interpreter instead, which reads
the module path and source line the exporter stored on each graph node.
"""

from __future__ import annotations

import functools
import operator
import os
import sys
import weakref
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch
from torch.autograd.graph import get_gradient_edge

from gradflow.engine import sites, values
from gradflow.probe import Probe

_TORCH_DIR = os.path.dirname(torch.__file__)
_GRADFLOW_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Frames of torch's and gradflow's own code, never the user's (the separator keeps torchvision's
# frames, whose directory also starts with "torch").
_SKIPPED = (_TORCH_DIR + os.sep, _GRADFLOW_DIR + os.sep, "<")
_ADD_METHODS = ("__add__", "__radd__", "__iadd__", "add", "add_")
_IN_PLACE = frozenset({"__iadd__", "add_"})
_next_sequence_nr = torch._C._autograd._get_sequence_nr  # the number the next autograd node gets


@dataclass
class ModuleCall:
    """One call of one of the model's modules: it created the autograd nodes numbered
    `start` <= n < `end`; `parent` is the index of the call it ran in (-1: none)."""

    name: str
    start: int
    parent: int
    end: int = -1


@dataclass(frozen=True)
class ViewAdd:
    """An in-place add `a += b` into a view `a`, which autograd records as a `CopySlices` node on
    the view's base: `operands` are the gradient edges (node, output number) of `a` and `b` as
    they were before the add; the view is `base.as_strided(size, stride, offset)` on a tensor laid
    out as the base (`base_size`, `base_stride`)."""

    operands: tuple[tuple[Any, int], tuple[Any, int]]
    size: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int
    base_size: tuple[int, ...]
    base_stride: tuple[int, ...]


def user_location(skip: int = 2) -> str | None:
    """`file:line` of the innermost frame outside torch and gradflow, relative to the cwd."""
    frame: FrameType | None = sys._getframe(skip)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_SKIPPED):
            return f"{_shown(filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return None


@functools.lru_cache(maxsize=1024)
def _shown(filename: str) -> str:
    """A file name relative to the working directory when it lies below it."""
    try:
        shown = os.path.relpath(filename)
    except ValueError:  # another drive on Windows
        return filename
    return filename if shown.startswith("..") else shown


@contextmanager
def _patched(classes: Sequence[type], name: str, wrap: Any) -> Iterator[None]:
    """Set `name` on each of the model's own module classes to `wrap(original)`, where `original`
    is what the class resolved `name` to before any of them was patched (a class that subclasses
    another of the list is not wrapped twice); each class gets back exactly what it had on exit,
    whatever happens.

    Not on `nn.Module` itself: setting an attribute on a class invalidates the attribute caches of
    every subclass, and with timm or transformers imported `nn.Module` has a thousand of them, so
    a patch of `nn.Module` cost more than a small model's whole step. The model's own classes have
    few subclasses, usually none."""
    originals = [(cls, cls.__dict__.get(name), getattr(cls, name)) for cls in classes]
    patched: list[tuple[type, Any]] = []
    try:
        for cls, own, resolved in originals:
            setattr(cls, name, wrap(resolved))
            patched.append((cls, own))
        yield
    finally:
        for cls, own in reversed(patched):
            if own is None:
                delattr(cls, name)
            else:
                setattr(cls, name, own)


@contextmanager
def _module_calls_tracked(recorder: ForwardRecorder) -> Iterator[None]:
    """Wrap `_call_impl` on the model's module classes (`_patched`) so each call of one of the
    model's modules pushes its name on `recorder.stack` and notes the autograd sequence numbers it
    used (`ModuleCall`); the originals are back on exit, whatever happens.

    Global forward hooks would do the same, but while any is registered every module call takes
    the slow path of `_call_impl` (hook lists, closures, sets): on a model of 1,000 blocks that
    slow path cost more than the hooks themselves. The wrapper leaves each module's own hooks to
    the original, and passes through calls of other modules and of other threads (see
    `sites.recording_active`). Sequence numbers count per thread, and the forward pass runs on
    this one."""
    names, stack, calls, active = recorder.names, recorder.stack, recorder.calls, sites.recording_active
    running = [-1]  # indices into `calls`, innermost last

    def wrap(original: Any) -> Any:
        def call(module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            name = names.get(id(module))
            if name is None or not active():
                return original(module, *args, **kwargs)
            index = len(calls)
            record = ModuleCall(name, _next_sequence_nr(), running[-1])
            calls.append(record)
            stack.append(name)
            running.append(index)
            try:
                return original(module, *args, **kwargs)
            finally:
                running.pop()
                stack.pop()
                record.end = _next_sequence_nr()

        return call

    with _patched(recorder.classes, "_call_impl", wrap):
        yield


@contextmanager
def _parameter_reads_noted(recorder: ForwardRecorder) -> Iterator[None]:
    """Wrap `__getattr__` on the model's module classes (`_patched`) so every parameter the
    forward pass reads as a module attribute (`self.weight`) is noted in `recorder.read`,
    whether or not what it computes reaches the loss: a parameter read and then cut off (a
    `.detach()`, `no_grad` or `.data` on the way) is told apart from one never read at all.
    Python calls `__getattr__` only for names that the normal lookup misses, which on a module
    are its parameters, buffers and submodules, so other attribute reads pay nothing. The
    originals are back on exit, whatever happens."""

    def wrap(original: Any) -> Any:
        # Every module attribute lookup of the forward pass comes here: names bound as defaults
        # are local variables, the cheapest lookups Python has.
        def lookup(
            module: torch.nn.Module,
            name: str,
            original: Any = original,
            parameter: type = torch.nn.Parameter,
            note: Any = recorder.read.add,
            active: Any = sites.recording_active,
        ) -> Any:
            value = original(module, name)
            if isinstance(value, parameter) and active():
                note(id(value))
            return value

        return lookup

    with _patched(recorder.classes, "__getattr__", wrap):
        yield


@contextmanager
def _adds_recorded(recorder: ForwardRecorder) -> Iterator[None]:
    """Wrap torch.add and the Tensor add methods so each result is recorded as an AddSite of
    the module on top of the recorder's stack, and an add of a detached copy of a graph tensor
    as a cut (see `ForwardRecorder.note_cut`); wrap `detach` so such copies are known. The
    originals are back on exit, whatever happens.

    The wrappers are process-wide while they are installed, but `sites.record_add` records only
    in the context that opened the recording: another thread's adds pass through unrecorded."""
    stack = recorder.stack

    def recorded(original: Any, in_place: bool) -> Any:
        @functools.wraps(original)
        def add(*args: Any, **kwargs: Any) -> Any:
            pair = _operands(args, kwargs)
            live = (pair[0].requires_grad, pair[1].requires_grad) if pair else None  # before an in-place add
            into_view = None
            if in_place and live == (True, True) and pair[0]._is_view():  # type: ignore[index]
                # Autograd is about to replace the view's history: keep both operands' edges.
                into_view = (_edge(pair[0]), _edge(pair[1]))  # type: ignore[index]
            result = original(*args, **kwargs)
            # Adds outside the autograd graph (a batch norm's step counter) cannot be junctions.
            if isinstance(result, torch.Tensor) and result.grad_fn is not None and sites.recording_active():
                location = user_location()
                if into_view is not None and recorder.note_view_add(result, into_view, stack[-1], location):
                    return result
                sites.record_add(result, stack[-1], location)
                if live is not None and live[0] is not live[1]:
                    cut = 0 if live[1] else 1
                    recorder.note_cut(result, cut, pair[cut])  # type: ignore[index]
            return result

        return add

    def traced(original: Any) -> Any:
        @functools.wraps(original)
        def detach(tensor: Any, *args: Any, **kwargs: Any) -> Any:
            copy = original(tensor, *args, **kwargs)
            if isinstance(tensor, torch.Tensor) and tensor.requires_grad and sites.recording_active():
                copy = recorder.note_detach(tensor, copy)
            return copy

        return detach

    wrapped: dict[str, Any] = {
        **{name: functools.partial(recorded, in_place=name in _IN_PLACE) for name in _ADD_METHODS},
        "detach": traced,
    }
    own = {name: torch.Tensor.__dict__[name] for name in wrapped if name in torch.Tensor.__dict__}
    torch_add, torch_detach = torch.add, torch.detach
    try:
        for name, wrap in wrapped.items():
            setattr(torch.Tensor, name, wrap(getattr(torch.Tensor, name)))
        torch.add = recorded(torch_add, in_place=False)
        torch.detach = traced(torch_detach)
        yield
    finally:
        torch.add, torch.detach = torch_add, torch_detach
        for name in wrapped:
            if name in own:
                setattr(torch.Tensor, name, own[name])
            elif name in torch.Tensor.__dict__:
                delattr(torch.Tensor, name)


@contextmanager
def _requires_grad_kept() -> Iterator[None]:
    """Let the model set `requires_grad = True` on a tensor that already requires grad, as it
    may on a tensor derived from its input (`h = x[:, None]; h.requires_grad = True`): alone it
    gets a leaf that does not, but the probe's inputs require grad, so `h` is no leaf and torch
    would refuse the set. The flag already holds, so the set changes nothing. Other sets, and
    sets outside the recording's context, go to torch as they are; the property is back on exit.
    """
    base = torch._C.TensorBase.__dict__["requires_grad"]
    own = torch.Tensor.__dict__.get("requires_grad")
    active = sites.recording_active

    def set_flag(tensor: torch.Tensor, flag: bool) -> None:
        if flag and active() and base.__get__(tensor) and not tensor.is_leaf:
            return
        base.__set__(tensor, flag)

    torch.Tensor.requires_grad = property(base.__get__, set_flag)  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        if own is None:
            del torch.Tensor.requires_grad
        else:
            torch.Tensor.requires_grad = own  # type: ignore[method-assign]


def _edge(tensor: torch.Tensor) -> tuple[Any, int]:
    edge = get_gradient_edge(tensor)
    return edge.node, edge.output_nr


def _operands(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The two tensors an add takes (`a + b`, `torch.add(a, b)`, `a.add_(b)`), when both are."""
    if not args:
        return None
    other = args[1] if len(args) > 1 else kwargs.get("other")
    first = args[0]
    if isinstance(first, torch.Tensor) and isinstance(other, torch.Tensor):
        return first, other
    return None


class ForwardRecorder:
    """Records add sites and module calls of one forward pass of `model`.

    After the `with` block: `sites` maps an add's autograd node to its AddSite; `calls` lists the
    module calls in the order they started (`ModuleCall`); `read` holds the id() of every
    parameter the forward pass read as a module attribute; `cuts` maps the node of an add whose
    operand is a detached copy of a graph tensor (`x.detach() + f(x)`) to that operand's index and
    the (node, output number) of the tensor it was copied from; `view_adds` maps the `CopySlices`
    node of an in-place add into a view to its `ViewAdd`; `data_check` tells whether a node's
    tensor is data (see `gradflow.engine.values`), None where value tracking does not apply.
    """

    def __init__(
        self, model: torch.nn.Module, modules: Sequence[tuple[str, torch.nn.Module]] | None = None
    ) -> None:
        self.names: dict[int, str] = {}
        classes: dict[type, None] = {}
        for name, module in modules if modules is not None else model.named_modules(remove_duplicate=False):
            self.names.setdefault(id(module), name)
            classes[type(module)] = None
        self.classes: tuple[type, ...] = tuple(classes)  # the model's own module classes
        self.stack: list[str] = [""]
        self.calls: list[ModuleCall] = []
        self.sites: dict[Any, sites.AddSite] = {}
        self.cuts: dict[Any, tuple[int, Any]] = {}
        self.read: set[int] = set()  # id() of every parameter read as a module attribute
        self.view_adds: dict[Any, ViewAdd] = {}
        # TorchScript and torch.export programs run their operations outside torch's Python API.
        tracks = not isinstance(model, torch.jit.ScriptModule) and not has_export_metadata(model)
        self.data_check: values.DataCheck | None = values.DataCheck(set()) if tracks else None
        self._detached: dict[int, tuple[Any, tuple[Any, int]]] = {}  # id(copy) -> (copy ref, edge)
        self._exit = ExitStack()

    def __enter__(self) -> ForwardRecorder:
        try:
            self.sites = self._exit.enter_context(sites.recording())
            if self.data_check is not None:
                self._exit.enter_context(values.roots_recorded(self.data_check.roots))
            self._exit.enter_context(_module_calls_tracked(self))
            self._exit.enter_context(_adds_recorded(self))
            self._exit.enter_context(_parameter_reads_noted(self))
            self._exit.enter_context(_requires_grad_kept())
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._exit.close()

    def probe_inputs(self, probe: Probe) -> Probe:
        """The probe's tensors (copies made for this forward pass, `detached_inputs`) as the model
        gets them: `ProbeData`, so their values are tracked, where tracking applies (a float
        input's autograd node is a data root); else as they are."""
        if self.data_check is None:
            return probe
        roots = self.data_check.roots

        def given(value: Any) -> Any:
            if isinstance(value, torch.Tensor):  # a copy the probe made for this forward pass
                values.mark(value)
                if value.grad_fn is not None:
                    roots.add(value.grad_fn)
            return value

        return Probe(tuple(given(a) for a in probe.args), {k: given(v) for k, v in probe.kwargs.items()})

    def note_view_add(
        self, result: torch.Tensor, operands: tuple[tuple[Any, int], tuple[Any, int]], module: str,
        location: str | None,
    ) -> bool:
        """`result` is the view an in-place add wrote into, `operands` the edges its two operands
        had before; note the add under the base's `CopySlices` node. False when autograd did not
        record it so (then it is an ordinary add)."""
        base = result._base
        node = None if base is None else base.grad_fn
        if node is None or type(node).__name__ != "CopySlices":
            return False
        assert base is not None
        self.view_adds[node] = ViewAdd(
            operands,
            tuple(result.shape),
            result.stride(),
            int(result.storage_offset() - base.storage_offset()),
            tuple(base.shape),
            base.stride(),
        )
        self.sites[node] = sites.AddSite(module, location)
        return True

    def note_detach(self, tensor: torch.Tensor, copy: torch.Tensor) -> torch.Tensor:
        """`copy` is `tensor.detach()`: remember the gradient edge it was cut from. Returns the
        copy as the model gets it: a `ProbeData` when `tensor` is data."""
        edge = get_gradient_edge(tensor)
        if self.data_check is not None and edge.node is not None and self.data_check(edge.node):
            values.mark(copy)
        self._detached[id(copy)] = (weakref.ref(copy), (edge.node, edge.output_nr))
        return copy

    def note_cut(self, result: torch.Tensor, index: int, operand: torch.Tensor) -> None:
        """Operand `index` of the add that gave `result` is outside the graph. When it is a
        detached copy of a graph tensor (`x.detach()`, `f(x).detach()`), the add closes a path
        cut on purpose or by mistake: note the tensor it was cut from."""
        known = self._detached.get(id(operand))
        if known is not None and known[0]() is operand and result.grad_fn is not None:
            self.cuts[result.grad_fn] = (index, known[1])


_EXPORT_ADDS = {"add.Tensor", "add_.Tensor", "add.Scalar"}


def _is_add_target(target: Any) -> bool:
    if target is operator.add or target is operator.iadd or target is torch.add:
        return True
    return str(getattr(target, "_overloadname", "")) != "" and (
        f"{getattr(target, '_opname', '')}.{target._overloadname}" in _EXPORT_ADDS
    )


def exported_module_path(meta: dict[str, Any]) -> str:
    """The innermost module path recorded by torch.export for a graph node ("" for the root)."""
    stack = meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return str(path).replace("L['self'].", "").replace("L__self__", "").lstrip(".")


def exported_location(meta: dict[str, Any]) -> str | None:
    trace = meta.get("stack_trace")
    if not trace:
        return None
    for line in reversed(trace.strip().splitlines()):
        line = line.strip()
        if line.startswith("File "):
            parts = line.split('"')
            if len(parts) >= 3 and ", line " in parts[2]:
                lineno = parts[2].split(", line ")[1].split(",")[0]
                return f"{os.path.relpath(parts[1]) if os.path.isabs(parts[1]) else parts[1]}:{lineno}"
    return None


def has_export_metadata(model: torch.nn.Module) -> bool:
    graph = getattr(model, "graph", None)
    if not isinstance(model, torch.fx.GraphModule) or graph is None:
        return False
    return any("nn_module_stack" in node.meta for node in graph.nodes)


def run_forward(model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run `model` forward; exported graphs go through an Interpreter that records add sites."""
    if isinstance(model, torch.jit.ScriptModule):
        # The profiling executor fuses graphs after a few runs, which would hide the adds.
        with torch.jit.optimized_execution(False):
            return model(*args, **kwargs)
    if not has_export_metadata(model):
        return model(*args, **kwargs)

    class _Sites(torch.fx.Interpreter):
        def run_node(self, n: torch.fx.Node) -> Any:
            result = super().run_node(n)
            if n.op == "call_function" and _is_add_target(n.target):
                sites.record_add(result, exported_module_path(n.meta), exported_location(n.meta))
            return result

    assert isinstance(model, torch.fx.GraphModule)
    if kwargs:
        # The interpreter takes positional placeholders; exported programs keep argument order.
        args = (*args, *kwargs.values())
    return _Sites(model).run(*args)


@contextmanager
def recording(model: torch.nn.Module) -> Iterator[ForwardRecorder]:
    with ForwardRecorder(model) as recorder:
        yield recorder
