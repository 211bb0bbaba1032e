"""The probe: a seeded batch of inputs, the model output it picks, and the scalar loss it backs.

Inputs come from, in order: an explicit tensor/tuple/dict, an `--input` file, `--input-shape`,
the source's `example_input()`, or inference from the model's configuration (a Hugging Face config,
timm's pretrained_cfg) or its first layer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gradflow.choices import Loss
from gradflow.errors import ProbeError, first_line


@dataclass(frozen=True)
class Probe:
    """Positional and keyword inputs for one forward pass."""

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def tensors(self) -> list[torch.Tensor]:
        found = [a for a in self.args if isinstance(a, torch.Tensor)]
        return found + [v for v in self.kwargs.values() if isinstance(v, torch.Tensor)]

    def to(self, device: torch.device) -> Probe:
        def move(value: Any) -> Any:
            return value.to(device) if isinstance(value, torch.Tensor) else value

        return Probe(tuple(move(a) for a in self.args), {k: move(v) for k, v in self.kwargs.items()})


def as_probe(inputs: Any) -> Probe:
    """A tensor, a tuple/list of positional arguments, a dict of keyword arguments, or a Probe;
    every tensor in it must hold at least one element."""
    return require_samples(_as_probe(inputs))


def _as_probe(inputs: Any) -> Probe:
    if isinstance(inputs, Probe):
        return inputs
    if isinstance(inputs, torch.Tensor):
        return Probe((inputs,))
    if isinstance(inputs, Mapping):
        return Probe((), dict(inputs))
    if isinstance(inputs, (tuple, list)):
        return Probe(tuple(inputs))
    if isinstance(inputs, __import__("numpy").ndarray):
        return Probe((torch.from_numpy(inputs),))
    raise ProbeError(
        f"probe inputs must be a tensor, a tuple of tensors or a dict of tensors, not {type(inputs).__name__}"
    )


def require_samples(probe: Probe) -> Probe:
    """The probe itself, if no input tensor is empty: an empty batch has no gradient to measure
    (every norm 0, the loss nan), which would read as a model whose gradient vanishes."""
    named = [(f"input {i}", a) for i, a in enumerate(probe.args)]
    named += [(f"input {k!r}", v) for k, v in probe.kwargs.items()]
    for name, value in named:
        if isinstance(value, torch.Tensor) and value.numel() == 0:
            shape = "x".join(str(size) for size in value.shape)
            raise ProbeError(
                f"the probe {name} has no elements (shape {shape}): give a batch of at least one sample"
            )
    return probe


def detached_inputs(probe: Probe) -> tuple[Probe, list[torch.Tensor]]:
    """The inputs for the probe's forward pass, and the leaves whose gradients reach them.

    Each floating input becomes a leaf that requires grad (so a fork at the model input is
    found) and the model gets `leaf.clone()`: a copy it may write into, as some models do with
    their input, which a leaf that requires grad would refuse. The user's tensors are never
    touched. Other inputs (token ids, masks) are plain copies.
    """
    leaves: list[torch.Tensor] = []

    def copy(value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        if value.is_floating_point() or value.is_complex():
            leaf = value.detach().requires_grad_(True)
            leaves.append(leaf)
            return leaf.clone()
        return value.detach().clone()

    probe = Probe(tuple(copy(a) for a in probe.args), {k: copy(v) for k, v in probe.kwargs.items()})
    return probe, leaves


_DTYPES = {
    "float32": torch.float32,
    "float": torch.float32,
    "float64": torch.float64,
    "double": torch.float64,
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "long": torch.int64,
    "int32": torch.int32,
    "int": torch.int32,
    "bool": torch.bool,
}


def parse_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name.lower()]
    except KeyError:
        raise ProbeError(f"unknown dtype {name!r}: use one of {', '.join(sorted(set(_DTYPES)))}") from None


# Positive sizes separated by "," or "x", with optional spaces around the separators.
_SHAPE = re.compile(r"\s*[0-9]+(?:\s*[,x]\s*[0-9]+)*\s*")


def parse_shape(text: str) -> tuple[int, ...]:
    """'8,3,32,32', '8x3x32x32' or '8, 3, 32, 32' -> (8, 3, 32, 32); anything else is refused."""
    shape = tuple(int(size) for size in re.split(r"[,x]", text)) if _SHAPE.fullmatch(text) else ()
    if not shape or any(size <= 0 for size in shape):
        raise ProbeError(
            f"bad --input-shape {text!r}: write positive integer sizes separated by commas or x, "
            "e.g. --input-shape 8,3,32,32"
        )
    return shape


def random_tensor(
    shape: Sequence[int], dtype: torch.dtype, generator: torch.Generator, high: int = 2
) -> torch.Tensor:
    """Seeded normal noise for floating dtypes, uniform integers in [0, high) otherwise."""
    if dtype.is_floating_point:
        return torch.randn(tuple(shape), generator=generator).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, tuple(shape), generator=generator).bool()
    return torch.randint(0, max(1, high), tuple(shape), generator=generator, dtype=dtype)


def from_shapes(shapes: Sequence[tuple[int, ...]], dtype: torch.dtype, seed: int, high: int = 2) -> Probe:
    generator = torch.Generator().manual_seed(seed)
    return Probe(tuple(random_tensor(s, dtype, generator, high) for s in shapes))


def from_file(path: str | Path) -> Probe:
    """`.pt` (tensor, tuple, or dict; weights_only), `.npy`, `.npz` (arrays as keyword inputs)."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".pt", ".pth"):
            return as_probe(torch.load(path, weights_only=True, map_location="cpu"))
        if suffix == ".npy":
            return Probe((torch.from_numpy(np.load(path, allow_pickle=False)),))
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return Probe((), {k: torch.from_numpy(data[k]) for k in data.files})
    except ProbeError:
        raise
    except Exception as e:  # corrupt files raise many types
        raise ProbeError(f"cannot read input file {path}: {type(e).__name__}: {first_line(e)}") from e
    raise ProbeError(f"unsupported input file {path.name}: use .pt, .npy or .npz")


