"""gradflow check through Typer's runner: exit codes, every output format, baselines and the
configuration precedence (defaults < [tool.gradflow.check] < flags)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import jsonschema
import pytest
import torch

from gradflow.gate import settings as defaults
from tests import test_check_models as models
from tests.conftest import ROOT, SAMPLES
from tests.schemas import validate

MODELS = ROOT / "tests" / "test_check_models.py"
RULES = ["nonfinite", "unused", "no-grad", "zero-grad", "cut", "vanishing", "dead", "exploding",
         "regression"]


def spec(builder: str) -> str:
    return f"{MODELS}:{builder}"


def _rule(document: dict, name: str) -> dict:  # type: ignore[type-arg]
    return next(r for r in document["rules"] if r["rule"] == name)


def unused_parameters() -> set[str]:
    """Independent of gradflow: the parameters autograd leaves without a gradient."""
    model = models.build_unused()
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(model(models.example_input()).sum(), list(params.values()),
                                allow_unused=True)
    return {n for n, g in zip(params, grads) if g is None}


@pytest.mark.parametrize("name", ["tiny_resnet", "prenorm_transformer", "postnorm_encoder", "deep_mlp"])
def test_healthy_samples_exit_0(gradflow_cli, name) -> None:
    result = gradflow_cli("check", SAMPLES / f"{name}.py", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "gradflow check passed" in result.stdout


def test_broken_model_exits_1_with_the_violations_table(gradflow_cli) -> None:
    result = gradflow_cli("check", spec("build_unused"), "--device", "cpu")
    assert result.exit_code == 1, result.output
    for name in unused_parameters():
        assert name in result.stdout
    assert "unused" in result.stdout and "FAILED" in result.stdout
    assert result.stderr == ""


def test_rezero_exits_0_and_says_its_blocks_are_dormant(gradflow_cli) -> None:
    result = gradflow_cli("check", SAMPLES / "rezero.py", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "dormant" in result.stdout and "blocks.0.alpha" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["nope.py"], "nope.py"),
        ([SAMPLES / "tiny_resnet.py", "--input-shape", "2,5,32,32"], "input 0: 2x5x32x32"),
        ([SAMPLES / "tiny_resnet.py", "--disable", "deadd"], "unknown rule 'deadd'"),
        ([SAMPLES / "tiny_resnet.py", "--tolerance", "0.5"], "--tolerance"),
        ([SAMPLES / "tiny_resnet.py", "--baseline", "missing.json"], "--write-baseline missing.json"),
        ([SAMPLES / "tiny_resnet.py", "--config", "missing.toml"], "missing.toml"),
        ([SAMPLES / "tiny_resnet.py", "--enable", "dead", "--disable", "dead"], "two levels"),
    ],
)
def test_a_run_that_cannot_be_made_exits_2_with_one_line(gradflow_cli, args, needle) -> None:
    result = gradflow_cli("check", *args, "--device", "cpu")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradflow: error:")
    assert str(needle) in lines[0]


def test_junit_xml_has_a_test_case_per_rule_and_one_failure_listing_its_violations(gradflow_cli,
                                                                                  tmp_path) -> None:
    target = tmp_path / "gradflow.xml"
    result = gradflow_cli("check", spec("build_unused"), "--device", "cpu", "--format", "junit", "-o", target)
    assert result.exit_code == 1
    assert "unused" in result.stdout  # the table still goes to the log
    root = ET.parse(target).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == RULES
    (failure,) = cases["unused"].findall("failure")
    assert {line.split(":")[0] for line in failure.text.splitlines()} == unused_parameters()
    assert all(not c.findall("failure") for n, c in cases.items() if n != "unused")
    assert cases["regression"].find("skipped") is not None
    assert suite.get("tests") == str(len(RULES)) and suite.get("failures") == "1"
    assert root.get("failures") == "1"


def test_junit_counts_failed_test_cases_when_several_rules_fail(gradflow_cli, tmp_path) -> None:
    # Every block multiplied by 0: zero-grad (made to fail) on each block parameter, dead on
    # each junction.
    target = tmp_path / "gradflow.xml"
    result = gradflow_cli("check", spec("build_zeroed"), "--device", "cpu", "--seeds", "2",
                          "--enable", "zero-grad", "--format", "junit", "-o", target)
    assert result.exit_code == 1
    root = ET.parse(target).getroot()
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert all(len(c.findall("failure")) <= 1 for c in cases)  # JUnit allows one per test case
    failed = {c.get("name"): c.find("failure") for c in cases if c.find("failure") is not None}
    skipped = [c for c in cases if c.find("skipped") is not None]
    for element in (root, suite):
        assert element.get("tests") == str(len(cases)) == str(len(RULES))
        assert element.get("failures") == str(len(failed)) == "2"
        assert element.get("skipped") == str(len(skipped)) and element.get("errors") == "0"
    # Independent of gradflow: what autograd says about the same model and input.
    model = models.build_zeroed()
    params = dict(model.named_parameters())
    loss = model(models.example_input().requires_grad_()).sum()
    grads = torch.autograd.grad(loss, list(params.values()), retain_graph=True, allow_unused=True)
    zero = {n for n, g in zip(params, grads) if g is not None and not g.any()}
    dead = set()
    for i, (x, block) in enumerate(zip(model.seen["x"], model.seen["block"], strict=True)):
        (g_block,) = torch.autograd.grad(block, x, torch.ones_like(block), retain_graph=True)
        if not g_block.any():
            dead.add(f"#{i}")
    assert zero and dead == {"#0", "#1", "#2"}
    for rule, subjects in (("zero-grad", zero), ("dead", dead)):
        failure = failed[rule]
        assert failure.get("type") == rule
        assert failure.get("message").startswith(f"{len(subjects)} violations of {rule}: ")
        assert {line.split(":")[0] for line in failure.text.splitlines()} == subjects


@pytest.mark.parametrize(("name", "start"), [("out.xml", "<?xml"), ("out.md", "### ❌"), ("out.json", "{")])
def test_output_file_suffix_picks_the_format_and_the_table_goes_to_stdout(gradflow_cli, tmp_path, name, start) -> None:
    result = gradflow_cli("check", spec("build_unused"), "--device", "cpu", "-o", tmp_path / name)
    assert result.exit_code == 1
    assert (tmp_path / name).read_text().startswith(start)
    assert "violations" in result.stdout and "FAILED" in result.stdout


def test_junit_on_stdout_passes_for_a_healthy_model(gradflow_cli) -> None:
    result = gradflow_cli("check", spec("build_healthy"), "--device", "cpu", "--format", "junit")
    assert result.exit_code == 0
    root = ET.fromstring(result.stdout)
    assert root.get("failures") == "0"
    assert len(root.find("testsuite").findall("testcase")) == len(RULES)


def test_github_annotations_point_at_the_junction_line(gradflow_cli) -> None:
    result = gradflow_cli("check", spec("build_dead"), "--device", "cpu", "--format", "github")
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    errors = [line for line in lines if line.startswith("::error ")]
    (annotation,) = errors
    line = next(i + 1 for i, text in enumerate(MODELS.read_text().splitlines()) if "y = x + out" in text)
    assert f"test_check_models.py,line={line}," in annotation
    assert "title=gradflow check%3A dead::#1 = " in annotation
    assert lines[-1].startswith("gradflow check FAILED")


def test_warnings_become_warning_annotations_and_exit_0(gradflow_cli) -> None:
    result = gradflow_cli("check", spec("build_dead"), "--device", "cpu", "--format", "github", "--warn", "dead")
    assert result.exit_code == 0
    assert result.stdout.startswith("::warning ")


def test_markdown_for_a_pull_request(gradflow_cli) -> None:
    result = gradflow_cli("check", spec("build_unused"), "--device", "cpu", "--format", "markdown")
    assert result.exit_code == 1
    assert result.stdout.startswith("### ❌ gradflow check")
    assert "| `unused` | ❌ failed (2) |" in result.stdout
    assert "`spare.weight`" in result.stdout


def test_json_is_the_report_plus_violations(gradflow_cli, report_schema) -> None:
    result = gradflow_cli("check", spec("build_unused"), "--device", "cpu", "--format", "json", "--seeds", "2")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    validate(document)
    assert document["schema"] == "gradflow/check@2" and document["passed"] is False
    assert document["exit_code"] == 1 and document["seeds"] == [0, 1]
    jsonschema.validate(document["report"], report_schema)
    assert {v["subject"] for v in document["violations"]} == unused_parameters()
    assert [r["rule"] for r in document["rules"]] == RULES


def test_seeds_draw_a_batch_per_seed(gradflow_cli) -> None:
    result = gradflow_cli("check", spec("build_healthy"), "--device", "cpu", "--input-shape", "3,8",
                          "--seed", "3", "--seeds", "3", "--format", "json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["seeds"] == [3, 4, 5] and document["report"]["probe"]["seed"] == 3


def test_write_baseline_then_compare(gradflow_cli, tmp_path, report_schema) -> None:
    baseline = tmp_path / "gradflow-baseline.json"
    written = gradflow_cli("check", spec("build_healthy"), "--device", "cpu", "--write-baseline", baseline)
    assert written.exit_code == 0
    assert "wrote baseline" in written.stderr
    document = json.loads(baseline.read_text())
    jsonschema.validate(document, report_schema)
    same = gradflow_cli("check", spec("build_healthy"), "--device", "cpu", "--baseline", baseline)
    assert same.exit_code == 0, same.output
    assert "largest drift 1×" in same.stdout


def test_regression_finds_new_and_missing_junctions(gradflow_cli, tmp_path) -> None:
    baseline = tmp_path / "base.json"
    gradflow_cli("check", spec("build_healthy"), "--device", "cpu", "--write-baseline", baseline)
    deeper = gradflow_cli("check", spec("build_deeper"), "--device", "cpu", "--baseline", baseline, "--format", "json")
    assert deeper.exit_code == 1
    found = [(v["subject"], v["message"].split(":")[0]) for v in json.loads(deeper.stdout)["violations"]
             if v["rule"] == "regression"]
    assert ("#3", "new") in found
    shallower = gradflow_cli("check", spec("build_shallower"), "--device", "cpu", "--baseline", baseline, "--format", "json")
    found = [(v["subject"], v["message"].split(":")[0]) for v in json.loads(shallower.stdout)["violations"]]
    assert ("#2", "missing") in found


def test_regression_tolerance_on_a_block_scaled_by_8(gradflow_cli, tmp_path) -> None:
    """With a sum loss and a linear head, the gradient arriving at the last junction does not
    depend on its block, so scaling that block's output by 8 multiplies its grad_block by 8."""
    baseline = tmp_path / "base.json"
    common = ("--device", "cpu", "--loss", "sum")
    gradflow_cli("check", spec("build_healthy"), *common, "--write-baseline", baseline)
    strict = gradflow_cli("check", spec("build_last_scaled"), *common, "--baseline", baseline, "--format", "json")
    assert strict.exit_code == 1
    moved = {v["subject"]: v for v in json.loads(strict.stdout)["violations"] if v["rule"] == "regression"}
    assert moved["#2"]["value"] == pytest.approx(8.0, rel=1e-5)  # junctions below it move too
    assert "grad_block" in moved["#2"]["message"] and "grad_skip" not in moved["#2"]["message"]
    loose = gradflow_cli("check", spec("build_last_scaled"), *common, "--baseline", baseline, "--tolerance", "10")
    assert loose.exit_code == 0, loose.output


