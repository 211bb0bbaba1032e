"""Probe building: the --input-shape grammar, empty batches."""

from __future__ import annotations

import pytest
import torch

import gradflow
from gradflow.errors import ProbeError
from gradflow.probe import Probe, as_probe, parse_shape


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


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        (torch.zeros(0, 4), "the probe input 0 has no elements (shape 0x4)"),
        ((torch.ones(2, 4), torch.zeros(2, 0)), "the probe input 1 has no elements (shape 2x0)"),
        ({"x": torch.zeros(0, 4)}, "the probe input 'x' has no elements (shape 0x4)"),
        (Probe((torch.zeros(0, 4),)), "the probe input 0 has no elements"),
    ],
)
def test_an_empty_input_tensor_is_refused(inputs, needle) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProbeError, match="give a batch of at least one sample") as caught:
        as_probe(inputs)
    assert needle in str(caught.value)


def test_inspect_refuses_an_empty_batch_instead_of_reporting_zero_gradients() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(ProbeError, match="has no elements"):
        gradflow.inspect(model, torch.zeros(0, 4))
