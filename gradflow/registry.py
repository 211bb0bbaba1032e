"""One registry helper for every extension point: ONNX operators (`gradflow.onnx.registry`),
source loaders (`gradflow.loaders.registry`) and check rules (`gradflow.gate.rules`).

A registry maps keys to what was registered under them, in registration order. Registering a key
twice is a programming error, raised at import time where the second registration sits. Asking
for a key nobody registered is an error that names the key and lists the known ones; its type is
the registry owner's choice, so that a user's misspelt rule name is an OptionError (exit 2) while
an operator the executor lacks is an `UnknownOp`. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
F = TypeVar("F")


class Registry(Generic[K, V]):
    """Values of type V under keys of type K.

    Args:
        what: what one entry is, for messages ("rule", "loader", "operator").
        error: the exception a miss raises, called with the message (default LookupError).
        name: how a key reads in messages (default `str`).

    Example:
        >>> shapes: Registry[str, Callable[[float], float]] = Registry("shape")
        >>> @shapes.register("square")
        ... def square(side: float) -> float:
        ...     return side * side
        >>> shapes.get("square")(3.0)
        9.0
        >>> shapes.get("circle")
        Traceback (most recent call last):
        LookupError: unknown shape 'circle': the shapes are square
    """

    def __init__(self, what: str, *, error: Callable[[str], Exception] = LookupError,
                 name: Callable[[K], str] = str) -> None:
        self.what = what
        self._error = error
        self._name = name
        self._entries: dict[K, V] = {}

    def add(self, key: K, value: V) -> V:
        """Register `value` under `key` and return it.

        Raises:
            ValueError: `key` is already registered.
        """
        if key in self._entries:
            raise ValueError(f"{self.what} {self._name(key)!r} is already registered")
        self._entries[key] = value
        return value

    def register(self, key: K, build: Callable[[F], V] | None = None) -> Callable[[F], F]:
        """Decorator registering, under `key`, the decorated object, or what `build` makes of it
        (a record holding the function and what the decorator said about it). The decorated
        object is returned unchanged.

        Raises:
            ValueError: `key` is already registered.
        """

        def decorate(obj: F) -> F:
            value: Any = obj if build is None else build(obj)
            self.add(key, value)
            return obj

        return decorate

    def get(self, key: K) -> V:
        """What is registered under `key`; a miss raises the registry's error, naming the key
        and the known keys."""
        try:
            return self._entries[key]
        except KeyError:
            raise self.missing(key) from None

    def find(self, key: K) -> V | None:
        """What is registered under `key`, or None."""
        return self._entries.get(key)

    def missing(self, key: K, known: Iterable[K] | None = None, known_as: str | None = None) -> Exception:
        """The error for a miss on `key`, listing `known` (default: every key) as `known_as`
        (default: "the <what>s")."""
        listed = ", ".join(self._name(k) for k in (self._entries if known is None else known))
        return self._error(f"unknown {self.what} {self._name(key)!r}: "
                           f"{known_as or f'the {self.what}s'} are {listed or 'none'}")

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[K]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def values(self) -> Iterator[V]:
        return iter(self._entries.values())

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(self._entries.items())