def test_a_baseline_from_another_probe_is_refused(gradflow_cli, tmp_path) -> None:
    baseline = tmp_path / "base.json"
    gradflow_cli("check", spec("build_healthy"), "--device", "cpu", "--write-baseline", baseline)
    result = gradflow_cli("check", spec("build_healthy"), "--device", "cpu", "--baseline", baseline, "--loss", "sum")
    assert result.exit_code == 2
    assert "the baseline was measured with loss ce, this run uses sum" in result.stderr


def test_a_baseline_at_another_precision_is_refused(gradflow_cli, tmp_path) -> None:
    baseline = tmp_path / "base.json"
    gradflow_cli("check", spec("build_healthy"), "--device", "cpu", "--write-baseline", baseline)
    result = gradflow_cli("check", spec("build_healthy"), "--device", "cpu", "--baseline", baseline,
                          "--dtype", "bfloat16")
    assert result.exit_code == 2
    assert ("the baseline was measured with precision float32, this run uses bfloat16 (autocast)"
            in result.stderr)
    low = tmp_path / "low.json"
    gradflow_cli("check", spec("build_healthy"), "--device", "cpu", "--dtype", "bfloat16", "--write-baseline", low)
    same = gradflow_cli("check", spec("build_healthy"), "--device", "cpu", "--dtype", "bfloat16", "--baseline", low)
    assert same.exit_code == 0, same.output
    refused = gradflow_cli("check", spec("build_healthy"), "--device", "cpu", "--baseline", low)
    assert refused.exit_code == 2
    assert "measured with precision bfloat16 (autocast), this run uses float32" in refused.stderr


