"""Option sets shared by the Python API and the command line (no torch import here)."""

from __future__ import annotations

import enum


class Choice(str, enum.Enum):
    """A closed set of string values whose `str()` is the value itself ("ce", not "Loss.CE"),
    as the command line, JSON and tables show it."""

    def __str__(self) -> str:
        return self.value


class Loss(Choice):
    """How the probe turns the model output into a scalar to differentiate."""

    AUTO = "auto"
    SUM = "sum"
    MEAN = "mean"
    MSE = "mse"
    CE = "ce"


class Mode(Choice):
    """The mode the probe's forward pass runs in."""

    TRAIN = "train"
    EVAL = "eval"
