"""gradflow.loaders: every source form, and every way a user can get a source wrong.

All model files are generated in tmp_path. Every user error must be a SourceError (or an
OptionError for an option that does not apply) with a one-line message naming the problem.
"""

from __future__ import annotations

import os
import pathlib
import random
import subprocess
import sys
import textwrap
import types
import zipfile

import pytest
import torch

import gradflow.loaders._files
from gradflow.errors import OptionError, SourceError
from gradflow.loaders import LoadedModel, load_module, load_source
from gradflow.loaders.registry import SourceKind, get_loader, register

MODEL_CODE = """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(4, 8)
            self.fc2 = nn.Linear(8, 4)

        def forward(self, x):
            return x + self.fc2(torch.relu(self.fc1(x)))

    def make():
        return Net()

    def build():
        return Net()

    instance = Net()

    def example_input():
        return torch.ones(4, 4)
"""


def write(folder: pathlib.Path, name: str, text: str) -> pathlib.Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def raises_one_line(spec: str, *words: str, error=SourceError, **kwargs) -> str:
    """Load `spec`, expect `error` with a one-line message containing every word."""
    with pytest.raises(error) as info:
        load_source(spec, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


@pytest.fixture
def model_file(tmp_path):
    return write(tmp_path, "model.py", MODEL_CODE)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- python files -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [":Net", ":make", "", ":instance"])
def test_python_file_class_factory_default_build_and_instance(model_file, suffix):
    loaded = load_source(f"{model_file}{suffix}")
    assert isinstance(loaded, LoadedModel)
    assert loaded.format == "python"
    assert loaded.source == f"{model_file}{suffix}"
    assert type(loaded.module).__name__ == "Net"
    assert loaded.input_specs is None
    assert torch.equal(loaded.example_input(), torch.ones(4, 4))
    assert loaded.module.training  # as built: the loader changes nothing
    assert loaded.module(loaded.example_input()).shape == (4, 4)


def test_python_file_without_example_input(tmp_path):
    path = write(tmp_path, "m.py", "import torch\ndef build():\n    return torch.nn.Linear(2, 2)\n")
    loaded = load_source(str(path))
    assert loaded.example_input is None and isinstance(loaded.module, torch.nn.Linear)


def test_python_file_imports_its_siblings_and_restores_sys_path(tmp_path):
    write(tmp_path, "blocks_sibling.py", "import torch\nWIDTH = 3\n")
    path = write(
        tmp_path,
        "m.py",
        """
        import torch
        import blocks_sibling

        def build():
            return torch.nn.Linear(blocks_sibling.WIDTH, 1)
        """,
    )
    before = list(sys.path)
    try:
        loaded = load_source(f"{path}:build")
        assert loaded.module.in_features == 3
        assert sys.path == before
    finally:
        sys.modules.pop("blocks_sibling", None)


def test_each_load_is_a_fresh_import(model_file):
    a, b = load_source(str(model_file)), load_source(str(model_file))
    assert type(a.module) is not type(b.module)
    assert type(a.module).__module__ != type(b.module).__module__


def test_python_file_relative_path(model_file, monkeypatch):
    monkeypatch.chdir(model_file.parent)
    assert load_source("model.py:Net").format == "python"


def _net_drawn_after_seed(seed: int) -> dict[str, torch.Tensor]:
    """Independent of gradflow: the weights MODEL_CODE's Net gets from torch's RNG seeded `seed`."""
    torch.manual_seed(seed)
    fc1, fc2 = torch.nn.Linear(4, 8), torch.nn.Linear(8, 4)
    return {f"{name}.{k}": v for name, layer in (("fc1", fc1), ("fc2", fc2))
            for k, v in layer.state_dict().items()}


@pytest.mark.parametrize("suffix", [":Net", ":make", "", ":instance"])
def test_code_that_does_not_seed_itself_is_built_from_the_seed(model_file, suffix):
    for seed in (0, 1):
        torch.rand(3)  # whatever state the RNG was left in, the build starts from the seed
        built = load_source(f"{model_file}{suffix}", seed=seed).module.state_dict()
        expected = _net_drawn_after_seed(seed)
        assert built.keys() == expected.keys()
        assert all(torch.equal(built[k], expected[k]) for k in expected)
    assert not torch.equal(_net_drawn_after_seed(0)["fc1.weight"], _net_drawn_after_seed(1)["fc1.weight"])