def test_a_report_written_before_the_precision_was_recorded_still_loads(gradflow_cli, tmp_path,
                                                                       report_schema) -> None:
    from gradflow.engine.report import Report

    baseline = tmp_path / "base.json"
    gradflow_cli("check", spec("build_healthy"), "--device", "cpu", "--write-baseline", baseline)
    document = json.loads(baseline.read_text())
    del document["probe"]["autocast"]
    jsonschema.validate(document, report_schema)
    assert Report.from_dict(document).probe.autocast is None
    baseline.write_text(json.dumps(document))
    result = gradflow_cli("check", spec("build_healthy"), "--device", "cpu", "--baseline", baseline)
    assert result.exit_code == 0, result.output


def test_pyproject_overrides_defaults_and_flags_override_pyproject(gradflow_cli, tmp_path, monkeypatch) -> None:
    """deep_mlp's smallest block_ratio is about 0.19 (and the same model passes the default)."""
    model = str(SAMPLES / "deep_mlp.py")
    (tmp_path / "sub").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.gradflow.check]\ndead-below = 0.5\n')
    monkeypatch.chdir(tmp_path / "sub")  # found from a subfolder too
    configured = gradflow_cli("check", model, "--device", "cpu", "--format", "json")
    assert configured.exit_code == 1
    document = json.loads(configured.stdout)
    assert {v["rule"] for v in document["violations"]} == {"dead"}
    assert _rule(document, "dead")["threshold"] == 0.5
    flagged = gradflow_cli("check", model, "--device", "cpu", "--dead-below", "0.1")
    assert flagged.exit_code == 0, flagged.output
    monkeypatch.chdir(ROOT)
    assert gradflow_cli("check", model, "--device", "cpu").exit_code == 0


