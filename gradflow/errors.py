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


class LogError(GradflowError):
    """A watch log cannot be read: missing, empty, not a `gradflow/watch@1` log, or a line that is
    not one of its records."""


class UnsupportedOpError(SourceError):
    """An ONNX graph uses operators the executor does not implement."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when there is none),
    for the one-line messages above."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip().rstrip(".")
    return type(error).__name__


class GradientFlowError(RuntimeError):
    """Raised by `gradflow.watch(..., on_flag="raise")` when a rule flags a measured step.

    Attributes:
        junction: the junction the rule flagged (None for a model-wide or parameter rule).
        rule: the rule's name (`dead`, `exploding`, `vanishing`, `nonfinite`, `cut`, ...).
        subject: what the rule is about: the junction, the parameter or the model-wide span.
        step: the training step whose numbers broke the rule.

    Example:
        >>> try:
        ...     with gradflow.watch(model, every=50, on_flag="raise"):
        ...         train(model)
        ... except gradflow.GradientFlowError as e:
        ...     print(e.step, e.junction, e.rule)
    """

    def __init__(
        self, message: str, *, rule: str, junction: str | None, subject: str, step: int
    ) -> None:
        super().__init__(message)
        self.rule = rule
        self.junction = junction
        self.subject = subject
        self.step = step


class GradientFlowWarning(UserWarning):
    """Issued once per (subject, rule) by `gradflow.watch(..., on_flag="warn")`."""
