"""Constructor arguments in call syntax: `NAME(key=literal, ...)` after a code source.

`model.py:Net(width=64)`, `torchvision.models:resnet18(num_classes=10)`,
`timm:resnet50(num_classes=10)`. The arguments are parsed, never run: `ast.parse` reads the
text, and each value goes through `ast.literal_eval`, which accepts only Python literals
(numbers, strings, bytes, True/False/None, and tuples, lists, sets and dicts of them).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from gradflow.errors import SourceError
from gradflow.loaders._text import one_line

# A target without parentheses that ends in a name character, then `( ... )` to the end.
_CALL = re.compile(r"(?P<target>[^()]*[\w.])\s*\((?P<arguments>.*)\)\s*", re.DOTALL)

LITERALS = "numbers, strings, True/False/None, or tuples, lists and dicts of them"


def split_call(spec: str) -> tuple[str, dict[str, Any] | None]:
    """`(target, arguments)` for `target(key=value, ...)`; `(spec, None)` when `spec` is no call
    (or names a file that exists, whatever its name looks like).

    Raises:
        SourceError: the text in parentheses is not keyword arguments with literal values.

    Example:
        >>> split_call("timm:resnet18(num_classes=10, drop_rate=0.1)")
        ('timm:resnet18', {'num_classes': 10, 'drop_rate': 0.1})
    """
    match = _CALL.fullmatch(spec)
    if match is None or Path(spec).expanduser().exists():
        return spec, None
    target, text = match["target"].strip(), match["arguments"]
    return target, _keywords(spec, text)


def _keywords(spec: str, text: str) -> dict[str, Any]:
    form = "write NAME(key=value, ...) with literal values"
    try:
        tree = ast.parse(f"_({text})", mode="eval")
    except (SyntaxError, ValueError) as e:  # ValueError: a null byte in the text
        reason = e.msg if isinstance(e, SyntaxError) else str(e)
        raise SourceError(
            f"{spec}: cannot read the constructor arguments ({one_line(reason, 80)}); {form}"
        ) from e
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "_"):
        raise SourceError(f"{spec}: cannot read the constructor arguments; {form}")
    if call.args:
        first = ast.unparse(call.args[0])
        raise SourceError(
            f"{spec}: positional argument {one_line(first, 40)!r}; give every constructor "
            "argument by name, NAME(key=value, ...)"
        )
    arguments: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise SourceError(f"{spec}: ** arguments are not accepted; {form}")
        if keyword.arg in arguments:
            raise SourceError(f"{spec}: argument {keyword.arg} is given twice")
        try:
            arguments[keyword.arg] = ast.literal_eval(keyword.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as e:
            shown = one_line(ast.unparse(keyword.value), 40)
            raise SourceError(
                f"{spec}: the value of {keyword.arg} ({shown}) is not a Python literal; use "
                f"{LITERALS}"
            ) from e
    return arguments


def call_text(arguments: dict[str, Any] | None) -> str:
    """`(key=value, ...)` as the arguments would be written, or "" for no call."""
    if arguments is None:
        return ""
    return "(" + ", ".join(f"{key}={value!r}" for key, value in arguments.items()) + ")"