def test_code_that_seeds_itself_keeps_its_own_weights():
    sample = str(pathlib.Path(__file__).parent.parent / "sample_models" / "tiny_resnet.py")
    assert same_weights(load_source(sample, seed=0).module, load_source(sample, seed=5).module)


def test_arch_and_import_paths_are_built_from_the_seed(tmp_path, monkeypatch):
    write(tmp_path, "gf_unseeded_arch.py", MODEL_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        for spec in ("gf_unseeded_arch:instance", "gf_unseeded_arch:Net"):  # made on import, built
            torch.rand(3)
            built = load_module(spec, seed=2).module.state_dict()
            assert all(torch.equal(built[k], v) for k, v in _net_drawn_after_seed(2).items())
    finally:
        sys.modules.pop("gf_unseeded_arch", None)


# --- import paths -----------------------------------------------------------------------------


def test_import_path_from_torch():
    loaded = load_source("torch.nn:Identity")
    assert loaded.format == "import" and isinstance(loaded.module, torch.nn.Identity)
    assert loaded.example_input is None


def test_import_path_from_a_package_with_example_input(tmp_path, monkeypatch):
    package = tmp_path / "gf_test_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write(package, "models.py", MODEL_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        loaded = load_source("gf_test_pkg.models:make")
        assert loaded.format == "import" and type(loaded.module).__name__ == "Net"
        assert torch.equal(loaded.example_input(), torch.ones(4, 4))
        assert load_module("gf_test_pkg.models:Net").format == "import"
    finally:
        for name in [n for n in sys.modules if n.startswith("gf_test_pkg")]:
            del sys.modules[name]


# --- checkpoints: state dicts -----------------------------------------------------------------


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd, "step": 10},
        lambda sd: {"model_state_dict": sd, "optimizer_state_dict": {"lr": 0.1}},
    ],
    ids=["plain", "state_dict", "model", "model_state_dict"],
)
@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_state_dict_with_arch(tmp_path, model_file, wrap, suffix):
    source = load_source(f"{model_file}:Net").module
    path = tmp_path / f"weights{suffix}"
    torch.save(wrap(source.state_dict()), path)
    loaded = load_source(str(path), arch=f"{model_file}:Net")
    assert loaded.format == "state_dict" and loaded.source == str(path)
    assert same_weights(loaded.module, source)
    assert torch.equal(loaded.example_input(), torch.ones(4, 4))  # from the --arch code


def test_state_dict_with_import_path_arch(tmp_path):
    source = torch.nn.LayerNorm(8)
    with torch.no_grad():
        source.weight.mul_(3)
    torch.save(source.state_dict(), tmp_path / "ln.pt")
    with pytest.raises(SourceError):  # LayerNorm needs an argument
        load_source(str(tmp_path / "ln.pt"), arch="torch.nn:LayerNorm")
    torch.save(torch.nn.Identity().state_dict(), tmp_path / "id.pt")
    assert load_source(str(tmp_path / "id.pt"), arch="torch.nn:Identity").format == "state_dict"


def test_state_dict_without_arch(tmp_path, model_file):
    torch.save(load_source(str(model_file)).module.state_dict(), tmp_path / "w.pt")
    raises_one_line(str(tmp_path / "w.pt"), "state dict", "--arch", "4 tensors")


def test_state_dict_key_mismatch_lists_missing_and_unexpected_keys(tmp_path, model_file):
    state = load_source(str(model_file)).module.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["fc2.bias"]
    torch.save(state, tmp_path / "w.pt")
    message = raises_one_line(
        str(tmp_path / "w.pt"),
        "does not match",
        "missing 1 (fc2.bias)",
        "unexpected 1 (extra.weight)",
        arch=str(model_file),
    )
    assert message.count("fc2.bias") == 1


def test_key_mismatch_truncates_long_lists_with_a_count(tmp_path, model_file):
    state = {f"layer{i}.weight": torch.zeros(1) for i in range(20)}
    torch.save(state, tmp_path / "w.pt")
    message = raises_one_line(
        str(tmp_path / "w.pt"), "unexpected 20", "(+14 more)", "missing 4", arch=str(model_file)
    )
    assert "layer19" not in message


