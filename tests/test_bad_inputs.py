"""A matrix of bad inputs for every command: the exit code, one line that names the problem, and
no traceback. Exit 2 when the run cannot be made; 1 where `check` runs and a rule fails."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, SAMPLES

RESNET = str(SAMPLES / "tiny_resnet.py")
ONNX_CNN = str(ROOT / "tests" / "fixtures" / "onnx" / "tiny_cnn.onnx")  # input image: batch x 3 x 8 x 8

# What each command needs besides the source to be a valid call.
EXTRA = {"inspect": [], "compare": ["--sg-skip"], "check": [], "track": ["--steps", "1"], "blocks": []}


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("bad")
    (folder / "empty.pt").write_bytes(b"")
    (folder / "empty.onnx").write_bytes(b"")
    (folder / "a_directory.pt").mkdir()
    (folder / "notes.txt").write_text("not a model\n")
    (folder / "garbage.pt").write_bytes(bytes(range(7, 256)) * 8)  # no zip, no pickle
    (folder / "raises.py").write_text("import torch\nraise RuntimeError('broken on import')\n")
    (folder / "not_module.py").write_text("def build():\n    return 42\n")
    (folder / "int_output.py").write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__(); self.l = torch.nn.Linear(4, 4)\n"
        "    def forward(self, x):\n        return self.l(x).argmax(-1)\n"
        "def build():\n    return M()\n"
    )
    (folder / "nan_weights.py").write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.f = torch.nn.Linear(4, 4); self.head = torch.nn.Linear(4, 3)\n"
        "        with torch.no_grad(): self.f.weight[0, 0] = float('nan')\n"
        "    def forward(self, x):\n        return self.head(x + self.f(x))\n"
        "def build():\n    return M()\n"
    )
    torch.save(torch.zeros(0, 3, 32, 32), folder / "empty_batch.pt")
    good = torch.nn.Sequential(torch.nn.Linear(4, 4))
    torch.save(good.state_dict(), folder / "state.pt")
    torch.save({"0.weight": torch.zeros(4, 4)}, folder / "missing_keys.pt")
    torch.save(good.state_dict(), folder / "truncated.pt")
    data = (folder / "truncated.pt").read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    (folder / "seq.py").write_text("import torch\ndef build():\n    return torch.nn.Sequential(torch.nn.Linear(4, 4))\n")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(good, (torch.randn(2, 3, 4),), str(folder / "dynamic.onnx"), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "batch", 1: "seq"}})
    return folder


def case(kind, args, code=2, needle="", commands=tuple(EXTRA)):  # type: ignore[no-untyped-def]
    return [pytest.param(command, args, code, needle, id=f"{command}-{kind}") for command in commands]


CASES = [
    *case("missing-file", ["{bad}/nope.py"], needle="nope.py"),
    *case("directory", ["{bad}/a_directory.pt"], needle="a_directory.pt"),
    *case("empty-checkpoint", ["{bad}/empty.pt"], needle="empty.pt", commands=("inspect", "check", "track")),
    *case("empty-onnx", ["{bad}/empty.onnx"], needle="empty.onnx", commands=("inspect", "blocks")),
    *case("truncated-checkpoint", ["{bad}/truncated.pt"], needle="truncated.pt", commands=("inspect", "compare")),
    *case("garbage-checkpoint", ["{bad}/garbage.pt"], needle="garbage.pt is not a PyTorch file",
          commands=("inspect", "check")),
    *case("wrong-extension", ["{bad}/notes.txt"], needle="notes.txt", commands=("inspect", "check", "blocks")),
    *case("unknown-form", ["not a source"], needle="not a source", commands=("inspect", "track")),
    *case("raises-on-import", ["{bad}/raises.py"], needle="broken on import"),
    *case("factory-not-module", ["{bad}/not_module.py"], needle="int", commands=("inspect", "check", "blocks")),
    *case("state-dict-without-arch", ["{bad}/state.pt"], needle="--arch", commands=("inspect", "compare", "check")),
    *case("state-dict-missing-keys", ["{bad}/missing_keys.pt", "--arch", "{bad}/seq.py"], needle="0.bias",
          commands=("inspect", "check", "track")),
    *case("shape-rejected", [RESNET, "--input-shape", "4,5,32,32"], needle="input 0: 4x5x32x32",
          commands=("inspect", "compare", "check", "blocks")),
    *case("integer-input", [RESNET, "--input-shape", "4,3,32,32", "--input-dtype", "int64"], needle="int64",
          commands=("inspect", "check")),
    *case("no-floating-output", ["{bad}/int_output.py"], needle="no floating-point tensor",
          commands=("inspect", "compare", "check", "track")),
    *case("bad-at", [RESNET, "--sg-skip", "--at", "layer9.*"], needle="junctions are: layer1.0",
          commands=("inspect",)),
    *case("bad-at-compare", [RESNET, "--at", "nothing*"], needle="matches no junction", commands=("compare",)),
    *case("contradictory-inputs", [RESNET, "--input-shape", "4,3,32,32", "--input", "{bad}/state.pt"],
          needle="use one of them", commands=("inspect", "check")),
    *case("empty-batch", [RESNET, "--input", "{bad}/empty_batch.pt"],
          needle="the probe input 0 has no elements (shape 0x3x32x32)"),
    *case("empty-onnx-batch", [ONNX_CNN, "--dim", "batch=0"], needle="input 'image' has no elements",
          commands=("inspect", "compare", "check", "track")),
    *case("bad-device", [RESNET, "--device", "tpu"], needle="--device", commands=("inspect", "compare", "check")),
    *case("bad-memory-limit", [RESNET, "--memory-limit", "lots"], needle="--memory-limit", commands=("inspect",)),
    *case("dim-on-a-pytorch-source", [RESNET, "--dim", "batch=2"], needle="this source is not an ONNX graph",
          commands=("inspect", "compare", "check", "track")),
    *case("dim-with-input-shape", ["{bad}/dynamic.onnx", "--dim", "seq=5", "--input-shape", "2,5,4"],
          needle="and --input-shape gives the probe shape: drop --dim", commands=("inspect", "check")),
    *case("blocks-onnx-probe-options", [ONNX_CNN, "--input-shape", "2,3,8,8", "--batch-size", "2"],
          needle="without running it, so --input-shape, --batch-size would change nothing",
          commands=("blocks",)),
    *case("misspelled-dim", ["{bad}/dynamic.onnx", "--dim", "sq=5"],
          needle="no dimension named 'sq' (its named dimensions are batch, seq)",
          commands=("inspect", "compare", "check", "track")),
    *case("batch-size-with-shape", ["{bad}/seq.py", "--input-shape", "2,4", "--batch-size", "3"],
          needle="--batch-size does not apply: the first size of --input-shape is the batch, e.g. 3,4"),
    *case("batch-size-with-example", [RESNET, "--batch-size", "3"],
          needle="--batch-size does not apply: the source's example_input() gives the probe batch",
          commands=("inspect", "blocks")),
    *case("batch-size-with-fixed-onnx-batch", ["{bad}/dynamic.onnx", "--dim", "batch=2", "--dim", "seq=3",
                                               "--batch-size", "3"],
          needle="--batch-size does not apply", commands=("inspect", "check")),
    *case("input-high-inferred-floats", ["{bad}/seq.py", "--input-high", "5"],
          needle="--input-high sets the range of integer inputs, but the inferred probe input is floating-point"),
    *case("input-high-float-shape", ["{bad}/seq.py", "--input-shape", "2,4", "--input-high", "5"],
          needle="but the --input-shape inputs are float32: drop --input-high", commands=("inspect", "check")),
    *case("input-high-onnx-floats", [ONNX_CNN, "--input-high", "5"],
          needle="every input of the ONNX graph is floating-point", commands=("inspect", "compare")),
    *case("input-high-zero", ["{bad}/seq.py", "--input-shape", "2,4", "--input-dtype", "int64", "--input-high", "0"],
          needle="Invalid value for '--input-high'", commands=("inspect",)),
    *case("input-dtype-without-shape", ["{bad}/seq.py", "--input-dtype", "int64"],
          needle="--input-dtype int64 sets the dtype of --input-shape inputs, and none is given"),
    *case("unknown-input-dtype-without-shape", ["{bad}/seq.py", "--input-dtype", "floaty"],
          needle="--input-dtype: unknown dtype 'floaty'", commands=("inspect", "track")),
    *case("nan-weights", ["{bad}/nan_weights.py", "--input-shape", "2,4"], code=1, needle="nonfinite",
          commands=("check",)),
]


@pytest.mark.parametrize(("command", "args", "code", "needle"), CASES)
def test_bad_input(gradflow_cli, bad, command, args, code, needle) -> None:  # type: ignore[no-untyped-def]
    argv = [command, *(a.format(bad=bad) for a in args), *EXTRA[command]]
    result = gradflow_cli(*argv)
    assert result.exit_code == code, (argv, result.output)
    assert "Traceback" not in result.output
    if code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("gradflow: error:"), lines[0]
        assert needle.format(bad=bad) in lines[0], lines[0]
    else:
        assert needle in result.output.lower()


def test_the_matrix_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert {p.values[0] for p in CASES} == set(EXTRA)


@pytest.mark.parametrize("device", ["cuda", "cuda:3"])
def test_a_missing_cuda_device_is_named_as_given(gradflow_cli, monkeypatch, device) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = gradflow_cli("inspect", RESNET, "--device", device)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        f"gradflow: error: --device {device}: no CUDA device is available here; use --device cpu"
    )


def test_a_known_dim_sets_the_probe_shape(gradflow_cli, bad) -> None:  # type: ignore[no-untyped-def]
    # The counterpart of misspelled-dim: a name the graph uses is taken, the batch from --batch-size.
    result = gradflow_cli("inspect", bad / "dynamic.onnx", "--dim", "seq=5", "--batch-size", "3",
                          "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["probe"]["inputs"][0]["shape"] == [3, 5, 4]


def test_batch_size_and_input_high_shape_the_inputs_they_apply_to(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The counterparts of the refusals above: an inferred batch takes --batch-size, and integer
    # inputs (inferred token ids, or --input-shape with an integer dtype) take --input-high.
    (tmp_path / "tokens.py").write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.e = torch.nn.Embedding(50, 8); self.f = torch.nn.Linear(8, 8)\n"
        "    def forward(self, x):\n        h = self.e(x); return h + self.f(h)\n"
        "def build():\n    return M()\n"
    )
    for args, shape in (
        (["--batch-size", "3", "--input-high", "5"], [3, 16]),
        (["--input-shape", "2,7", "--input-dtype", "int64", "--input-high", "5"], [2, 7]),
    ):
        result = gradflow_cli("inspect", tmp_path / "tokens.py", *args, "--format", "json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["probe"]["inputs"][0]["shape"] == shape


def test_input_high_bounds_inferred_token_ids() -> None:
    from gradflow.probe import infer

    model = torch.nn.Sequential(torch.nn.Embedding(50, 8))
    assert infer(model, 4, 0, high=1).tensors()[0].max().item() == 0
    assert infer(model, 4, 0).tensors()[0].max().item() > 1


def test_a_truncated_export_archive_prints_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # In a fresh process: torch logs its deserialisation traceback through a handler bound to
    # the real stderr at import, which a CliRunner cannot capture.
    import subprocess
    import sys

    path = tmp_path / "truncated.pt2"
    torch.export.save(torch.export.export(torch.nn.Linear(4, 4), (torch.randn(2, 4),)), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    out = subprocess.run([sys.executable, "-m", "gradflow", "inspect", str(path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [
        f"gradflow: error: cannot load torch.export program {path}: truncated, corrupt or not saved by "
        "torch.export.save (BadZipFile: File is not a zip file)"
    ]
