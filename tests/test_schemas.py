"""Every JSON format has a schema: real outputs of every command validate against it, a broken
document does not, and a schema cannot change without a new version."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest

from gradflow.engine.report import REPORT_SCHEMA
from gradflow.gate.result import CHECK_SCHEMA
from gradflow.render.json import COMPARE_SCHEMA
from gradflow.track.arms import TRACK_ARMS_SCHEMA
from gradflow.track.result import TRACK_SCHEMA
from gradflow.track.watch_log import SHOW_SCHEMA
from gradflow.watching.record import WATCH_SCHEMA
from tests.conftest import ROOT, SAMPLES
from tests.schemas import DIGESTS, digest, schemas, validate

# The version each format's writer puts in its documents' `schema` field. A new format adds its
# constant here and its schema file beside the others; a new version changes neither list.
WRITTEN = (REPORT_SCHEMA, COMPARE_SCHEMA, CHECK_SCHEMA, TRACK_SCHEMA, WATCH_SCHEMA, SHOW_SCHEMA,
           TRACK_ARMS_SCHEMA)


def test_every_format_has_a_schema_at_the_version_it_writes() -> None:
    assert set(schemas()) == set(WRITTEN)
    for name, schema in schemas().items():
        assert schema["properties"]["schema"] == {"const": name}, name
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(schema)


def test_a_schema_changes_only_with_a_new_version() -> None:
    recorded = json.loads(DIGESTS.read_text(encoding="utf-8"))
    for name, schema in schemas().items():
        assert name in recorded, (
            f"{name} is new: add its digest to {DIGESTS.name}: \"{name}\": \"{digest(schema)}\"")
        assert digest(schema) == recorded[name], (
            f"{name} changed without a new version: give the schema a new version (its $id, its "
            f"`schema` const and the constant the code writes) and add that version's digest to "
            f"{DIGESTS.name}: {digest(schema)}")


def _run(gradflow_cli, *args: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    result = gradflow_cli(*args, "--format", "json")
    assert result.exit_code in (0, 1), result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_compare_outputs_validate(gradflow_cli) -> None:  # type: ignore[no-untyped-def]
    variants = _run(gradflow_cli, "compare", SAMPLES / "tiny_resnet.py", "--sg-skip", "--sg-block")
    assert list(variants["variants"]) == ["baseline", "sg-skip", "sg-block"]
    validate(variants)
    two = _run(gradflow_cli, "compare", SAMPLES / "rezero.py", SAMPLES / "deep_mlp.py")
    assert list(two["variants"]) == ["rezero.py", "deep_mlp.py"]
    validate(two)


def test_check_outputs_validate(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    baseline = tmp_path / "baseline.json"
    passed = _run(gradflow_cli, "check", SAMPLES / "tiny_resnet.py", "--seeds", "2",
                  "--write-baseline", baseline)
    assert passed["passed"] is True
    validate(passed)
    validate(json.loads(baseline.read_text()))  # the baseline is a report
    failed = _run(gradflow_cli, "check", SAMPLES / "tiny_resnet.py", "--baseline", baseline,
                  "--tolerance", "1.0001", "--seed", "5", "--warn", "regression", "--dead-below", "3")
    assert failed["passed"] is False and {v["level"] for v in failed["violations"]} == {"error", "warning"}
    validate(failed)
    dead = _run(gradflow_cli, "check", f"{ROOT / 'tests' / 'fixtures' / 'shapes.py'}:build_dead_relu",
                "--disable", "cut")
    assert {v["rule"] for v in dead["violations"]} == {"zero-grad", "dead"}
    assert {r["status"] for r in dead["rules"]} == {"passed", "failed", "warning", "off", "n/a"}
    validate(dead)


def test_track_outputs_validate(gradflow_cli) -> None:  # type: ignore[no-untyped-def]
    document = _run(gradflow_cli, "track", SAMPLES / "tiny_resnet.py", "--steps", "3", "--every", "2")
    assert len(document["records"]) == 2 * len(document["junctions"]) == 12
    validate(document)
    none = _run(gradflow_cli, "track", SAMPLES / "plain_net.py", "--steps", "2")
    assert none["junctions"] == [] and len(none["losses"]) == 2
    validate(none)


def test_inspect_output_validates(gradflow_cli) -> None:  # type: ignore[no-untyped-def]
    validate(_run(gradflow_cli, "inspect", SAMPLES / "deep_mlp.py", "--sg-skip"))


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    """One valid document per format, from the Python API."""
    import torch

    import gradflow
    from gradflow.render.json import compare_json
    from gradflow.track import track
    from tests.fixtures.models import SmallResNet

    torch.manual_seed(0)
    model, x = SmallResNet(), torch.randn(4, 3, 16, 16)
    comparison = gradflow.compare(model, x, sg_skip=True)
    return {
        "report": comparison.variants["baseline"].to_dict(),
        "compare": json.loads(compare_json(comparison.variants)),
        "check": gradflow.check(model, x).to_dict(),
        "track": track(model, x, steps=2).to_dict(),
    }


def _set(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(document)
    *parents, last = path.split(".")
    node: Any = broken
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is KeyError:
        del node[last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return broken


@pytest.mark.parametrize(("format", "path", "value"), [
    ("report", "junctions.0.status", "fine"),
    ("report", "junctions.0.grad_in", KeyError),
    ("compare", "variants.sg-skip.junctions.0.cosine", 2.0),  # the report inside, by reference
    ("compare", "extra", 1),
    ("check", "rules.0.status", "maybe"),
    ("check", "violations", [{"rule": "dead"}]),
    ("check", "report.summary", KeyError),
    ("track", "records.0.loss", KeyError),
    ("track", "settings.optimizer", "lbfgs"),
    ("track", "schema", "gradflow/track@0"),
])
def test_the_schemas_reject_broken_documents(documents, format: str, path: str, value: Any) -> None:  # type: ignore[no-untyped-def]
    document = documents[format]
    validate(document)
    with pytest.raises(jsonschema.ValidationError):
        validate(_set(document, path, value), document["schema"])


def test_a_watch_log_validates_line_by_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A real log: its header and every record, complete and incomplete, non-finite numbers
    included; a record with a stray field or a status no report has does not."""
    import torch

    import gradflow
    from tests.test_watch import ResMLP, batches, ce

    torch.manual_seed(0)
    model = ResMLP(scales=(1.0, 0.0, float("nan")))
    path = tmp_path / "flow.jsonl"
    with gradflow.watch(model, every=2, log=path, on_flag=lambda record, rule: None) as w:
        for (x, y), in batches(3):
            loss = ce(model(x), y)
            loss.backward()
            w.step(loss)
        model(x)  # step 3: not measured; step 4 would be, and is never reached
        out = model(x)  # step 4, measured: the block ends before its backward pass
        del out
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert {r["complete"] for r in lines[1:] if "complete" in r} == {False}
    assert any(r.get("grad_block") is None and r.get("complete") is None for r in lines[1:])  # the nan block
    for line in lines:
        validate(line, WATCH_SCHEMA)
    for broken in ({**lines[1], "extra": 1}, {**lines[1], "status": "fine"}, {**lines[0], "every": 0}):
        with pytest.raises(jsonschema.ValidationError):
            validate(broken, WATCH_SCHEMA)


def test_a_report_of_a_custom_loss_validates() -> None:
    import torch

    import gradflow
    from tests.test_watch import ResMLP

    x = torch.randn(4, 4)
    report = gradflow.inspect(ResMLP(), x, loss=lambda out: out.square().mean())
    assert report.probe.loss == "custom"
    validate(report.to_dict())