def test_data_parallel_prefix_is_matched_and_a_near_miss_names_it(tmp_path, model_file):
    source = load_source(str(model_file)).module
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save(state, tmp_path / "w.pt")
    assert same_weights(load_source(str(tmp_path / "w.pt"), arch=str(model_file)).module, source)
    del state["module.fc2.bias"]
    torch.save(state, tmp_path / "w.pt")
    raises_one_line(
        str(tmp_path / "w.pt"),
        "missing 1 (fc2.bias)",
        "closest prefix mapping: strip 'module.' (3 of 4 model keys match)",
        arch=str(model_file),
    )


def test_state_dict_shape_mismatch(tmp_path, model_file):
    state = load_source(str(model_file)).module.state_dict()
    state["fc1.weight"] = torch.zeros(8, 5)
    torch.save(state, tmp_path / "w.pt")
    raises_one_line(
        str(tmp_path / "w.pt"),
        "shape mismatch",
        "fc1.weight [8, 5] vs [8, 4]",
        arch=str(model_file),
    )


def test_arch_that_fails_is_named(tmp_path):
    torch.save({"a": torch.zeros(1)}, tmp_path / "w.pt")
    raises_one_line(str(tmp_path / "w.pt"), "--arch", "file not found", arch="nope.py")
    raises_one_line(str(tmp_path / "w.pt"), "--arch", "not code", arch=str(tmp_path / "w.pt"))


def test_dict_that_is_not_a_state_dict(tmp_path):
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "w.pt")
    raises_one_line(str(tmp_path / "w.pt"), "'epoch'", "not a state dict")
    torch.save([torch.zeros(1)], tmp_path / "l.pt")
    raises_one_line(str(tmp_path / "l.pt"), "builtins.list", "not a state dict")


# --- checkpoints: pickled modules -------------------------------------------------------------


@pytest.fixture
def pickled_module(tmp_path, monkeypatch):
    """A whole nn.Module saved with torch.save; its class lives in an importable module."""
    write(tmp_path, "gf_pickled_arch.py", MODEL_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import gf_pickled_arch

    module = gf_pickled_arch.Net().eval()
    path = tmp_path / "whole.pt"
    torch.save(module, path)
    yield path, module
    sys.modules.pop("gf_pickled_arch", None)


def test_pickled_module_refused_without_trust(pickled_module):
    path, _ = pickled_module
    raises_one_line(
        str(path), "pickled", "gf_pickled_arch.Net", "runs code from the file", "--trust"
    )


def test_pickled_module_loaded_with_trust(pickled_module):
    path, module = pickled_module
    loaded = load_source(str(path), trust=True)
    assert loaded.format == "pickle" and type(loaded.module).__name__ == "Net"
    assert same_weights(loaded.module, module)
    assert not loaded.module.training  # saved in eval mode, left as it was


def test_pickled_module_with_arch_is_an_option_error(pickled_module):
    path, _ = pickled_module
    raises_one_line(str(path), "--arch", error=OptionError, trust=True, arch="torch.nn:Identity")


def test_pickled_module_whose_class_is_gone(pickled_module, monkeypatch):
    path, _ = pickled_module
    sys.modules.pop("gf_pickled_arch")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(path.parent)])
    raises_one_line(str(path), "gf_pickled_arch", "importable", trust=True)