def test_survival_below_sets_the_vanishing_rule(gradflow_cli) -> None:
    """The survival of the healthy stack is about 1 (at most 11 on healthy models)."""
    result = gradflow_cli("check", spec("build_healthy"), "--device", "cpu", "--format", "json",
                          "--survival-below", "1e9", "--warmup-steps", "0")
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert {v["rule"] for v in document["violations"]} == {"vanishing"}
    assert _rule(document, "vanishing")["threshold"] == 1e9


def test_vanishing_below_is_the_per_junction_threshold_as_in_inspect(gradflow_cli) -> None:
    args = (spec("build_healthy"), "--device", "cpu", "--format", "json", "--vanishing-below", "1e9")
    checked = gradflow_cli("check", *args, "--warmup-steps", "0")
    assert checked.exit_code == 0, checked.output  # no rule fails on a junction's status alone
    document = json.loads(checked.stdout)
    assert _rule(document, "vanishing")["threshold"] == defaults.SURVIVAL_BELOW
    inspected = json.loads(gradflow_cli("inspect", *args).stdout)
    statuses = [j["status"] for j in document["report"]["junctions"]]
    assert statuses == [j["status"] for j in inspected["junctions"]]
    assert set(statuses) == {"vanishing"}


def test_the_old_key_vanishing_below_is_read_as_survival_below_with_a_warning(
        gradflow_cli, tmp_path, monkeypatch) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.gradflow.check]\nvanishing-below = 1e9\n")
    monkeypatch.chdir(tmp_path)
    result = gradflow_cli("check", spec("build_healthy"), "--device", "cpu", "--format", "json",
                          "--warmup-steps", "0")
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"gradflow: warning: {tmp_path / 'pyproject.toml'} [tool.gradflow.check]: "
                           "vanishing-below is deprecated, use survival-below"), line
    document = json.loads(result.stdout)
    assert _rule(document, "vanishing")["threshold"] == 1e9
    assert {j["status"] for j in document["report"]["junctions"]} == {"ok"}


def test_the_old_and_the_new_key_together_exit_2(gradflow_cli, tmp_path, monkeypatch) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.gradflow.check]\nsurvival_below = 0.1\nvanishing_below = 0.1\n")
    monkeypatch.chdir(tmp_path)
    result = gradflow_cli("check", spec("build_healthy"), "--device", "cpu")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("gradflow: error: ") and "survival-below and its old name vanishing-below" in line


