"""Module scopes from exporter metadata and legacy node names."""

from __future__ import annotations

import pytest
from onnx import helper

from gradflow.onnx.scopes import module_scope


def _node(name: str = "n", **meta: str):  # type: ignore[no-untyped-def]
    node = helper.make_node("Add", ["a", "b"], ["c"], name=name)
    for key, value in meta.items():
        prop = node.metadata_props.add()
        prop.key, prop.value = key.replace("__", "."), value
    return node


@pytest.mark.parametrize(("scopes", "expected"), [
    ("['', 'layer1', 'layer1.0', 'add']", "layer1.0"),
    ("['', 'add_3']", ""),
    ("['', 'm', 'm.h.0', 'm.h.0.attn', 'scaled_dot_product_attention']", "m.h.0.attn"),
])
def test_dynamo_name_scopes(scopes: str, expected: str) -> None:
    assert module_scope(_node(pkg__torch__onnx__name_scopes=scopes)) == expected


def test_dynamo_namespace() -> None:
    namespace = (": __main__.Net/layer1: torch.nn.modules.container.Sequential/"
                 "layer1.0: __main__.Block/add: aten.add.Tensor")
    assert module_scope(_node(namespace=namespace)) == "layer1.0"


@pytest.mark.parametrize(("name", "expected"), [
    ("/layer1/layer1.0/Add", "layer1.0"),
    ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
    ("/body/stages/stages.0/stages.0.1/Add", "body.stages.0.1"),
    ("/body/lst.0/Add", "body.lst.0"),
    ("/m/transformer/h.0/attn/Add", "m.transformer.h.0.attn"),
    ("/Add", ""),
])
def test_legacy_names(name: str, expected: str) -> None:
    assert module_scope(_node(name)) == expected


def test_no_scope() -> None:
    assert module_scope(_node("Add_12")) is None
    assert module_scope(_node("x", pkg__torch__onnx__name_scopes="not a list")) is None
