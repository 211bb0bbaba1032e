"""Option sets shared by the Python API and the command line (no torch import here)."""

from __future__ import annotations

import enum


class Loss(str, enum.Enum):
    """How the probe turns the model output into a scalar to differentiate."""

    AUTO = "auto"
    SUM = "sum"
    MEAN = "mean"
    MSE = "mse"
    CE = "ce"

    def __str__(self) -> str:
        return self.value


class Mode(str, enum.Enum):
    """The mode the probe's forward pass runs in."""

    TRAIN = "train"
    EVAL = "eval"

    def __str__(self) -> str:
        return self.value
