"""Training data for `gradflow track --data FILE`: inputs and targets, and seeded batches.

A `.pt` file (read with `weights_only=True`, so it runs no code) holds a dict with
`inputs`/`x` and `targets`/`y`, or a tuple `(inputs, targets)`; an `.npz` file holds arrays
`x`/`y` or `inputs`/`targets`. Batches are drawn by shuffling the samples with a generator seeded
by `--seed`, epoch after epoch, so a run repeats exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gradflow.errors import ProbeError, first_line

_INPUT_KEYS = ("inputs", "x")
_TARGET_KEYS = ("targets", "y")


@dataclass(frozen=True)
class TrainingData:
    """Inputs and targets with the same number of samples along the first dimension."""

    inputs: torch.Tensor
    targets: torch.Tensor
    name: str = "<data>"

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


def as_training_data(value: Any, name: str = "<data>") -> TrainingData:
    """A TrainingData, a dict with inputs/x and targets/y, or an (inputs, targets) pair."""
    if isinstance(value, TrainingData):
        return value
    if isinstance(value, Mapping):
        inputs = _pick(value, _INPUT_KEYS, name, "inputs")
        targets = _pick(value, _TARGET_KEYS, name, "targets")
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        inputs, targets = value
    else:
        raise ProbeError(
            f"{name}: expected a dict with 'inputs' (or 'x') and 'targets' (or 'y'), or a pair "
            f"(inputs, targets); got {type(value).__name__}"
        )
    inputs, targets = _tensor(inputs, name, "inputs"), _tensor(targets, name, "targets")
    if inputs.dim() == 0 or targets.dim() == 0:
        raise ProbeError(f"{name}: inputs and targets need a sample dimension (got a scalar)")
    if inputs.shape[0] != targets.shape[0]:
        raise ProbeError(
            f"{name}: inputs have {inputs.shape[0]} samples but targets have {targets.shape[0]}"
        )
    if inputs.shape[0] == 0:
        raise ProbeError(f"{name}: the data set is empty")
    return TrainingData(inputs, targets, name)


def load_data(path: str | Path) -> TrainingData:
    """Read a `.pt` or `.npz` training set. Bad files raise a one-line ProbeError."""
    import numpy as np

    path = Path(path).expanduser()
    if not path.is_file():
        raise ProbeError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".pt", ".pth", ".npz"):
        raise ProbeError(f"unsupported data file {path.name}: use .pt or .npz")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                value: Any = {k: torch.from_numpy(arrays[k]) for k in arrays.files}
        else:
            value = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # corrupt files raise many types
        raise ProbeError(f"cannot read data file {path}: {type(e).__name__}: {first_line(e)}") from e
    return as_training_data(value, path.name)


def batches(data: TrainingData, batch_size: int, seed: int,
            device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless seeded batches: a fresh permutation per epoch, full batches only (the last
    partial batch of an epoch is dropped unless the whole set is smaller than a batch)."""
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = data.inputs.to(device), data.targets.to(device)
    size = min(batch_size, len(data))
    while True:
        # One host-to-device copy per epoch; batches are then sliced on the device.
        order = torch.randperm(len(data), generator=generator).to(device)
        for start in range(0, len(data) - size + 1, size):
            index = order[start: start + size]
            yield inputs[index], targets[index]


def _pick(value: Mapping[str, Any], keys: tuple[str, ...], name: str, what: str) -> Any:
    for key in keys:
        if key in value:
            return value[key]
    raise ProbeError(
        f"{name}: no {what} found: expected a key {' or '.join(repr(k) for k in keys)}, "
        f"found {', '.join(repr(k) for k in value) or 'none'}"
    )


def _tensor(value: Any, name: str, what: str) -> torch.Tensor:
    import numpy as np

    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise ProbeError(f"{name}: {what} must be a tensor or an array, not {type(value).__name__}")
    return value

