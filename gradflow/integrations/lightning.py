"""`GradFlowCallback` for Lightning (`lightning.pytorch`, or the older `pytorch_lightning`):
`gradflow.watch` on the LightningModule (or one of its submodules), with the Trainer's gradient
accumulation and the GradScaler of its mixed-precision plugin.

The watch measures a step on that step's own backward pass, from hooks that fire during it: its
numbers are the gradients before Lightning clips them (`gradient_clip_val`, applied after
`on_before_optimizer_step`). Steps are counted by forward passes of the watched module made with
grad enabled, so `training_step` must call it (`self(x)`, or the submodule named by `module=`);
validation runs without grad and is not counted.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from gradflow.errors import OptionError

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:
    try:
        from pytorch_lightning.callbacks import Callback  # type: ignore[assignment]  # the same class, older package
    except ImportError:  # the callback then says what to install when it is made
        Callback = object  # type: ignore[misc,assignment]

if TYPE_CHECKING:
    from gradflow.gate.settings import CheckSettings
    from gradflow.watching.record import WatchRecord
    from gradflow.watching.rules import OnFlag
    from gradflow.watching.session import Watch


class GradFlowCallback(Callback):  # type: ignore[misc]  # Any without Lightning's types
    """Watch the gradient flow of a LightningModule every `every` optimizer steps.

    `Trainer(callbacks=[GradFlowCallback(every=100, log="runs/flow.jsonl")])`. When training
    starts it calls `gradflow.watch` on the module, with `accumulate=trainer.accumulate_grad_batches`
    and the precision plugin's GradScaler (16-mixed), passes each training batch's loss to
    `Watch.step`, and closes the watch when training ends or raises. With gradient accumulation a
    step's `loss` is its last micro-batch's.

    Args:
        every, log, tensorboard, sink, on_flag, at, settings: as for `gradflow.watch`.
        module: the attribute path of the submodule `training_step` calls (such as "model" or
            "net.backbone"), when it does not call the LightningModule itself.

    Attributes:
        watch: the `gradflow.Watch` of the current (or last) fit; None before one.

    Example:
        >>> from gradflow.integrations.lightning import GradFlowCallback
        >>> flow = GradFlowCallback(every=50, log="runs/flow.jsonl")
        >>> L.Trainer(max_steps=1000, callbacks=[flow]).fit(module, loader)
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
        at: Sequence[str] | None = None,
        settings: CheckSettings | None = None,
        module: str | None = None,
    ) -> None:
        if Callback is object:
            raise ImportError("gradflow.integrations.lightning needs Lightning: pip install lightning")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise OptionError(f"every must be a positive integer, got {every!r}")
        self.every = every
        self.module = module
        self._options: dict[str, Any] = {"log": log, "tensorboard": tensorboard, "sink": sink,
                                         "on_flag": on_flag, "at": at, "settings": settings}
        self.watch: Watch | None = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        from gradflow.drivers.watch import watch

        target = pl_module
        if self.module is not None:
            try:
                target = operator.attrgetter(self.module)(pl_module)
            except AttributeError:
                raise OptionError(f"GradFlowCallback: {type(pl_module).__name__} has no submodule "
                                  f"{self.module!r}") from None
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        self._close()
        self.watch = watch(target, every=self.every, accumulate=trainer.accumulate_grad_batches,
                           scaler=scaler, **self._options)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.watch is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self.watch.step(loss)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self.watch is not None:
            self.watch.close(flags=False)

    def _close(self) -> None:
        if self.watch is not None:
            self.watch.close()
