"""One exception hierarchy. The CLI maps every GradflowError to a one-line message and exit 2."""

from __future__ import annotations


class GradflowError(Exception):
    """A failure the user can fix: a bad source, a bad input, a bad option.

    The message is one line that says what is wrong and what to do.
    """

    exit_code = 2


class SourceError(GradflowError):
    """The model source cannot be found, read or turned into an nn.Module."""


class ProbeError(GradflowError):
    """The probe inputs cannot be built, or the model rejects them."""


class ModelError(GradflowError):
    """The model raised while running the probe (forward or backward)."""


class OptionError(GradflowError):
    """Command-line options that contradict each other or do not apply."""


class UnsupportedOpError(SourceError):
    """An ONNX graph uses operators the executor does not implement."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when there is none),
    for the one-line messages above."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip().rstrip(".")
    return type(error).__name__
