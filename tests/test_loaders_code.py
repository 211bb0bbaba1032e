"""Code sources with constructor arguments, `NAME(key=literal, ...)`, and timm models by name.

Arguments are parsed, never evaluated: anything but a literal is refused before any code runs.
Each report must equal `gradflow.inspect` on the model built here with the same arguments.
"""

from __future__ import annotations

import textwrap

import pytest
import torch

from gradflow.errors import OptionError, SourceError
from gradflow.loaders import load_module, load_source
from gradflow.loaders.call import split_call
from tests.loader_helpers import api_report, assert_same_measurement, cli_report, one_line_error

BATCH = 8

MODEL_CODE = """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, width=4, hidden=8, scale=1.0):
            super().__init__()
            self.fc1 = nn.Linear(width, hidden)
            self.fc2 = nn.Linear(hidden, width)
            self.scale = scale

        def forward(self, x):
            return x + self.scale * self.fc2(torch.relu(self.fc1(x)))

    def build(width=4, **options):
        return Net(width, **options)

    instance = Net()
"""


@pytest.fixture
def model_file(tmp_path):  # type: ignore[no-untyped-def]
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(MODEL_CODE))
    return path


# --- the call syntax --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "target", "arguments"),
    [
        ("timm:resnet50(num_classes=10)", "timm:resnet50", {"num_classes": 10}),
        ("m.py:Net(width=3, sizes=(1, 2), names={'a': [None, True]}, rate=-1.5e-3)", "m.py:Net",
         {"width": 3, "sizes": (1, 2), "names": {"a": [None, True]}, "rate": -1.5e-3}),
        ("pkg.mod:build()", "pkg.mod:build", {}),
        ("m.py:Net", "m.py:Net", None),
        ("dir/weights(1).pt", "dir/weights(1).pt", None),  # no call: it does not end with one
    ],
)
def test_calls_are_split_into_the_target_and_literal_arguments(spec, target, arguments) -> None:  # type: ignore[no-untyped-def]
    assert split_call(spec) == (target, arguments)


def test_an_existing_file_named_like_a_call_is_a_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "odd(x=1)"
    path.write_text("x")
    assert split_call(str(path)) == (str(path), None)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("torch.nn:Linear(4, 2)", ["positional argument '4'", "by name"]),
        ("m.py:Net(width=int('3'))", ["value of width (int('3'))", "not a Python literal"]),
        ("m.py:Net(**options)", ["** arguments are not accepted"]),
        ("m.py:Net(width=1, width=2)", ["argument width is given twice"]),
        ("m.py:Net(width=)", ["cannot read the constructor arguments"]),
        ("m.py:Net(width=1)(hidden=2)", ["cannot read the constructor arguments"]),
    ],
)
def test_anything_but_keyword_literals_is_refused(spec, words) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SourceError) as caught:
        split_call(spec)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_an_argument_that_would_run_code_is_never_evaluated(tmp_path, model_file) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "ran"
    spec = f"{model_file}:Net(width=__import__('pathlib').Path({str(marker)!r}).touch())"
    with pytest.raises(SourceError, match="not a Python literal"):
        load_source(spec)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["Net", "build"])
def test_arguments_reach_a_class_or_a_function(gradflow_cli, model_file, name) -> None:  # type: ignore[no-untyped-def]
    spec = f"{model_file}:{name}(width=6, hidden=5, scale=0.5)"
    loaded = load_source(spec, seed=0)
    assert loaded.source == spec
    assert (loaded.module.fc1.in_features, loaded.module.fc1.out_features, loaded.module.scale) == (6, 5, 0.5)
    namespace: dict = {}
    exec(compile(textwrap.dedent(MODEL_CODE), str(model_file), "exec"), namespace)
    torch.manual_seed(0)  # as --seed 0 does right before the code builds the model
    reference = namespace["Net"](width=6, hidden=5, scale=0.5)
    x = torch.randn((BATCH, 6), generator=torch.Generator().manual_seed(0))
    document = cli_report(gradflow_cli, spec)
    assert document["model"]["source"] == spec
    assert_same_measurement(document, api_report(reference, x))


def test_arguments_for_an_instance_or_a_file_are_refused(gradflow_cli, tmp_path, model_file) -> None:  # type: ignore[no-untyped-def]
    one_line_error(gradflow_cli("inspect", f"{model_file}:instance(width=2)"), "module instance", "no constructor arguments")
    torch.save({}, tmp_path / "w.pt")
    one_line_error(gradflow_cli("inspect", f"{tmp_path / 'w.pt'}(width=2)"), "constructor arguments", "apply to code")
    one_line_error(gradflow_cli("inspect", f"{model_file}:Net(depth=2)"), "building", "Net(depth=2)",
                   "unexpected keyword argument 'depth'")


