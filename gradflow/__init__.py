"""gradflow: is gradient actually getting through my network?

Find every residual junction (`y = skip + block(x)`) in a model, run a seeded probe batch forward
and backward, and measure the gradient on the skip and block path of each.

    >>> import gradflow
    >>> report = gradflow.inspect(model, torch.randn(8, 3, 32, 32))
    >>> report.junctions[0].grad_block

Importing gradflow does not import torch; the verbs do, when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradflow._version import __version__
from gradflow.engine.report import Junction, Report, Status, Thresholds

if TYPE_CHECKING:
    from gradflow.engine.measure import inspect as inspect

__all__ = ["Junction", "Report", "Status", "Thresholds", "__version__", "inspect"]


def __getattr__(name: str) -> Any:
    if name == "inspect":
        from gradflow.engine.measure import inspect

        return inspect
    raise AttributeError(f"module 'gradflow' has no attribute {name!r}")
