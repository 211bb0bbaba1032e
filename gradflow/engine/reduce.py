"""The ranks' numbers made one: identity on one process, one all-reduce under torchrun.

A data-parallel wrapper (`gradflow.engine.parallel`) optimises L = (1/W) * sum over ranks r of
L_r, each rank's loss on its own slice of the batch. Each rank's taps measure the gradients of
its own L_r, over its own samples, so an activation's gradient of L is, rank by rank, 1/W times
the local one, and the ranks' slices together make the whole tensor: its squared norm is
(1/W^2) * the sum of the ranks' squared norms, and so is a dot product. Parameter gradients are
the reduced ones the optimizer sees: each rank holds a disjoint shard (FSDP2) or the whole of it
(DDP), so the squared norms of the shards add up, with a replicated one counted once.

Everything a measurement needs from the other ranks travels in one all-reduce (a sum, in
float64): the activation squares and dot products, the parameter shards' squares, the losses,
and a check that the ranks measured the same junctions: each rank adds a hash h of the list and
h^2, and the ranks agree if and only if W * sum(h^2) - sum(h)^2, W times the variance, is 0.
The vector's length must not depend on the junction list, which the ranks may not agree on, so
it has room for as many junctions as the model has trainable parameters; a model with more
junctions than that sends the rest in a second all-reduce.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch

from gradflow.engine.parallel import DataParallel
from gradflow.engine.report import Located, Measured
from gradflow.errors import ModelError, first_line

_CHUNKS = 4  # the hash's 12-bit parts: W * sum(h^2) stays exact in float64 up to 20,000 ranks
_PER_JUNCTION = 5  # grad_out^2, grad_skip^2, grad_block^2, grad_in^2, the dot product
_PER_PARAM = 3  # has a gradient (0/1), its squared norm, its value (one-element parameters)


def reduce(
    measured: Sequence[Measured],
    parallel: DataParallel | None,
    params: Sequence[torch.Tensor],
    junctions: Sequence[Located],
    device: torch.device | None = None,
) -> list[Measured]:
    """The numbers of the loss all ranks optimise together, from each rank's `measured`.

    Any driver calls it between the taps and `build_report`; every rank must call it alike.

    Args:
        measured: one rank's numbers of each backward pass, with the parameter gradients of
            `parallel.local_grads(params)`.
        parallel: the wrapper (`DataParallel.of(model)`); None on one process.
        params: the trainable parameters as the model lists them (FSDP2's sharded ones), in
            `measured.param_norms` order.
        junctions: the measured junctions, in `measured`'s order: the ranks must agree on them,
            or this raises a ModelError on every rank.
        device: the model's device (the all-reduce runs on it when it is a CUDA device).
    Returns:
        `measured` itself on one process; otherwise one Measured per pass, the same on every rank.

    Example:
        >>> (measured,) = reduce([taps.collect(parallel.local_grads(params), params, loss)],
        ...                      parallel, params, located)
    """
    if parallel is None:
        return list(measured)
    counted = parallel.counted(params)
    size = parallel.size
    capacity = len(params)
    count = len(measured[0].grad_out) if measured else 0
    head = [float(count), float(count) ** 2]
    for h in _hash_chunks([_described(j) for j in junctions]):
        head += [float(h), float(h) ** 2]
    body: list[float] = []
    for m in measured:
        body += [m.loss if m.loss is not None else math.nan, *_present(m.grad_output)]
        for k, on in enumerate(counted):
            norm, value = m.param_norms[k], m.param_values[k]
            body += [0.0, 0.0, 0.0] if not on or norm is None else [1.0, norm * norm, value or 0.0]
    inside = [x for m in measured for k in range(min(count, capacity)) for x in _row(m, k)]
    inside += [0.0] * (_PER_JUNCTION * capacity * len(measured) - len(inside))
    target = parallel.device(device or torch.device("cpu"))
    summed = _all_reduce(head + body + inside, parallel, target)
    _check_agreement(summed[: len(head)], size)
    if count > capacity:  # the ranks agree on `count`: the rest has one length everywhere
        rest = [x for m in measured for k in range(capacity, count) for x in _row(m, k)]
        summed += _all_reduce(rest, parallel, target)
    return _unpacked(summed[len(head) :], measured, count, capacity, size)


def _described(junction: Located) -> str:
    """What the ranks must agree on about a junction: its name, paths and size."""
    blocks = " ".join(junction.block_modules)
    return f"{junction.name} {junction.skip} {junction.cut} {junction.params} {blocks}"


def _row(m: Measured, k: int) -> list[float]:
    dot = m.dot[k]
    return [
        m.grad_out[k] ** 2,
        m.grad_skip[k] ** 2,
        m.grad_block[k] ** 2,
        m.grad_in[k] ** 2,
        math.nan if dot is None else dot,
    ]


def _present(norm: float | None) -> list[float]:
    return [0.0, 0.0] if norm is None else [1.0, norm * norm]


def _hash_chunks(junctions: Sequence[str]) -> list[int]:
    digest = int.from_bytes(hashlib.sha256("\n".join(junctions).encode()).digest()[:6], "big")
    return [(digest >> (12 * i)) & 0xFFF for i in range(_CHUNKS)]


def _all_reduce(values: list[float], parallel: DataParallel, device: torch.device) -> list[float]:
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    try:
        dist.all_reduce(tensor, group=parallel.group)
    except Exception as e:
        raise ModelError(
            f"the all-reduce across the {parallel.size} ranks failed (did another rank fail or stop?): "
            f"{first_line(e)}"
        ) from e
    return tensor.tolist()  # type: ignore[no-any-return]


def _check_agreement(head: list[float], size: int) -> None:
    """Every (sum, sum of squares) pair of `head` has zero variance, or no rank goes on."""
    pairs = [(head[i], head[i + 1]) for i in range(0, len(head), 2)]
    count, count_squares = pairs[0]
    if size * count_squares != count * count:
        raise ModelError(
            f"the ranks found different numbers of junctions ({count / size:g} on average): every rank "
            "must run the same layers on its slice of the batch (no control flow that depends on the data)"
        )
    if any(size * squares != total * total for total, squares in pairs[1:]):
        raise ModelError(
            "the ranks found different junctions (names or order differ): every rank must run the same "
            "layers on its slice of the batch (no control flow that depends on the data or the rank)"
        )


def _unpacked(
    summed: list[float], measured: Sequence[Measured], count: int, capacity: int, size: int
) -> list[Measured]:
    cursor = 0
    out = []
    heads = []
    for m in measured:
        loss, has_output, output = summed[cursor : cursor + 3]
        cursor += 3
        norms: list[float | None] = []
        values: list[float | None] = []
        for k in range(len(m.param_norms)):
            has, square, value = summed[cursor : cursor + _PER_PARAM]
            cursor += _PER_PARAM
            norms.append(math.sqrt(square) if has else None)
            values.append(value if has and m.param_values[k] is not None else None)
        heads.append((loss / size, math.sqrt(output) / size if has_output else None, norms, values))
    inside = summed[cursor : cursor + _PER_JUNCTION * capacity * len(measured)]
    rest = summed[cursor + len(inside) :]
    for v, (loss, grad_output, norms, values) in enumerate(heads):
        rows = []
        for k in range(count):
            if k < capacity:
                start = _PER_JUNCTION * (v * min(count, capacity) + k)
                rows.append(inside[start : start + _PER_JUNCTION])
            else:
                start = _PER_JUNCTION * (v * (count - capacity) + k - capacity)
                rows.append(rest[start : start + _PER_JUNCTION])
        dots = [row[4] / size**2 for row in rows]
        out.append(
            Measured(
                grad_out=[math.sqrt(row[0]) / size for row in rows],
                grad_skip=[math.sqrt(row[1]) / size for row in rows],
                grad_block=[math.sqrt(row[2]) / size for row in rows],
                grad_in=[math.sqrt(row[3]) / size for row in rows],
                dot=[None if d != d else d for d in dots],
                param_norms=norms,
                param_values=values,
                grad_output=grad_output,
                loss=loss,
            )
        )
    return out
