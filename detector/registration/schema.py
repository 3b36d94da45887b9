"""JSON Schema (draft 2020-12) of a registration, generated from the pydantic model.

`config/expectation.schema.json` is this output, committed for editors; regenerate it with

    .venv/bin/python -m detector.registration.schema > config/expectation.schema.json

(a unit test checks the committed file equals the generated one). The OpenAPI document embeds
the same schema. What the schema cannot say (and `parse_registration` checks): variant weights sum
to 1 (+/- 1e-6), ends_at after starts_at, max_users is an integer *value* (3.0 is rejected), the
experiment in an API body equals the one in the path.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel

from detector.registration.model import Registration

SCHEMA_ID = "urn:exposure-detector:schema:expectation:v1"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

# "At least one rule is declared", as JSON Schema can say it.
AT_LEAST_ONE_RULE = [
    {"required": ["starts_at"], "properties": {"starts_at": {"type": "string"}}},
    {"required": ["ends_at"], "properties": {"ends_at": {"type": "string"}}},
    {"required": ["variants"], "properties": {"variants": {"type": "object"}}},
    {
        "required": ["population"],
        "properties": {
            "population": {
                "type": "object",
                "anyOf": [
                    {"required": [name], "properties": {name: {"type": kind}}}
                    for name, kind in (("allowlist", "array"), ("max_users", "integer"), ("fraction", "number"),
                                       ("segments", "object"))
                ],
            }
        },
    },
]


def model_schema(model: type[BaseModel], *, mode: str = "validation") -> dict[str, Any]:
    """A self-contained JSON Schema of `model`: references inlined, pydantic's titles dropped,
    `Optional[X]` as X with type `[t, "null"]`, `patternProperties` as `propertyNames` +
    `additionalProperties` (one value schema per map): the forms editors handle best."""
    raw = model.model_json_schema(mode=mode)  # type: ignore[arg-type]
    defs = raw.pop("$defs", {})

    def tidy(node: Any) -> Any:
        if isinstance(node, list):
            return [tidy(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = dict(defs[node["$ref"].rsplit("/", 1)[-1]])
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return tidy({**target, **extra})
        out = {k: tidy(v) for k, v in node.items() if k != "title"}
        branches = out.get("anyOf")
        if isinstance(branches, list) and len(branches) == 2 and {"type": "null"} in branches:
            (only,) = [b for b in branches if b != {"type": "null"}]
            if isinstance(only.get("type"), str):  # Optional[X] as X with a nullable type
                out.pop("anyOf")
                out = {**only, **out, "type": [only["type"], "null"]}
        if "patternProperties" in out:
            ((pattern, value),) = out.pop("patternProperties").items()
            out["propertyNames"] = {**out.get("propertyNames", {}), "pattern": pattern}
            out["additionalProperties"] = value
        return out

    return tidy(raw)


def registration_json_schema(*, require_experiment: bool = True) -> dict[str, Any]:
    """The registration's JSON Schema (`require_experiment=False`: an API body, path names it)."""
    body = model_schema(Registration)
    schema: dict[str, Any] = {"$schema": DIALECT, "$id": SCHEMA_ID, "title": "Exposure registration", **body}
    schema["anyOf"] = AT_LEAST_ONE_RULE
    if not require_experiment:
        schema.pop("required", None)
    return schema


def main() -> int:
    json.dump(registration_json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
