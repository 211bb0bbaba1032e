"""The JSON Schemas of gradflow's formats (gradflow/schemas/*.schema.json), loaded together so
that one may refer to another by version (`"$ref": "report@1"`), and a validator that picks the
schema by a document's own `schema` field."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parent.parent / "gradflow" / "schemas"
DIGESTS = SCHEMAS / "digests.json"


@cache
def schemas() -> dict[str, dict[str, Any]]:
    """Every schema by its `$id`, which is its format and version: `gradflow/report@1`."""
    found = {}
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        found[schema["$id"]] = schema
    return found


def digest(schema: dict[str, Any]) -> str:
    """What a schema says, not how it is laid out: key order and whitespace do not count."""
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def validate(document: dict[str, Any], name: str | None = None) -> None:
    """Validate against the schema `name`, by default the one the document names; raises
    jsonschema.ValidationError."""
    registry: Registry = Registry().with_resources(
        (key, Resource.from_contents(schema)) for key, schema in schemas().items()
    )
    schema = schemas()[name or document["schema"]]
    jsonschema.Draft202012Validator(schema, registry=registry).validate(document)
