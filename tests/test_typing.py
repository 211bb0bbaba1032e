"""gradflow is a typed package: it ships py.typed, mypy finds no error in it, and the public
names carry complete signatures and precise types (tests/typed_api.py)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import gradflow
from tests.conftest import ROOT


def test_the_package_is_marked_typed() -> None:
    assert (ROOT / "gradflow" / "py.typed").is_file()


def test_every_public_function_has_a_complete_signature() -> None:
    functions = [getattr(gradflow, name) for name in gradflow.__all__ if callable(getattr(gradflow, name))
                 and not isinstance(getattr(gradflow, name), type)]
    assert {f.__name__ for f in functions} >= {"inspect", "compare", "check"}
    for function in functions:
        signature = inspect.signature(function)
        missing = [p.name for p in signature.parameters.values() if p.annotation is p.empty]
        assert not missing, (function.__name__, missing)
        assert signature.return_annotation is not signature.empty, function.__name__
        assert all(p.kind is not p.VAR_KEYWORD for p in signature.parameters.values()), function.__name__


def test_mypy_finds_no_error() -> None:
    """One run over the package and a user's view of it; mypy's cache (.mypy_cache) keeps
    repeated runs to seconds."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "gradflow", "tests/typed_api.py"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
