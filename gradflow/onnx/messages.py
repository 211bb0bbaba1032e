"""Helpers for one-line error messages."""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message, for one-line error messages."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip().rstrip(".")
    return type(error).__name__
