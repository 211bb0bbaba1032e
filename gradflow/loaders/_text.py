"""One-line messages from exceptions whose text we do not control."""

from __future__ import annotations

import re
import traceback
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SPACE = re.compile(r"\s+")


def one_line(text: str, limit: int = 160) -> str:
    """`text` with ANSI codes removed, whitespace runs (newlines included) collapsed, and cut
    to `limit` characters."""
    text = _SPACE.sub(" ", _ANSI.sub("", text)).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def describe(exc: BaseException) -> str:
    """`ExcType: first part of the message`, on one line."""
    text = exc.msg if isinstance(exc, SyntaxError) and exc.msg else str(exc)
    message = one_line(text)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def shorten(items: list[str], limit: int = 6) -> str:
    """`a, b, c` or `a, b, c, … (+7 more)` for long lists."""
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", … (+{len(items) - limit} more)"


def location(exc: BaseException, prefer: Path | None = None) -> str | None:
    """Where `exc` was raised, as `file:line`.

    Prefers the deepest frame inside the folder `prefer` (the user's code) over frames in
    libraries; a SyntaxError reports the offending line of the file being compiled.
    """
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f"{_short(exc.filename)}:{exc.lineno}"
    here = Path(__file__).parent.resolve()  # gradflow.loaders' own frames say nothing useful
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith("<frozen") and not _is_under(Path(f.filename), here)
    ]
    if prefer is not None:
        folder = prefer.resolve()
        mine = [f for f in frames if _is_under(Path(f.filename), folder)]
        frames = mine or frames
    if not frames:
        return None
    return f"{_short(frames[-1].filename)}:{frames[-1].lineno}"


def failure(exc: BaseException, prefer: Path | None = None) -> str:
    """`ExcType: message (at file:line)` on one line."""
    where = location(exc, prefer)
    return describe(exc) + (f" (at {where})" if where else "")


def _is_under(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder)
    except (ValueError, OSError):
        return False
    return True


def _short(filename: str) -> str:
    """A path relative to the working directory when it is below it, else as given."""
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return filename
