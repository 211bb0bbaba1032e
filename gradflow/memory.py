"""The memory guard: refuse a probe that cannot fit before allocating it, with the flag to override.

Two estimates, both made before anything large is allocated:
- the probe batch itself (from --input-shape, inference or an ONNX signature), checked against
  a quarter of the limit, since activations take several times the input;
- the run: the probe batch plus one gradient per trainable parameter (what the backward pass
  must hold at least), checked against the limit.
The limit is the memory available on the probe's device (MemAvailable on the host, free memory
on a GPU) unless --memory-limit sets it; --memory-limit none turns the guard off.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from gradflow.errors import OptionError, ProbeError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1e3,
    "kb": 1e3,
    "kib": 2**10,
    "m": 1e6,
    "mb": 1e6,
    "mib": 2**20,
    "g": 1e9,
    "gb": 1e9,
    "gib": 2**30,
    "t": 1e12,
    "tb": 1e12,
    "tib": 2**40,
}
OVERRIDE = (
    "lower --batch-size or --input-shape, or raise the limit with --memory-limit SIZE "
    "(none turns the guard off)"
)


def parse_size(text: str) -> int | None:
    """'8GiB', '500MB', '1e9', 'none' -> bytes (None: no limit)."""
    cleaned = text.strip().lower().replace(" ", "")
    if cleaned in ("none", "off", "0"):
        return None
    match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[0-9]+)?)([a-z]*)", cleaned)
    if not match or match.group(2) not in _UNITS:
        raise OptionError(f"bad --memory-limit {text!r}: write a size such as 8GiB or 500MB, or none")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def human(size: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


def available(device: Any = "cpu") -> int | None:
    """Bytes free on `device` now, or None when unknown."""
    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def tensor_bytes(shape: Sequence[int], itemsize: int) -> int:
    return math.prod(int(s) for s in shape) * itemsize


def check_probe(shapes: Iterable[tuple[Sequence[int], int]], limit: int | None) -> None:
    """Before allocating: refuse a probe batch larger than a quarter of the limit."""
    if limit is None:
        return
    total = sum(tensor_bytes(shape, itemsize) for shape, itemsize in shapes)
    if total > limit // 4:
        raise ProbeError(
            f"the probe batch alone would take {human(total)}, more than a quarter of the "
            f"{human(limit)} memory limit; {OVERRIDE}"
        )


def check_run(model: Any, probe_tensors: Iterable[Any], limit: int | None) -> None:
    """Before running: the probe plus one gradient per trainable parameter must fit."""
    if limit is None:
        return
    inputs = sum(t.numel() * t.element_size() for t in probe_tensors)
    grads = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    if inputs + grads > limit:
        raise ProbeError(
            f"the probe needs at least {human(inputs + grads)} (parameter gradients "
            f"{human(grads)}, inputs {human(inputs)}) but the memory limit is {human(limit)}; {OVERRIDE}"
        )