def infer(model: torch.nn.Module, batch_size: int, seed: int, high: int | None = None) -> Probe:
    """Guess a probe batch: from the model's own configuration (a Hugging Face config, timm's
    pretrained_cfg; see gradflow.loaders.config_inputs), else from its first layer. Token ids
    are drawn from [0, high), by default [0, vocabulary size)."""
    from gradflow.loaders.config_inputs import config_inputs

    configured = config_inputs(model, batch_size, seed, high)
    if configured is not None:
        return as_probe(configured)
    generator = torch.Generator().manual_seed(seed)
    config = getattr(model, "config", None)
    vocab = getattr(config, "vocab_size", None)
    if isinstance(vocab, int) and vocab > 0 and _takes_token_ids(model):
        ids = torch.randint(0, high or vocab, (batch_size, 16), generator=generator)
        return Probe((), {"input_ids": ids})
    for module in model.modules():
        # By class name and weight shape, so scripted modules (RecursiveScriptModule) work too.
        kind = getattr(module, "original_name", None) or type(module).__name__
        weight = getattr(module, "weight", None)
        if kind not in _FIRST_LAYERS or not isinstance(weight, torch.Tensor):
            continue
        if kind == "Embedding":
            ids = torch.randint(0, high or weight.shape[0], (batch_size, 16), generator=generator)
            return Probe((ids,))
        if kind == "Linear":
            return Probe((torch.randn((batch_size, weight.shape[1]), generator=generator),))
        groups = int(getattr(module, "groups", 1) or 1)
        shape = (batch_size, weight.shape[1] * groups, *_FIRST_LAYERS[kind])
        return Probe((torch.randn(shape, generator=generator),))
    raise ProbeError(
        "cannot infer a probe input for this model: pass its shape, e.g. --input-shape 8,3,224,224 "
        "(repeat for several inputs), or --input FILE"
    )


# Layers a probe can be inferred from, with the spatial size given to convolutions.
_FIRST_LAYERS: dict[str, tuple[int, ...]] = {
    "Embedding": (),
    "Linear": (),
    "Conv1d": (64,),
    "Conv2d": (32, 32),
    "Conv3d": (16, 16, 16),
}


def _takes_token_ids(model: torch.nn.Module) -> bool:
    import inspect as pyinspect

    try:
        return "input_ids" in pyinspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def from_example(example: Callable[[], Any]) -> Probe:
    try:
        return as_probe(example())
    except ProbeError:
        raise
    except Exception as e:
        raise ProbeError(f"example_input() raised {type(e).__name__}: {first_line(e)}") from e


# The fields of a dict or ModelOutput the loss is taken on, in order of preference: class scores
# (`logits`; CLIP-style image-text scores), else hidden states, which are no class scores, so
# `auto` takes the mse on them.
_SCORES = ("logits", "logits_per_image")
_HIDDEN = ("last_hidden_state",)
# Set on an output tensor picked from a hidden-state field, so `auto` knows what it is; the
# attribute lives and dies with that one tensor of one forward pass.
_PICKED_HIDDEN = "_gradflow_hidden_state"