def test_arch_with_arguments_fits_a_checkpoint_the_defaults_do_not(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(3)
    model = torchvision.models.resnet18(num_classes=10)
    torch.save(model.state_dict(), tmp_path / "ten.pt")
    one_line_error(gradflow_cli("inspect", tmp_path / "ten.pt", "--arch", "torchvision.models:resnet18"),
                   "shape mismatch", "fc.weight [10, 512] vs [1000, 512]")
    args = ("--arch", "torchvision.models:resnet18(num_classes=10)", "--input-shape", "2,3,32,32")
    document = cli_report(gradflow_cli, tmp_path / "ten.pt", *args)
    x = torch.randn((2, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    assert_same_measurement(document, api_report(model, x))


def test_load_module_takes_calls_and_names_what_is_not_code(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert load_module("torch.nn:Linear(in_features=3, out_features=2)").module.in_features == 3
    torch.save({}, tmp_path / "w.pt")
    with pytest.raises(SourceError, match="not code"):
        load_module(str(tmp_path / "w.pt"))


# --- timm ------------------------------------------------------------------------------------

timm = pytest.importorskip("timm")


@pytest.fixture
def offline(monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    """No network, and an empty Hugging Face cache."""
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def test_a_timm_name_with_arguments_reports_what_the_model_in_python_does(gradflow_cli) -> None:  # type: ignore[no-untyped-def]
    spec = "timm:test_resnet(num_classes=10)"
    document = cli_report(gradflow_cli, spec, "--batch-size", "2")
    assert document["model"]["format"] == "timm"
    torch.manual_seed(0)  # as --seed 0 does before the model is built
    model = timm.create_model("test_resnet", pretrained=False, num_classes=10)
    # The probe is the input size timm's pretrained_cfg gives.
    x = torch.randn((2, *model.pretrained_cfg["input_size"]), generator=torch.Generator().manual_seed(0))
    assert [i["shape"] for i in document["probe"]["inputs"]] == [list(x.shape)]
    assert_same_measurement(document, api_report(model, x))


def test_timm_serves_as_arch_for_a_safetensors_file(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import save_file

    torch.manual_seed(4)
    model = timm.create_model("test_vit", num_classes=3)
    save_file(model.state_dict(), tmp_path / "vit.safetensors")
    document = cli_report(gradflow_cli, tmp_path / "vit.safetensors", "--arch", "timm:test_vit(num_classes=3)",
                          "--batch-size", "2")
    x = torch.randn((2, *model.pretrained_cfg["input_size"]), generator=torch.Generator().manual_seed(0))
    assert_same_measurement(document, api_report(model, x))


def test_an_unknown_timm_name_suggests_close_ones(gradflow_cli) -> None:  # type: ignore[no-untyped-def]
    one_line_error(gradflow_cli("inspect", "timm:resnet1888"), "unknown timm model 'resnet1888'", "resnet18")
    one_line_error(gradflow_cli("inspect", "timm:../x"), "not a timm model name")


def test_pretrained_offline_is_one_line(gradflow_cli, offline) -> None:  # type: ignore[no-untyped-def]
    result = gradflow_cli("inspect", "timm:test_resnet", "--pretrained", "--device", "cpu")
    one_line_error(result, "timm:test_resnet --pretrained", "not in the local Hugging Face cache", "drop --pretrained")


def test_pretrained_is_for_timm_only(tmp_path, model_file) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OptionError, match="--pretrained applies to timm:NAME"):
        load_source(str(model_file), pretrained=True)
    with pytest.raises(OptionError, match="--device meta"):
        load_source("timm:test_resnet", pretrained=True, meta=True)


def test_a_timm_model_builds_on_meta(gradflow_cli) -> None:  # type: ignore[no-untyped-def]
    loaded = load_source("timm:test_vit(num_classes=3)", meta=True)
    assert all(p.device.type == "meta" for p in loaded.module.parameters())


@pytest.mark.parametrize("command", ["blocks", "inspect", "compare", "check", "track"])
def test_every_command_takes_a_timm_name_and_arguments(gradflow_cli, command) -> None:  # type: ignore[no-untyped-def]
    extra = {"check": ["--seeds", "1"], "track": ["--steps", "1"], "compare": ["--sg-skip"]}
    result = gradflow_cli(command, "timm:test_vit(num_classes=3)", "--device", "cpu", "--batch-size", "2",
                          *extra.get(command, []))
    assert result.exit_code == 0, result.output
    assert "blocks.0#0" in result.stdout
