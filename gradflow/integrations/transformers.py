"""`GradFlowCallback` for the Hugging Face `Trainer`: `gradflow.watch` on the model the Trainer
trains, with the Trainer's gradient accumulation.

The watch measures a step on that step's own backward pass, from hooks that fire during it, so
its numbers are the gradients before the Trainer clips them (`max_grad_norm`), although every
TrainerCallback hook runs after clipping. The Trainer's loss is not passed to callbacks: records
carry `loss=None` (the Trainer logs its own loss).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from gradflow.errors import OptionError

try:
    from transformers import TrainerCallback
except ImportError:  # the callback then says what to install when it is made
    TrainerCallback = object  # type: ignore[misc,assignment]

if TYPE_CHECKING:
    from gradflow.gate.settings import CheckSettings
    from gradflow.watching.record import WatchRecord
    from gradflow.watching.rules import OnFlag
    from gradflow.watching.session import Watch


class GradFlowCallback(TrainerCallback):  # type: ignore[misc]  # Any when transformers is untyped
    """Watch the gradient flow of a Hugging Face `Trainer`'s model every `every` optimizer steps.

    `Trainer(..., callbacks=[GradFlowCallback(every=100, log="runs/flow.jsonl")])`. At the start
    of training it calls `gradflow.watch(model, accumulate=args.gradient_accumulation_steps, ...)`
    on the model the Trainer trains, marks each optimizer step at its end, and closes the watch
    when training ends. The numbers are taken before gradient clipping. Under fp16 pass
    `scaler=trainer.accelerator.scaler` (set on the callback before `train()`), or the numbers
    are scaled.

    Args:
        every, log, tensorboard, sink, on_flag, at, settings: as for `gradflow.watch`.
        scaler: the GradScaler the Trainer scales the loss with (fp16), or None.

    Attributes:
        watch: the `gradflow.Watch` of the current (or last) training run; None before one.

    Example:
        >>> from gradflow.integrations.transformers import GradFlowCallback
        >>> flow = GradFlowCallback(every=50, log="runs/flow.jsonl")
        >>> Trainer(model=model, args=args, train_dataset=data, callbacks=[flow]).train()
        >>> flow.watch.records[-1]
    """

    def __init__(
        self,
        every: int = 100,
        *,
        log: str | os.PathLike[str] | None = None,
        tensorboard: Any = None,
        sink: Callable[[WatchRecord], Any] | None = None,
        on_flag: str | OnFlag = "warn",
        scaler: Any = None,
        at: Sequence[str] | None = None,
        settings: CheckSettings | None = None,
    ) -> None:
        if TrainerCallback is object:
            raise ImportError("gradflow.integrations.transformers needs the transformers package: "
                              "pip install transformers")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise OptionError(f"every must be a positive integer, got {every!r}")
        self.every = every
        self.scaler = scaler
        self._options: dict[str, Any] = {"log": log, "tensorboard": tensorboard, "sink": sink,
                                         "on_flag": on_flag, "at": at, "settings": settings}
        self.watch: Watch | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       **kwargs: Any) -> None:
        from gradflow.drivers.watch import watch

        if model is None:
            raise OptionError("GradFlowCallback: the Trainer passed no model to on_train_begin")
        self._close()
        self.watch = watch(model, every=self.every, accumulate=args.gradient_accumulation_steps,
                           scaler=self.scaler, **self._options)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.watch is not None:
            self.watch.step()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._close()

    def _close(self) -> None:
        if self.watch is not None:
            self.watch.close()