def select_output(output: Any) -> torch.Tensor:
    """The tensor the loss is taken on: a tensor; the first floating tensor of a tuple/list;
    a dict's or ModelOutput's `logits`, else `logits_per_image` (CLIP-style models), else
    `last_hidden_state`, else its first floating tensor."""
    if isinstance(output, torch.Tensor):
        if output.is_floating_point() or output.is_complex():
            return output
    elif isinstance(output, Mapping) or hasattr(output, "keys"):
        for key in _SCORES + _HIDDEN:
            value = output.get(key) if hasattr(output, "get") else None
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                if key in _HIDDEN:
                    setattr(value, _PICKED_HIDDEN, True)
                return value
        for value in output.values():
            found = _first_floating(value)
            if found is not None:
                return found
    elif isinstance(output, (tuple, list)):
        found = _first_floating(output)
        if found is not None:
            return found
    raise ProbeError(
        f"the model output has no floating-point tensor to take a loss on "
        f"(got {_describe(output)}); return the tensor to differentiate"
    )


def _first_floating(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value if value.is_floating_point() else None
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_floating(item)
            if found is not None:
                return found
    if isinstance(value, Mapping):
        for item in value.values():
            found = _first_floating(item)
            if found is not None:
                return found
    return None


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of dtype {str(value.dtype).replace('torch.', '')}"
    return type(value).__name__


def resolve_loss(loss: Loss | str, output: torch.Tensor) -> Loss:
    """`loss`, or for auto: ce on class scores (a last dimension of at least 2 classes), mse on
    anything else, hidden states picked by `select_output` included."""
    loss = Loss(loss)
    if loss is not Loss.AUTO:
        return loss
    if getattr(output, _PICKED_HIDDEN, False):
        return Loss.MSE
    return Loss.CE if output.dim() >= 2 and output.shape[-1] >= 2 else Loss.MSE


PROBABILITIES_NOTE = (
    "the model output holds a softmax's probabilities: the ce loss is the negative "
    "log-likelihood of the seeded labels under them (no second softmax)"
)


def holds_probabilities(model: Any, output: Any, chosen: torch.Tensor) -> bool:
    """Whether `chosen`, the tensor picked from the model's `output`, holds probabilities over
    its last dim, as the model says (`OnnxModel.holds_probabilities`: a graph output a Softmax
    produced)."""
    check = getattr(model, "holds_probabilities", None)
    return bool(check is not None and check(output, chosen))


def probe_loss(
    output: torch.Tensor,
    loss: Loss | str,
    seed: int,
    share: tuple[int, int] = (0, 1),
    *,
    probabilities: bool = False,
) -> torch.Tensor:
    """The scalar to differentiate. `ce` uses seeded random class labels over the last dim; on
    `probabilities` (a softmax's output) it is their negative log-likelihood, since a
    cross-entropy would take them for scores and apply a second softmax.

    share: (rank, ranks) when the batch is split over data-parallel ranks: the output is one
    rank's slice, and its `ce` labels are that slice of the labels of the whole batch (the ranks'
    slices of equal size, in rank order), as one process would draw them."""
    kind = resolve_loss(loss, output)
    if kind is Loss.SUM:
        return output.sum()
    if kind is Loss.MEAN:
        return output.mean()
    if kind is Loss.MSE:
        return output.float().pow(2).mean()
    if output.dim() < 1 or output.shape[-1] < 2:
        raise ProbeError(
            f"--loss ce needs an output whose last dimension has at least 2 classes, "
            f"got shape {list(output.shape)}; use --loss mse or sum"
        )
    generator = torch.Generator().manual_seed(seed)
    classes = output.shape[-1]
    logits = output.reshape(-1, classes).float()
    rows = logits.shape[0]
    rank, ranks = share
    labels = torch.randint(0, classes, (rows * ranks,), generator=generator)[rank * rows : (rank + 1) * rows]
    if output.device.type == "cuda":  # from pinned memory the copy does not wait for the device
        labels = labels.pin_memory().to(output.device, non_blocking=True)
    else:
        labels = labels.to(output.device)
    if probabilities:
        return probabilities_nll(logits, labels)
    return torch.nn.functional.cross_entropy(logits, labels)


def probabilities_nll(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean negative log-likelihood of `labels` under rows of `probabilities` ([rows,
    classes]); a probability of 0 costs a large, finite loss."""
    tiny = torch.finfo(torch.float32).tiny
    return torch.nn.functional.nll_loss(torch.log(probabilities.clamp_min(tiny)), labels)

