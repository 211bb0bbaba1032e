"""JUnit XML: one test case per rule, readable by CI systems (GitHub test reporters, GitLab,
Jenkins, Azure Pipelines).

A failed rule's test case holds one <failure> (JUnit allows no more) that lists every violation;
`failures` counts failed test cases. Rules that are off, or that had nothing to judge (no
baseline, no junctions), are <skipped>; warnings go to the test case's <system-out> and do not
fail it.
"""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET

from gradflow.gate.result import CheckResult, RuleOutcome
from gradflow.gate.rules import Violation
from gradflow.gate.settings import Level
from gradflow.render.check import limit_text, value_text, worst_text
from gradflow.render.numbers import num


def check_junit(result: CheckResult) -> str:
    report = result.report
    source = report.model.source
    # each report's total includes the one model load; count it once
    load = result.report.timings_s.get("load", 0.0)
    total = load + sum(r.timings_s.get("total", 0.0) - r.timings_s.get("load", 0.0)
                       for r in result.reports)
    failures = sum(1 for o in result.outcomes if o.failed)
    skipped = sum(1 for o in result.outcomes if o.status in ("off", "n/a"))
    counts = {"tests": str(len(result.outcomes)), "failures": str(failures), "errors": "0",
              "skipped": str(skipped), "time": f"{total:.3f}"}
    root = ET.Element("testsuites", {"name": "gradflow check", **counts})
    suite = ET.SubElement(root, "testsuite", {
        "name": f"gradflow check {source}", **counts,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        .isoformat().replace("+00:00", "Z"),
    })
    properties = ET.SubElement(suite, "properties")
    for name, value in (("source", source), ("seeds", ",".join(map(str, result.seeds))),
                        ("junctions", str(report.summary.junctions)),
                        ("baseline", result.baseline or ""), ("verdict", result.verdict())):
        ET.SubElement(properties, "property", {"name": name, "value": value})
    for o in result.outcomes:
        case = ET.SubElement(suite, "testcase", {
            "classname": f"gradflow.check.{source}", "name": o.rule, "time": "0",
        })
        if o.status in ("off", "n/a"):
            why = "turned off" if o.status == "off" else worst_text(o)
            ET.SubElement(case, "skipped", {"message": why})
            continue
        lines = [f"{o.title}: {o.fires}",
                 f"worst measured: {worst_text(o)} (limit {limit_text(o)})"]
        if o.failed:
            failure = ET.SubElement(case, "failure", {"message": _failure_message(o), "type": o.rule})
            failure.text = "\n".join(_violation_line(v) for v in o.violations)
        elif o.level is not Level.ERROR:
            lines += ["warning: " + _violation_line(v) for v in o.violations]
        ET.SubElement(case, "system-out").text = "\n".join(lines)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _failure_message(outcome: RuleOutcome, shown: int = 8) -> str:
    """One line: how many violations, of what subjects."""
    subjects = list(dict.fromkeys(v.subject for v in outcome.violations))
    count = len(outcome.violations)
    listed = ", ".join(subjects[:shown])
    if len(subjects) > shown:
        listed += f" and {len(subjects) - shown} more"
    return f"{count} violation{'s' if count != 1 else ''} of {outcome.rule}: {listed}"


def _violation_line(v: Violation) -> str:
    return (f"{v.subject}: value {value_text(v)}, threshold {num(v.threshold)}, seed {v.seed}: "
            f"{v.message}" + (f" ({v.location})" if v.location else ""))
