"""Probe building: the --input-shape grammar."""

from __future__ import annotations

import pytest

from gradflow.errors import ProbeError
from gradflow.probe import parse_shape


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("8,3,32,32", (8, 3, 32, 32)),
        ("8x3x32x32", (8, 3, 32, 32)),
        ("8, 3, 32, 32", (8, 3, 32, 32)),
        (" 8 x 16 ", (8, 16)),
        ("16", (16,)),
    ],
)
def test_shapes_are_positive_sizes_separated_by_commas_or_x(text, shape) -> None:  # type: ignore[no-untyped-def]
    assert parse_shape(text) == shape


@pytest.mark.parametrize(
    "text", ["8 16", "8,x,3", "8,16x", "8,,16", ",8", "x", "", "0,16", "8,-1", "8.0,3", "8X3", "8;3", "eight"]
)
def test_anything_else_is_refused_naming_the_value_and_the_form(text) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProbeError) as caught:
        parse_shape(text)
    message = str(caught.value)
    assert f"--input-shape {text!r}" in message
    assert "e.g. --input-shape 8,3,32,32" in message
    assert "\n" not in message