class _TouchOnUnpickle:
    """Unpickling this calls Path.touch(marker): a stand-in for any code a pickle can run."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_malicious_pickle_runs_nothing_without_trust(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save(_TouchOnUnpickle(marker), path)
    raises_one_line(str(path), "runs code from the file", "--trust")
    raises_one_line(str(path), "--trust", arch="torch.nn:Identity")
    assert not marker.exists()
    # The file really does run code when trusted: this is what --trust allows.
    raises_one_line(str(path), "NoneType", "not a state dict or an nn.Module", trust=True)
    assert marker.exists()


def test_garbage_bytes_are_not_called_a_pickle(tmp_path):
    # Random bytes are refused by weights_only too, but --trust cannot help a file that is no
    # pickle: the message says the file is not a PyTorch file and never suggests --trust.
    path = tmp_path / "bad.pt"
    path.write_bytes(random.Random(0).randbytes(4096))
    message = raises_one_line(str(path), "bad.pt is not a PyTorch file", "corrupt")
    assert "--trust" not in message and "pickled" not in message
    # The counterpart: a legacy (non-zip) torch.save of a module is a pickle --trust would load.
    torch.save(torch.nn.Linear(2, 2), path, _use_new_zipfile_serialization=False)
    raises_one_line(str(path), "pickled Python objects (torch.nn.modules.linear.Linear)", "--trust")


def test_legacy_non_zip_checkpoint(tmp_path, model_file):
    module = load_source(str(model_file)).module
    torch.save(module.state_dict(), tmp_path / "w.pt", _use_new_zipfile_serialization=False)
    loaded = load_source(str(tmp_path / "w.pt"), arch=str(model_file))
    assert same_weights(loaded.module, module)


# --- TorchScript, torch.export, ONNX ----------------------------------------------------------


def small_net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))


@pytest.mark.parametrize("suffix", [".pt", ".ts", ".jit", ".pth", ".pt2"])
def test_torchscript_archive_any_extension(tmp_path, suffix):
    net = small_net()
    path = tmp_path / f"scripted{suffix}"
    torch.jit.save(torch.jit.trace(net, torch.randn(2, 4)), path)
    loaded = load_source(str(path))
    assert loaded.format == "torchscript"
    assert isinstance(loaded.module, torch.jit.ScriptModule)
    x = torch.randn(5, 4)
    torch.testing.assert_close(loaded.module(x), net(x))


def test_torchscript_with_arch_is_an_option_error(tmp_path):
    path = tmp_path / "s.pt"
    torch.jit.save(torch.jit.trace(small_net(), torch.randn(2, 4)), path)
    raises_one_line(str(path), "--arch", "state-dict", error=OptionError, arch="torch.nn:Identity")


def test_torch_export_program(tmp_path):
    net = small_net()
    example = torch.randn(2, 4)
    path = tmp_path / "prog.pt2"
    torch.export.save(torch.export.export(net, (example,)), path)
    loaded = load_source(str(path))
    assert loaded.format == "torch.export"
    x = torch.randn(2, 4)
    torch.testing.assert_close(loaded.module(x), net(x))
    stored = loaded.example_input()
    assert isinstance(stored, tuple) and torch.equal(stored[0], example)
    stored[0].zero_()  # the probe gets a copy
    assert torch.equal(loaded.example_input()[0], example)


def test_torch_export_archive_named_pt_is_recognised(tmp_path):
    path = tmp_path / "prog.pt"
    torch.export.save(torch.export.export(small_net(), (torch.randn(2, 4),)), path)
    assert load_source(str(path)).format == "torch.export"


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x07")  # content is the executor's business
    return path


def test_onnx_goes_through_the_executor(onnx_file, monkeypatch):
    calls = []

    def load_onnx_model(path):
        calls.append(path)
        module = torch.nn.Identity()
        module.input_specs = [("x", (1, 4), "float32")]
        return module

    fake = types.ModuleType("gradflow.onnx")
    fake.load_onnx_model = load_onnx_model
    monkeypatch.setitem(sys.modules, "gradflow.onnx", fake)
    loaded = load_source(str(onnx_file))
    assert loaded.format == "onnx" and calls == [str(onnx_file)]
    assert loaded.input_specs == [("x", (1, 4), "float32")]


def test_onnx_executor_errors_become_source_errors(onnx_file, monkeypatch):
    def load_onnx_model(path):
        raise ValueError("bad protobuf\nmore")

    fake = types.ModuleType("gradflow.onnx")
    fake.load_onnx_model = load_onnx_model
    monkeypatch.setitem(sys.modules, "gradflow.onnx", fake)
    raises_one_line(str(onnx_file), "cannot load ONNX model", "ValueError: bad protobuf more")


def test_onnx_without_executor(onnx_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradflow.onnx", types.ModuleType("gradflow.onnx"))
    raises_one_line(str(onnx_file), "ONNX support is not available yet")


# --- files that are missing, unreadable or broken ---------------------------------------------


@pytest.mark.parametrize("name", ["nope.pt", "nope.pth", "nope.pt2", "nope.onnx", "nope.ts"])
def test_missing_file(tmp_path, name):
    raises_one_line(str(tmp_path / name), "file not found", name)


@pytest.mark.parametrize("suffix", ["", ":Net"])
def test_missing_python_file(tmp_path, suffix):
    raises_one_line(f"{tmp_path}/nope.py{suffix}", "file not found", "nope.py")


def test_directory(tmp_path):
    raises_one_line(str(tmp_path), "is a directory")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file_by_permissions(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({}, path)
    path.chmod(0)
    try:
        raises_one_line(str(path), "cannot read", "ermission")
    finally:
        path.chmod(0o600)


@pytest.mark.parametrize("name", ["w.pt", "m.py"])
def test_unreadable_file(tmp_path, monkeypatch, name):
    path = tmp_path / name
    path.write_text("x")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(gradflow.loaders._files, "open", refuse, raising=False)
    raises_one_line(str(path), "cannot read", "Permission denied")


@pytest.mark.parametrize("name", ["w.pt", "m.py", "p.pt2", "s.ts", "m.onnx"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    raises_one_line(str(tmp_path / name), "is empty")


def test_truncated_checkpoint(tmp_path, model_file):
    path = tmp_path / "w.pt"
    torch.save(load_source(str(model_file)).module.state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    raises_one_line(str(path), "truncated or corrupt", arch=str(model_file))
    path.write_bytes(b"this is not a checkpoint at all")
    raises_one_line(str(path), "truncated or corrupt")


def test_corrupt_torchscript_and_export(tmp_path):
    ts = tmp_path / "s.ts"
    ts.write_bytes(b"not a zip")
    raises_one_line(str(ts), "cannot load TorchScript", "corrupt")
    pt2 = tmp_path / "p.pt2"
    with zipfile.ZipFile(pt2, "w") as archive:  # looks like an export archive, is not one
        archive.writestr("p/archive_format", "pt2")
    raises_one_line(str(pt2), "cannot load torch.export", "corrupt")


def test_truncated_torchscript(tmp_path):
    path = tmp_path / "s.ts"
    torch.jit.save(torch.jit.trace(small_net(), torch.randn(2, 4)), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    raises_one_line(str(path), "cannot load TorchScript", "truncated")


@pytest.mark.parametrize("name", ["model.txt", "model"])
def test_unknown_extension(tmp_path, name):
    (tmp_path / name).write_text("hello")
    raises_one_line(str(tmp_path / name), "unknown model file", "file.py[:NAME]", ".pt2", ".onnx")


@pytest.mark.parametrize("spec", ["hello", "torch.nn", "a b c", "x:y:z"])
def test_unknown_source_form_lists_accepted_forms(spec):
    raises_one_line(spec, "unknown source", "file.py[:NAME]", "package.module:NAME", ".pt2")


def test_import_path_needs_a_colon():
    raises_one_line("torch.nn", "torch.nn:NAME")


# --- code that is wrong -----------------------------------------------------------------------


def test_python_file_that_raises_on_import(tmp_path):
    path = write(tmp_path, "bad.py", "import torch\n\nx = 1 / 0\n")
    raises_one_line(str(path), "importing", "ZeroDivisionError", "division by zero", "bad.py:3")


def test_python_file_with_syntax_error(tmp_path):
    path = write(tmp_path, "bad.py", "import torch\ndef build(:\n    pass\n")
    message = raises_one_line(str(path), "SyntaxError: invalid syntax", "bad.py:2")
    assert message.count("line 2") + message.count(":2") == 1


def test_python_file_whose_sibling_raises(tmp_path):
    write(tmp_path, "gf_broken_sibling.py", "raise RuntimeError('sibling broke')\n")
    path = write(tmp_path, "m.py", "import gf_broken_sibling\n")
    before = list(sys.path)
    raises_one_line(str(path), "RuntimeError: sibling broke", "gf_broken_sibling.py:1")
    assert sys.path == before


def test_python_file_that_exits(tmp_path):
    path = write(tmp_path, "cli.py", "import sys\nsys.exit(2)\n")
    raises_one_line(str(path), "sys.exit(2)")


def test_name_not_found_lists_module_like_names(model_file):
    message = raises_one_line(f"{model_file}:Nett", "'Nett' not found", "did you mean 'Net'?")
    assert "Net, build, example_input" not in message  # example_input is not a candidate
    for name in ("Net", "build", "instance", "make"):
        assert name in message
    assert "torch" not in message.split("defines:")[1]


def test_default_build_missing(tmp_path):
    path = write(
        tmp_path,
        "m.py",
        "import torch\nclass Net(torch.nn.Module):\n    pass\ndef helper():\n    pass\n",
    )
    raises_one_line(str(path), "defines no build()", ":NAME", "Net", "helper")


def test_file_with_nothing_loadable(tmp_path):
    path = write(tmp_path, "m.py", "X = 1\n")
    raises_one_line(str(path), "defines no build()", "no nn.Module class or function")


def test_factory_returning_something_else(tmp_path):
    path = write(tmp_path, "m.py", "def build():\n    return 42\n")
    raises_one_line(str(path), "build() returned int", "not a torch.nn.Module")


def test_factory_that_raises(tmp_path):
    path = write(tmp_path, "m.py", "def build():\n    raise ValueError('no weights')\n")
    raises_one_line(str(path), "building", "ValueError: no weights", "m.py:2")


def test_class_that_needs_arguments(tmp_path):
    path = write(
        tmp_path,
        "m.py",
        "import torch\nclass Net(torch.nn.Module):\n    def __init__(self, width):\n"
        "        super().__init__()\n",
    )
    raises_one_line(f"{path}:Net", "TypeError", "width", "no arguments")


def test_name_that_is_not_module_like(tmp_path):
    path = write(tmp_path, "m.py", "import torch\nWIDTH = 3\nclass Config:\n    pass\n")
    raises_one_line(f"{path}:WIDTH", "WIDTH is of type int", "not an nn.Module class")
    raises_one_line(f"{path}:Config", "not a torch.nn.Module subclass")


def test_invalid_name(model_file):
    raises_one_line(f"{model_file}:1abc", "not a Python name")


def test_example_input_that_is_not_a_function(tmp_path):
    path = write(tmp_path, "m.py", "import torch\nbuild = torch.nn.Identity\nexample_input = 3\n")
    raises_one_line(str(path), "example_input", "function")


def test_import_path_errors():
    raises_one_line("gf_no_such_module.sub:X", "cannot import", "gf_no_such_module")
    raises_one_line("torch.nn:Nope", "'Nope' not found in torch.nn", "+")
    raises_one_line("torch.nn:Linear", "no arguments")


def test_import_path_whose_module_raises(tmp_path, monkeypatch):
    write(tmp_path, "gf_raising_module.py", "import torch\nraise KeyError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    raises_one_line("gf_raising_module:X", "importing gf_raising_module", "KeyError", ":2")


def test_arch_for_code_sources_is_an_option_error(model_file):
    raises_one_line(str(model_file), "--arch", error=OptionError, arch="torch.nn:Identity")


def test_load_module_accepts_only_code(tmp_path, model_file):
    assert load_module(str(model_file)).format == "python"
    torch.save({}, tmp_path / "w.pt")
    with pytest.raises(SourceError, match="not code"):
        load_module(str(tmp_path / "w.pt"))


def test_errors_chain_the_original_exception(tmp_path):
    path = write(tmp_path, "bad.py", "x = 1 / 0\n")
    with pytest.raises(SourceError) as info:
        load_source(str(path))
    assert isinstance(info.value.__cause__, ZeroDivisionError)


# --- registry and import cost -----------------------------------------------------------------


def test_registry_rejects_duplicates_and_names_misses():
    with pytest.raises(ValueError, match="already registered"):
        register("python", form="again")(lambda spec, options: None)
    with pytest.raises(ValueError, match="'.pt'"):
        register("gf_new_kind", form="new", extensions=(".pt",))(lambda spec, options: None)
    with pytest.raises(SourceError, match=r"unknown loader 'gf_unregistered': the loaders are python"):
        get_loader(SourceKind("gf_unregistered"))


def test_importing_the_loaders_does_not_import_torch():
    code = "import sys, gradflow.loaders; assert 'torch' not in sys.modules, 'torch imported'"
    root = pathlib.Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def test_models_are_on_cpu(model_file):
    module = load_source(str(model_file)).module
    assert all(p.device.type == "cpu" for p in module.parameters())
