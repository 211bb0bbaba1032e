"""gradflow inspect / compare / blocks through Typer's runner: output, JSON schema, errors."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import jsonschema
import pytest
import torch

from gradflow.engine.report import Status
from tests.conftest import ROOT, SAMPLES


def _load_sample(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"sample_{name}", SAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inspect_prints_a_table_with_every_junction(gradflow_cli) -> None:
    result = gradflow_cli("inspect", SAMPLES / "tiny_resnet.py")
    assert result.exit_code == 0, result.output
    for name in ("layer1.0", "layer2.0", "layer3.1", "grad_skip", "grad_block", "proj", " id "):
        assert name in result.stdout
    assert "6 junctions" in result.stdout


def test_inspect_json_is_the_report_and_nothing_else(gradflow_cli, report_schema) -> None:
    result = gradflow_cli("inspect", SAMPLES / "tiny_resnet.py", "--format", "json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    jsonschema.validate(document, report_schema)
    assert [j["skip"] for j in document["junctions"]] == ["identity", "identity", "projection", "identity", "projection", "identity"]


def test_json_numbers_agree_with_autograd_on_the_seed_example(gradflow_cli, report_schema) -> None:
    result = gradflow_cli("inspect", SAMPLES / "seed_example.py", "--loss", "sum", "--format", "json")
    document = json.loads(result.stdout)
    jsonschema.validate(document, report_schema)
    # Independent: autograd on the sample's own computation.
    sample = _load_sample("seed_example")
    model = sample.build()
    values = sample.computation(model.x, model.y, model.z, model.w)
    g_residual, g_xy = torch.autograd.grad(values["cost"], [values["residual"], values["xy"]], retain_graph=True)
    grads = torch.autograd.grad(values["cost"], [model.x, model.y, model.z, model.w])
    (junction,) = document["junctions"]
    assert junction["grad_out"] == pytest.approx(g_residual.item()) == 2.0
    assert junction["grad_in"] == pytest.approx(g_xy.item()) == 4.0
    assert junction["grad_skip"] == junction["grad_block"] == 2.0
    by_name = {p["name"]: p["grad_value"] for p in document["parameters"]}
    assert [by_name[n] for n in "xyzw"] == [g.item() for g in grads] == [-16.0, 12.0, 2.0, 0.0]


def test_the_report_says_the_probe_ran_under_autocast(gradflow_cli, report_schema) -> None:
    runs = {}
    for dtype in ("float32", "bfloat16"):
        table = gradflow_cli("inspect", SAMPLES / "tiny_resnet.py", "--dtype", dtype)
        assert table.exit_code == 0, table.output
        document = json.loads(gradflow_cli("inspect", SAMPLES / "tiny_resnet.py", "--dtype", dtype, "-f", "json").stdout)
        jsonschema.validate(document, report_schema)
        runs[dtype] = (table.stdout, document)
    full_table, full = runs["float32"]
    low_table, low = runs["bfloat16"]
    assert full["probe"]["autocast"] is None and "autocast" not in full_table
    assert low["probe"]["autocast"] == "bfloat16"
    assert "probe 4×3×32×32 float32 · autocast bfloat16 · loss ce" in low_table
    # the inputs are float32 either way: only the new field tells the two reports apart
    assert low["probe"]["inputs"] == full["probe"]["inputs"]
    assert low["summary"]["loss"] != full["summary"]["loss"]


def test_a_build_that_does_not_seed_itself_repeats_across_runs(tmp_path) -> None:
    source = tmp_path / "unseeded.py"
    source.write_text(
        "import torch\n\n"
        "def build():\n"
        "    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))\n\n"
        "def example_input():\n"
        "    return torch.ones(2, 4)\n"
    )

    def run(seed: str) -> dict:  # type: ignore[type-arg]
        out = subprocess.run([sys.executable, "-m", "gradflow", "inspect", str(source), "--seed", seed,
                              "--loss", "sum", "-f", "json"], capture_output=True, text=True, check=True, cwd=ROOT)
        document = json.loads(out.stdout)
        document.pop("timings_s")
        return document

    first, again, other = run("1"), run("1"), run("2")
    assert first == again
    # Independent: the loss torch gives for the weights drawn after seeding with --seed.
    for seed, document in (("1", first), ("2", other)):
        torch.manual_seed(int(seed))
        model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
        assert document["summary"]["loss"] == pytest.approx(model(torch.ones(2, 4)).sum().item(), rel=1e-6)
    assert first["summary"]["loss"] != other["summary"]["loss"]


def test_seed_example_with_sg_skip_has_two_at_the_fork(gradflow_cli) -> None:
    result = gradflow_cli("inspect", SAMPLES / "seed_example.py", "--loss", "sum", "--sg-skip", "--format", "json")
    (junction,) = json.loads(result.stdout)["junctions"]
    assert junction["grad_in"] == 2.0 and junction["grad_skip"] == 0.0


def test_output_file_gets_the_json_and_stdout_the_table(gradflow_cli, tmp_path, report_schema) -> None:
    target = tmp_path / "report.json"
    result = gradflow_cli("inspect", SAMPLES / "tiny_resnet.py", "-o", target)
    assert result.exit_code == 0
    assert "layer1.0" in result.stdout
    jsonschema.validate(json.loads(target.read_text()), report_schema)


@pytest.mark.parametrize(("command", "extra"), [("inspect", []), ("compare", ["--sg-skip"])])
@pytest.mark.parametrize(("format", "suffix"), [("json", ".json"), ("markdown", ".md")])
def test_output_file_is_written_and_stdout_still_carries_the_format(  # type: ignore[no-untyped-def]
    gradflow_cli, tmp_path, command, extra, format, suffix
) -> None:
    target = tmp_path / f"report{suffix}"
    result = gradflow_cli(command, SAMPLES / "tiny_resnet.py", *extra, "--format", format, "-o", target)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip(), "stdout is empty"
    assert result.stdout == target.read_text()
    if format == "json":
        assert json.loads(result.stdout)["schema"].startswith(f"gradflow/{'report' if command == 'inspect' else 'compare'}@")
    else:
        assert result.stdout.startswith("### gradflow")
    assert result.stderr.strip() == f"gradflow: wrote {target}"


def test_markdown_output(gradflow_cli) -> None:
    result = gradflow_cli("inspect", SAMPLES / "tiny_resnet.py", "--format", "markdown")
    assert result.stdout.startswith("### gradflow")
    assert "| 0 | `layer1.0` | identity |" in result.stdout


def test_model_without_junctions_is_not_an_error(gradflow_cli) -> None:
    result = gradflow_cli("inspect", SAMPLES / "plain_net.py")
    assert result.exit_code == 0
    assert "No residual junction found" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["inspect", "nope.py"], "nope.py"),
        (["inspect", "model.xyz"], "model.xyz"),
        (["inspect", SAMPLES / "tiny_resnet.py", "--input-shape", "8,5,32,32"], "input 0: 8x5x32x32 float32"),
        (["inspect", SAMPLES / "tiny_resnet.py", "--input-shape", "8,three"], "--input-shape"),
        (["inspect", SAMPLES / "tiny_resnet.py", "--input-shape", "8 16"], "bad --input-shape '8 16'"),
        (["inspect", SAMPLES / "tiny_resnet.py", "--input-shape", "8,x,3,32"], "bad --input-shape '8,x,3,32'"),
        (["inspect", SAMPLES / "tiny_resnet.py", "--input-shape", "8,3,32,32x"], "bad --input-shape '8,3,32,32x'"),
        (["inspect", SAMPLES / "tiny_resnet.py", "--input-shape", "8,,3,32,32"], "bad --input-shape '8,,3,32,32'"),
        (["inspect", SAMPLES / "tiny_resnet.py", "--input-shape", "4,3,32,32", "--input-dtype", "int8"], "unknown dtype 'int8'"),
        (["inspect", SAMPLES / "tiny_resnet.py", "--sg-skip", "--at", "layer9.*"], "junctions are: layer1.0"),
        (["inspect", SAMPLES / "tiny_resnet.py", "--input-shape", "4,3,32,32", "--input", "x.pt"], "use one of them"),
        (["compare", SAMPLES / "tiny_resnet.py"], "nothing to compare"),
        (["compare", SAMPLES / "tiny_resnet.py", "--sg-skip", "--metric", "speed"], "unknown --metric"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(gradflow_cli, args, needle) -> None:
    result = gradflow_cli(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gradflow: error:")
    assert str(needle) in lines[0]
    assert "Traceback" not in result.output


def test_output_without_floating_tensor_is_a_clear_error(gradflow_cli, tmp_path) -> None:
    source = tmp_path / "intout.py"
    source.write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__(); self.l = torch.nn.Linear(4, 4)\n"
        "    def forward(self, x):\n        return self.l(x).argmax(-1)\n"
        "def build():\n    return M()\n"
    )
    result = gradflow_cli("inspect", source)
    assert result.exit_code == 2
    assert "no floating-point tensor" in result.stderr


def test_debug_shows_the_traceback(runner) -> None:
    from gradflow.cli.app import app

    result = runner.invoke(app, ["inspect", "nope.py", "--debug"])
    assert result.exit_code != 0
    assert result.exception is not None  # re-raised instead of mapped to one line


def test_compare_sg_skip_collapses_the_deep_mlp(gradflow_cli) -> None:
    result = gradflow_cli("compare", SAMPLES / "deep_mlp.py", "--sg-skip", "--format", "json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["schema"] == "gradflow/compare@2"
    assert list(document["variants"]) == ["baseline", "sg-skip"]
    base = document["variants"]["baseline"]["junctions"][0]["grad_in"]
    stopped = document["variants"]["sg-skip"]["junctions"][0]["grad_in"]
    assert stopped / base < 1e-6


def test_compare_table_and_markdown(gradflow_cli) -> None:
    table = gradflow_cli("compare", SAMPLES / "tiny_resnet.py", "--sg-skip", "--sg-block")
    assert table.exit_code == 0
    assert "sg-skip" in table.stdout and "sg-block" in table.stdout and "ratio" in table.stdout
    assert "at the first junction (layer1.0)" in table.stdout
    md = gradflow_cli("compare", SAMPLES / "tiny_resnet.py", "--sg-skip", "--format", "markdown")
    assert "| `layer1.0` |" in md.stdout


def test_compare_two_checkpoints(gradflow_cli, tmp_path) -> None:
    sample = _load_sample("tiny_resnet")
    torch.manual_seed(1)
    before, after = sample.build(), sample.build()
    with torch.no_grad():
        after.layer3[1].conv2.weight.mul_(0.0)  # kill one block
    torch.save(before.state_dict(), tmp_path / "before.pt")
    torch.save(after.state_dict(), tmp_path / "after.pt")
    result = gradflow_cli("compare", tmp_path / "before.pt", tmp_path / "after.pt",
                          "--arch", f"{SAMPLES / 'tiny_resnet.py'}", "--metric", "grad_block", "--format", "json")
    assert result.exit_code == 0, result.output
    variants = json.loads(result.stdout)["variants"]
    assert list(variants) == ["before.pt", "after.pt"]
    assert variants["after.pt"]["junctions"][5]["grad_block"] == 0.0
    assert variants["before.pt"]["junctions"][5]["grad_block"] > 0


def test_blocks_and_inspect_name_skips_alike(gradflow_cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COLUMNS", "140")
    skips = {}
    for command in ("blocks", "inspect"):
        result = gradflow_cli(command, SAMPLES / "tiny_resnet.py")
        assert result.exit_code == 0, result.output
        rows = [line.replace("│", " ").split() for line in result.stdout.splitlines()]
        skips[command] = [cells[2] for cells in rows if len(cells) > 2 and cells[1].startswith("layer")]
    assert skips["blocks"] == skips["inspect"] == ["id", "id", "proj", "id", "proj", "id"]


def test_blocks_lists_junctions_without_measuring(gradflow_cli) -> None:
    result = gradflow_cli("blocks", SAMPLES / "prenorm_transformer.py", "--format", "json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)["junctions"]
    assert [r["name"] for r in rows][:2] == ["h.0#0", "h.0#1"]


def test_help_does_not_import_torch() -> None:
    code = "import sys; from gradflow.cli.app import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_python_dash_m_works() -> None:
    out = subprocess.run([sys.executable, "-m", "gradflow", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("gradflow ")


def test_compare_lists_junctions_present_in_one_source_only(gradflow_cli, tmp_path) -> None:
    code = (
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self, n):\n"
        "        super().__init__(); self.blocks = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(n))\n"
        "    def forward(self, x):\n"
        "        for b in self.blocks:\n"
        "            x = x + b(x)\n"
        "        return x\n"
        "def build():\n    torch.manual_seed(0); return Net({n})\n"
        "def example_input():\n    return torch.ones(2, 4)\n"
    )
    (tmp_path / "two.py").write_text(code.format(n=2))
    (tmp_path / "three.py").write_text(code.format(n=3))
    result = gradflow_cli("compare", tmp_path / "two.py", tmp_path / "three.py")
    assert result.exit_code == 0, result.output
    assert "absent from two.py: #2" in result.stdout
    assert "absent" in result.stdout


@pytest.mark.parametrize("metric", ["block_ratio", "cosine"])
def test_compare_shows_an_undefined_metric_as_a_dash_not_absent(gradflow_cli, tmp_path, metric) -> None:
    # sg-skip cuts the skip path: grad_skip is 0, so block_ratio and cosine are undefined at every
    # junction, which sg-skip has all the same.
    args = ("compare", SAMPLES / "tiny_resnet.py", "--sg-skip", "--metric", metric)
    table = gradflow_cli(*args, "--html", tmp_path / "c.html")
    assert table.exit_code == 0, table.output
    assert "absent" not in table.stdout and "no junction in common" not in table.stdout
    assert f"sg-skip: {metric} is undefined (–) in sg-skip or baseline at all 6 junctions" in table.stdout
    md = gradflow_cli(*args, "--format", "markdown").stdout
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert len(rows) == 6
    for row in rows:
        _, base, value, ratio = (c.strip() for c in row.strip("|").split("|"))
        float(base)  # the baseline's value is defined
        assert (value, ratio) == ("–", "–"), row
    assert "absent" not in (tmp_path / "c.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("columns", ["60", "80", "100", "140"])
def test_table_keeps_names_and_verdicts_at_any_width(gradflow_cli, monkeypatch, columns) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    result = gradflow_cli("inspect", SAMPLES / "prenorm_transformer.py")
    assert result.exit_code == 0
    for name in ("h.0#0", "h.0#1", "h.1#0", "h.1#1"):
        assert name in result.stdout
    assert result.stdout.count(" ok ") + result.stdout.count(" ok\n") >= 4
    assert max(len(line) for line in result.stdout.splitlines()) <= int(columns)


@pytest.mark.parametrize("columns", ["60", "70", "100"])
@pytest.mark.parametrize(("flags", "mark"), [(["--sg-skip"], "skip"), (["--sg-block"], "block"),
                                             (["--sg-skip", "--sg-block"], "both")])
def test_table_keeps_the_stop_gradient_at_any_width(gradflow_cli, monkeypatch, columns, flags, mark) -> None:  # type: ignore[no-untyped-def]
    # A stopped row must not read as a normal one: the sg column stays when others are dropped.
    monkeypatch.setenv("COLUMNS", columns)
    result = gradflow_cli("inspect", SAMPLES / "tiny_resnet.py", *flags, "--at", "layer1.*")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    rows = {cells[1]: cells for cells in map(str.split, lines) if len(cells) > 1 and cells[0].isdigit()
            and cells[1].startswith("layer")}
    assert mark in rows["layer1.0"] and mark in rows["layer1.1"]
    assert not {"skip", "block", "both"} & set(rows["layer2.0"])  # not stopped: the sg cell is empty
    assert all(cells[-1] in {s.value for s in Status} for cells in rows.values())
    assert max(len(line) for line in lines) <= int(columns)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["inspect", SAMPLES / "tiny_resnet.py", "--loss", "foo"], "Invalid value for '--loss'"),
        (["inspect", SAMPLES / "tiny_resnet.py", "--mode", "test"], "'test' is not one of 'train', 'eval'"),
        (["inspect", SAMPLES / "tiny_resnet.py", "--batch-size", "0"], "Invalid value for '--batch-size'"),
        (["inspect", SAMPLES / "tiny_resnet.py", "--max-junctions", "0"], "Invalid value for '--max-junctions'"),
        (["inspect", SAMPLES / "tiny_resnet.py", "--bogus"], "No such option: --bogus"),
        (["inspect", SAMPLES / "tiny_resnet.py", "--input-shape"], "'--input-shape' requires an argument"),
        (["inspect"], "Missing argument 'source'"),
        (["compare", SAMPLES / "tiny_resnet.py", "--sg-skip", "--loss", "foo"], "Invalid value for '--loss'"),
        (["check", SAMPLES / "tiny_resnet.py", "--format", "xml"], "'xml' is not one of"),
        (["track", SAMPLES / "tiny_resnet.py", "--optimizer", "lbfgs"], "'lbfgs' is not one of"),
        (["blocks", SAMPLES / "tiny_resnet.py", "--format", "csv"], "'csv' is not one of"),
        (["nosuch"], "No such command 'nosuch'"),
        (["--bogus"], "No such option: --bogus"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(gradflow_cli, args, needle) -> None:  # type: ignore[no-untyped-def]
    result = gradflow_cli(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gradflow: error:"), lines[0]
    assert needle in lines[0]
    command = "gradflow" if args[0].startswith("-") or args[0] == "nosuch" else f"gradflow {args[0]}"
    assert lines[0].endswith(f"; see {command} --help")
    assert result.stdout == ""


def test_a_usage_error_is_one_line_from_the_installed_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "gradflow", "inspect", "model.py", "--mode", "test"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.startswith("gradflow: error: Invalid value for '--mode'")
    assert len(out.stderr.strip().splitlines()) == 1
    assert out.stdout == ""


@pytest.mark.parametrize("command", [[], ["inspect"], ["compare"], ["check"], ["track"], ["blocks"]])
def test_help_still_works(gradflow_cli, command) -> None:  # type: ignore[no-untyped-def]
    for flag in ("--help", "-h"):
        result = gradflow_cli(*command, flag)
        assert result.exit_code == 0, result.output
        assert "Usage" in result.stdout and "--help" in result.stdout


def test_no_arguments_shows_the_help(gradflow_cli) -> None:
    result = gradflow_cli()
    assert "Usage" in result.stdout and "inspect" in result.stdout
    assert "gradflow: error" not in result.output