def test_configured_levels_and_enable(gradflow_cli, tmp_path, monkeypatch) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.gradflow.check]\ndisable = ["unused"]\nwarn = ["dead"]\nseeds = 2\n')
    monkeypatch.chdir(tmp_path)
    off = gradflow_cli("check", spec("build_unused"), "--device", "cpu", "--format", "json")
    assert off.exit_code == 0
    document = json.loads(off.stdout)
    assert document["seeds"] == [0, 1]
    assert _rule(document, "unused")["status"] == "off"
    enabled = gradflow_cli("check", spec("build_unused"), "--device", "cpu", "--enable", "unused")
    assert enabled.exit_code == 1
    warned = gradflow_cli("check", spec("build_dead"), "--device", "cpu", "--format", "json")
    assert warned.exit_code == 0 and json.loads(warned.stdout)["violations"][0]["level"] == "warning"


def test_explicit_config_file_and_its_errors(gradflow_cli, tmp_path) -> None:
    config = tmp_path / "gradflow.toml"
    config.write_text('allow_unused = ["spare"]\n')
    assert gradflow_cli("check", spec("build_unused"), "--device", "cpu", "--config", config).exit_code == 0
    config.write_text('dead_bellow = 0.1\n')
    typo = gradflow_cli("check", spec("build_unused"), "--device", "cpu", "--config", config)
    assert typo.exit_code == 2 and "unknown key 'dead_bellow'" in typo.stderr
    config.write_text('[tool.gradflow.check]\ntolerance = "big"\n')
    wrong = gradflow_cli("check", spec("build_unused"), "--device", "cpu", "--config", config)
    assert wrong.exit_code == 2 and "tolerance must be a number" in wrong.stderr
    config.write_text('[tool.gradflow.check\n')
    broken = gradflow_cli("check", spec("build_unused"), "--device", "cpu", "--config", config)
    assert broken.exit_code == 2 and "not valid TOML" in broken.stderr


@pytest.mark.parametrize(("written", "problem"), [
    ("seeds = 0", "must be at least 1"),
    ('warn = ["nosuchrule"]', "unknown rule 'nosuchrule': the rules are nonfinite"),
    ('disable = ["dead", "deadd"]', "unknown rule 'deadd'"),
    ("vanishing-below = -1", "must be a number >= 0"),
    ("survival-below = -1", "must be a number >= 0"),
    ("dead_below = nan", "must be a number >= 0"),
    ("exploding_above = 0", "must be a number > 0"),
    ("tolerance = 0.5", "must be a finite factor >= 1"),
])
def test_a_bad_configured_value_names_the_file_and_the_setting(gradflow_cli, tmp_path, monkeypatch,
                                                              written, problem) -> None:
    # Not as a flag (--seeds): the user wrote no flag, and must find the line in the file.
    (tmp_path / "pyproject.toml").write_text(f"[tool.gradflow.check]\n{written}\n")
    monkeypatch.chdir(tmp_path)
    result = gradflow_cli("check", spec("build_healthy"), "--device", "cpu")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"gradflow: error: {tmp_path / 'pyproject.toml'} [tool.gradflow.check] {written}: "
                           f"{problem}"), line


def test_configured_baseline_is_relative_to_the_pyproject(gradflow_cli, tmp_path, monkeypatch) -> None:
    gradflow_cli("check", spec("build_healthy"), "--device", "cpu", "--write-baseline", tmp_path / "ci" / "base.json")
    (tmp_path / "pyproject.toml").write_text('[tool.gradflow.check]\nbaseline = "ci/base.json"\n')
    (tmp_path / "src").mkdir()
    monkeypatch.chdir(tmp_path / "src")
    result = gradflow_cli("check", spec("build_deeper"), "--device", "cpu")
    assert result.exit_code == 1 and "new" in result.stdout


def test_help_documents_exit_codes_and_defaults_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "from gradflow.cli.app import app\n"
        "try:\n    app(['check', '--help'], prog_name='gradflow')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"COLUMNS": "200", "PATH": ""}, check=True).stdout
    text = " ".join(out.split())
    assert "0 every rule passes, 1 a rule fails, 2 the run could not be made" in text
    assert "--survival-below" in text and "--vanishing-below" in text
    for rule, value in (("vanishing", defaults.SURVIVAL_BELOW), ("junction", defaults.VANISHING_BELOW),
                        ("dead", defaults.DEAD_BELOW),
                        ("exploding", defaults.EXPLODING_ABOVE), ("tolerance", defaults.TOLERANCE)):
        assert f"{value:g}" in text, rule
