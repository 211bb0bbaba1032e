"""Silence the libraries that build a model (transformers, huggingface_hub, timm) while they do.

They log notes, warnings and retries and draw progress bars on stderr while they load; the user
asked for gradflow's report, and a failure is gradflow's one line. Everything is restored on the
way out, on success or error.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

LIBRARIES = ("transformers", "huggingface_hub", "timm")


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """No log records below CRITICAL, no warnings and no progress bars from LIBRARIES inside."""
    loggers = [logging.getLogger(name) for name in LIBRARIES]
    levels = [logger.level for logger in loggers]
    with ExitStack() as stack:
        try:
            for logger in loggers:
                logger.setLevel(logging.CRITICAL)
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
            stack.enter_context(_no_progress_bars())
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Progress bars off in transformers and huggingface_hub (when installed), then back as they
    were."""
    undo = []
    try:
        hub = _optional("huggingface_hub.utils")
        if hub is not None and not hub.are_progress_bars_disabled():
            hub.disable_progress_bars()
            undo.append(hub.enable_progress_bars)
        hf_logging = _optional("transformers.utils.logging")
        if hf_logging is not None and hf_logging.is_progress_bar_enabled():
            hf_logging.disable_progress_bar()
            undo.append(hf_logging.enable_progress_bar)
        yield
    finally:
        for restore in reversed(undo):
            restore()


def _optional(name: str):  # type: ignore[no-untyped-def]  # a module, or None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
