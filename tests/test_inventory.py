"""The one module walk (gradflow.engine.inventory) lists what torch's own walks list, in their order."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradflow.engine.inventory import Inventory
from tests.fixtures import models


def _shared() -> nn.Module:
    layer = nn.Linear(3, 3)
    tied = nn.Linear(3, 3)
    tied.weight = layer.weight  # one parameter under two modules
    return nn.Sequential(layer, nn.ReLU(), layer, nn.Sequential(layer, tied), nn.Identity())


def _with_none_child() -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 2))
    model.register_module("empty", None)
    model.register_parameter("unset", None)
    return model


MODELS = {
    "SmallResNet": models.SmallResNet,
    "TokenModel": models.TokenModel,
    "shared modules and tied weights": _shared,
    "None children and parameters": _with_none_child,
    "TorchScript": lambda: torch.jit.script(nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.Linear(3, 2)))),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_walk_matches_named_modules_and_named_parameters(name: str) -> None:
    model = MODELS[name]()
    inventory = Inventory.of(model)
    expected_modules = list(model.named_modules(remove_duplicate=False))
    assert [n for n, _ in inventory.modules] == [n for n, _ in expected_modules]
    assert all(a is b for (_, a), (_, b) in zip(inventory.modules, expected_modules))
    expected_params = list(model.named_parameters())
    assert [n for n, _ in inventory.parameters] == [n for n, _ in expected_params]
    assert all(a is b for (_, a), (_, b) in zip(inventory.parameters, expected_params))


def test_devices_lists_the_first_parameters_device_then_every_other() -> None:
    """A model split across devices: the state guard forks, and the probe seeds, each of them."""
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2, device="meta"), nn.Linear(2, 2))
    assert Inventory.of(model).devices == [torch.device("cpu"), torch.device("meta")]
    assert Inventory.of(nn.Sequential(nn.Linear(2, 2))).devices == [torch.device("cpu")]
    assert Inventory.of(nn.ReLU()).devices == [torch.device("cpu")]
