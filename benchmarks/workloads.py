"""What is timed: the bare floor (forward, the probe's loss, backward) and gradflow's verbs.

The bare floor uses the same model, batch, mode and loss (`gradflow.probe.probe_loss` on the
output `gradflow.probe.select_output` picks) and differentiates with `torch.autograd.grad` over
the trainable parameters, as a training step would. gradflow also asks for an input's gradient
when a junction forks at the input; that is part of the overhead being measured, not something
the floor should copy (none of the benchmark models needs it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gradflow.drivers.inspect import inspect
from gradflow.engine.measure import BASELINE, VariantSpec, measure
from gradflow.engine.norms import norms_of
from gradflow.engine.replay import forget
from gradflow.probe import probe_loss, select_output

LOSS = "auto"
MODE = "train"
SEED = 0
# What `gradflow compare MODEL --sg-skip --sg-block` measures: k = 3 backward passes.
COMPARE_VARIANTS = (
    BASELINE,
    VariantSpec("sg-skip", sg_skip=True),
    VariantSpec("sg-block", sg_block=True),
)

# The same number of backward passes, none stopped: each does a full backward's work, so the
# ratio to one forward + k backward is gradflow's own cost (a stopped path skips work instead).
EQUAL_WORK_VARIANTS = tuple(VariantSpec(f"baseline-{i}") for i in range(len(COMPARE_VARIANTS)))

Step = Callable[[], Any]


def synchronizer(device: torch.device) -> Callable[[], None]:
    """Waits for queued device work, so a clock read after it covers the work."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def to_device(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    if isinstance(inputs, dict):
        return {k: to_device(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return tuple(to_device(v, device) for v in inputs)
    return inputs


def call(model: torch.nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


def bare_step(model: torch.nn.Module, inputs: Any, backward_passes: int = 1,
              mode: str = MODE) -> Step:
    """One forward pass, the probe's loss, and `backward_passes` backward passes over it."""
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        model.train(mode == "train")
        loss = probe_loss(select_output(call(model, inputs)), LOSS, SEED)
        for k in range(backward_passes):
            torch.autograd.grad(loss, params, retain_graph=k < backward_passes - 1, allow_unused=True)

    return step


def norms_step(model: torch.nn.Module, inputs: Any, mode: str = MODE) -> Step:
    """The bare step, then the one read of the parameter gradients that any exact report needs
    (their norms, brought to the host in one transfer), and nothing else: no hooks, no detection,
    no junction gradients. The norms are taken the fastest way this project knows, the one
    gradflow uses (`gradflow.engine.norms.norms_of`: a BLAS dot product for each large float32 CPU
    tensor, one `_foreach_norm` call for the rest). Its ratio to the bare step is a floor under
    what a gradient-flow measurement can cost on that model."""
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        model.train(mode == "train")
        loss = probe_loss(select_output(call(model, inputs)), LOSS, SEED)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        torch.stack(norms_of([g for g in grads if g is not None])).tolist()

    return step


def inspect_step(model: torch.nn.Module, inputs: Any, mode: str = MODE) -> Step:
    """`gradflow.inspect` as a first measurement of the model (what the command line makes): one
    forward pass, junction detection, one measured backward pass. What the engine kept from an
    earlier measurement of the model is forgotten first."""

    def step() -> None:
        forget(model)
        inspect(model, inputs, loss=LOSS, mode=mode, seed=SEED)

    return step


def repeat_step(model: torch.nn.Module, inputs: Any, mode: str = MODE) -> Step:
    """`gradflow.inspect` of a model measured before with inputs of the same shape, as
    `gradflow.watch` measures every N steps: what the engine kept for the model is reused."""
    return lambda: inspect(model, inputs, loss=LOSS, mode=mode, seed=SEED)


def compare_step(model: torch.nn.Module, inputs: Any) -> Step:
    """`gradflow.engine.measure` with the baseline, sg-skip and sg-block: one forward, k backward."""
    return lambda: measure(model, inputs, COMPARE_VARIANTS, loss=LOSS, mode=MODE, seed=SEED)


def compare_equal_step(model: torch.nn.Module, inputs: Any) -> Step:
    """`gradflow.engine.measure` with k unstopped variants: one forward, k full backward passes."""
    return lambda: measure(model, inputs, EQUAL_WORK_VARIANTS, loss=LOSS, mode=MODE, seed=SEED)


def steps(model: torch.nn.Module, inputs: Any, workload: str) -> Step:
    """The step named `workload`: bare, norms, inspect, repeat, bare-k (k = len(COMPARE_VARIANTS)), compare
    or compare-equal."""
    if workload == "bare":
        return bare_step(model, inputs)
    if workload == "norms":
        return norms_step(model, inputs)
    if workload == "inspect":
        return inspect_step(model, inputs)
    if workload == "repeat":
        return repeat_step(model, inputs)
    if workload == "bare-k":
        return bare_step(model, inputs, backward_passes=len(COMPARE_VARIANTS))
    if workload == "compare":
        return compare_step(model, inputs)
    if workload == "compare-equal":
        return compare_equal_step(model, inputs)
    raise ValueError(f"unknown workload {workload!r}")
