"""gradflow: is gradient actually getting through my network?

Find every residual junction (`y = skip + block(x)`) in a model, run a seeded probe batch forward
and backward, and measure the gradient on the skip and block path of each.

    >>> import gradflow
    >>> report = gradflow.inspect(model, torch.randn(8, 3, 32, 32))
    >>> report.junctions[0].grad_block
    >>> gradflow.compare(model, x, sg_skip=True)
    >>> gradflow.check(model, x, seeds=3).passed
    >>> with gradflow.watch(model, every=100) as w:  # inside your own training loop
    ...     train(model)

Results show themselves: `report` in a notebook cell is the table `gradflow inspect` prints (or
its HTML page), and `repr(report)` is one line. The package is typed (`py.typed`); docs/api.md
documents every name in `__all__`.

Importing gradflow does not import torch; the verbs do, when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradflow._version import __version__
from gradflow.drivers.compare import Comparison
from gradflow.engine.report import Junction, Report, Status, Thresholds
from gradflow.errors import GradientFlowError
from gradflow.gate.result import CheckResult
from gradflow.gate.settings import CheckSettings
from gradflow.track.arms import TrackArms
from gradflow.track.result import Track
from gradflow.track.watch_log import WatchLog
from gradflow.watching.record import WatchRecord

if TYPE_CHECKING:
    from gradflow.drivers.check import check as check
    from gradflow.drivers.compare import compare as compare
    from gradflow.drivers.inspect import inspect as inspect
    from gradflow.drivers.watch import watch as watch
    from gradflow.watching.session import Watch as Watch

__all__ = [
    "CheckResult",
    "CheckSettings",
    "Comparison",
    "GradientFlowError",
    "Junction",
    "Report",
    "Status",
    "Thresholds",
    "Track",
    "TrackArms",
    "Watch",
    "WatchLog",
    "WatchRecord",
    "__version__",
    "check",
    "compare",
    "inspect",
    "watch",
]

# The verbs, imported on first use: each pulls in torch.
_VERBS = {
    "inspect": "gradflow.drivers.inspect",
    "compare": "gradflow.drivers.compare",
    "check": "gradflow.drivers.check",
    "watch": "gradflow.drivers.watch",
    "Watch": "gradflow.watching.session",  # imports torch
}

if not TYPE_CHECKING:  # a type checker sees the imports above, and no Any for a misspelt name

    def __getattr__(name: str) -> Any:
        module = _VERBS.get(name)
        if module is None:
            raise AttributeError(f"module 'gradflow' has no attribute {name!r}")
        import importlib

        return getattr(importlib.import_module(module), name)
