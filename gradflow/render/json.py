"""JSON documents: the report (`gradflow/report@2`) and the comparison (`gradflow/compare@2`).
Each format's JSON Schema is in gradflow/schemas/."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gradflow.engine.report import Report

COMPARE_SCHEMA = "gradflow/compare@2"


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, allow_nan=False)


def report_json(report: Report) -> str:
    return dumps(report.to_dict())


def compare_json(variants: Mapping[str, Report]) -> str:
    return dumps({"schema": COMPARE_SCHEMA, "variants": {k: r.to_dict() for k, r in variants.items()}})
