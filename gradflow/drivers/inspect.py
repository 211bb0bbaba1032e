"""`gradflow.inspect`: one model, one probe, one Report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from gradflow.choices import Loss, Mode
from gradflow.engine.measure import LossChoice, VariantSpec, measure
from gradflow.engine.report import Report, Thresholds


def inspect(
    model: torch.nn.Module,
    inputs: Any,
    *,
    loss: LossChoice = Loss.AUTO,
    mode: Mode | str = Mode.TRAIN,
    seed: int = 0,
    sg_skip: bool = False,
    sg_block: bool = False,
    at: Sequence[str] | None = None,
    thresholds: Thresholds | None = None,
    source: str = "<module>",
    source_format: str = "module",
) -> Report:
    """Measure the gradient on the skip and block path of every residual junction.

    Args:
        model: any nn.Module; it comes back untouched (parameters, buffers, grads, mode, hooks).
        inputs: a tensor, a tuple of positional arguments, or a dict of keyword arguments.
        loss: "auto" | "sum" | "mean" | "mse" | "ce" (see `gradflow.probe.probe_loss`), or a
            function of the model output (as the model returns it) to a scalar tensor, e.g.
            `lambda out: F.cross_entropy(out, y)`; the report's probe loss is then "custom".
        mode: "train" or "eval" for the probe's forward pass. An ONNX graph runs in the mode its
            nodes fix (`OnnxModel.exported_mode`); the report says that mode, with a note.
        seed: seeds dropout and the `ce` labels, so runs repeat exactly.
        sg_skip / sg_block: stop the gradient on the skip / block path of the selected junctions.
        at: junction names (globs), indices or ranges the stop-gradient applies to (default all).
        thresholds: when a junction is flagged vanishing, exploding or dead.
    Returns:
        A Report, one Junction per residual add in forward order.

    Example:
        >>> report = gradflow.inspect(model, torch.randn(8, 3, 32, 32))
        >>> [j.name for j in report.junctions if j.status != "ok"]
    """
    name = "-".join(n for n, on in (("sg-skip", sg_skip), ("sg-block", sg_block)) if on)
    variant = VariantSpec(name or "baseline", sg_skip, sg_block)
    return measure(
        model,
        inputs,
        [variant],
        loss=loss,
        mode=mode,
        seed=seed,
        at=at,
        thresholds=thresholds,
        source=source,
        source_format=source_format,
    )[0]
