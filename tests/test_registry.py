"""The one registry helper behind every extension point: registration order, a duplicate is an
error, a miss is an error that names the key and the known keys, in the type the owner chose."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pytest

from gradflow.errors import OptionError
from gradflow.registry import Registry


def test_register_returns_the_function_and_keeps_registration_order() -> None:
    shapes: Registry[str, Callable[[float], float]] = Registry("shape")

    @shapes.register("square")
    def square(side: float) -> float:
        return side * side

    shapes.add("double", lambda side: 2 * side)
    assert square(3.0) == 9.0  # the decorated function itself, not a wrapper
    assert shapes.get("square") is square
    assert list(shapes) == ["square", "double"] and len(shapes) == 2
    assert "double" in shapes and "circle" not in shapes
    assert [name for name, _ in shapes.items()] == ["square", "double"]
    assert shapes.find("circle") is None


def test_build_registers_a_record_and_returns_the_function_unchanged() -> None:
    class Entry(NamedTuple):
        title: str
        run: Callable[[], int]

    entries: Registry[str, Entry] = Registry("entry")

    @entries.register("one", lambda run: Entry("One", run))
    def one() -> int:
        return 1

    assert one() == 1
    assert entries.get("one") == Entry("One", one)


def test_a_duplicate_is_an_error_and_leaves_the_first() -> None:
    kinds: Registry[str, int] = Registry("kind")
    kinds.add("a", 1)
    with pytest.raises(ValueError, match="kind 'a' is already registered"):
        kinds.add("a", 2)
    with pytest.raises(ValueError, match="kind 'a' is already registered"):
        kinds.register("a")(3)
    assert kinds.get("a") == 1 and len(kinds) == 1


def test_a_miss_names_the_key_and_the_known_keys() -> None:
    kinds: Registry[str, int] = Registry("kind")
    with pytest.raises(LookupError, match="unknown kind 'a': the kinds are none"):
        kinds.get("a")
    kinds.add("b", 1)
    kinds.add("c", 2)
    with pytest.raises(LookupError, match="unknown kind 'a': the kinds are b, c$"):
        kinds.get("a")


def test_the_owner_chooses_the_error_and_how_a_key_reads() -> None:
    class Key(NamedTuple):
        name: str

    rules: Registry[Key, int] = Registry("rule", error=OptionError, name=lambda key: key.name)
    rules.add(Key("dead"), 1)
    with pytest.raises(OptionError, match="unknown rule 'deadd': the rules are dead$"):
        rules.get(Key("deadd"))
    with pytest.raises(ValueError, match="rule 'dead' is already registered"):
        rules.add(Key("dead"), 2)
    error = rules.missing(Key("x"), known=[], known_as="the rules of this kind")
    assert isinstance(error, OptionError)
    assert str(error) == "unknown rule 'x': the rules of this kind are none"
