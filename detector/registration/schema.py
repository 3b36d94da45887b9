"""JSON Schema (draft 2020-12) of a registration, mirroring `model.parse_expectation`.

`config/expectation.schema.json` is generated from here (`python -m detector.registration.schema
> config/expectation.schema.json`; a unit test checks they agree) and the OpenAPI document embeds
it. The schema is for editors and reviewers; `parse_expectation` remains the authority. What a
schema cannot say (and the parser checks): variant weights sum to 1 (+/- 1e-6), ends_at after
starts_at, max_users is an integer *value* (3.0 is rejected), no surrounding whitespace in ids,
the experiment in an API body equals the one in the path.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from detector.expectations import DEFAULT_TOLERANCE, SEVERITIES
from detector.registration import model as m

SCHEMA_ID = "urn:exposure-detector:schema:expectation:v1"


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    t = out.get("type")
    if isinstance(t, str):
        out["type"] = [t, "null"]
    return out


def _id_string(description: str | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": m.MAX_ID_LENGTH, "pattern": r"^\S(.*\S)?$"}
    if description:
        s["description"] = description
    return s


def expectation_json_schema(*, require_experiment: bool = True) -> dict[str, Any]:
    timestamp = {
        "type": "string",
        "format": "date-time",
        "pattern": m.RFC3339_PATTERN,
        "description": "RFC 3339 with a time zone, e.g. 2021-02-09T18:00:00Z",
    }
    population = {
        "type": "object",
        "additionalProperties": False,
        "description": "Who may be enrolled. Each field present is a separate rule.",
        "properties": {
            "allowlist": _nullable(
                {
                    "type": "array",
                    "maxItems": m.MAX_ALLOWLIST,
                    "items": _id_string(),
                    "description": "The only user ids that may be enrolled (rule allowlist_breach).",
                }
            ),
            "max_users": _nullable(
                {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": m.MAX_MAX_USERS,
                    "description": "Most distinct enrolled users (rule max_users_exceeded).",
                }
            ),
            "fraction": _nullable(
                {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "description": "Largest share of eligible traffic enrolled, 0.1 = 10% (rule fraction_exceeded).",
                }
            ),
            "unenrolled_logged": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "default": 1,
                "description": "Share of not-enrolled evaluations your SDK logs: 1 all, q sampled at rate q, "
                "0 only enrolled users are logged (no fraction rule then).",
            },
            "segments": _nullable(
                {
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": m.MAX_SEGMENT_ATTRIBUTES,
                    "propertyNames": {"minLength": 1, "maxLength": 128},
                    "additionalProperties": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": m.MAX_SEGMENT_VALUES,
                        "items": _id_string(),
                    },
                    "description": "Attribute -> allowed values, e.g. {country: [US]} (rule segment_breach).",
                }
            ),
        },
    }
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Exposure expectation (registration)",
        "description": (
            "The exposure an experiment is expected to have, declared before it starts. Validated by "
            "detector.registration.parse_expectation, which also checks: variant weights sum to 1, "
            "ends_at > starts_at, and at least one rule is declared."
        ),
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "schema_version": {"type": "integer", "enum": list(m.SUPPORTED_SCHEMA_VERSIONS), "default": 1},
            "experiment": {"type": "string", "pattern": m.EXPERIMENT_KEY_PATTERN, "description": "Experiment key."},
            "owner": _nullable({"type": "string", "minLength": 1, "maxLength": m.MAX_OWNER}),
            "description": _nullable({"type": "string", "maxLength": m.MAX_DESCRIPTION}),
            "starts_at": _nullable(dict(timestamp, description="Window start, inclusive (rule outside_window).")),
            "ends_at": _nullable(dict(timestamp, description="Window end, exclusive; after starts_at.")),
            "population": _nullable(population),
            "variants": _nullable(
                {
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": m.MAX_VARIANTS,
                    "propertyNames": {"minLength": 1, "maxLength": 128, "pattern": r"^\S(.*\S)?$"},
                    "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
                    "description": "Declared split, weights summing to 1 (rule sample_ratio_mismatch).",
                }
            ),
            "severity": {"type": "string", "enum": list(SEVERITIES), "default": "warning"},
            "tolerance": {
                "type": "number",
                "minimum": 0,
                "default": DEFAULT_TOLERANCE,
                "description": "The fraction rule alerts above fraction * (1 + tolerance); the default "
                "absorbs a logging gap of a few percent between enrolled and not-enrolled evaluations.",
            },
            "alpha": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": m.MAX_ALPHA,
                "default": m.DEFAULT_ALPHA,
                "description": "Lifetime false-alarm budget of the experiment's statistical rules (fraction "
                "and split together); default: the fleet share DETECTOR_FALSE_PAGE_BUDGET / DETECTOR_ACTIVE_EXPERIMENTS.",
            },
            "mitigation": _nullable(
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "kill_url": _nullable(
                            {
                                "type": "string",
                                "format": "uri",
                                "maxLength": m.MAX_URL,
                                "pattern": r"^[hH][tT][tT][pP][sS]?://[^\s@/]+(/\S*)?$",
                                "description": "Opt-in auto-mitigation: POSTed when a critical rule fires.",
                            }
                        )
                    },
                }
            ),
            "labels": _nullable(
                {
                    "type": "object",
                    "maxProperties": m.MAX_LABELS,
                    "propertyNames": {"pattern": m.LABEL_NAME_PATTERN},
                    "additionalProperties": {"type": "string", "maxLength": m.MAX_LABEL_VALUE},
                }
            ),
        },
        "anyOf": [
            {"required": ["starts_at"], "properties": {"starts_at": {"type": "string"}}},
            {"required": ["ends_at"], "properties": {"ends_at": {"type": "string"}}},
            {"required": ["variants"], "properties": {"variants": {"type": "object"}}},
            {
                "required": ["population"],
                "properties": {
                    "population": {
                        "type": "object",
                        "anyOf": [
                            {"required": ["allowlist"], "properties": {"allowlist": {"type": "array"}}},
                            {"required": ["max_users"], "properties": {"max_users": {"type": "integer"}}},
                            {"required": ["fraction"], "properties": {"fraction": {"type": "number"}}},
                            {"required": ["segments"], "properties": {"segments": {"type": "object"}}},
                        ],
                    }
                },
            },
        ],
    }
    if require_experiment:
        schema["required"] = ["experiment"]
    return schema


def main() -> int:
    json.dump(expectation_json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
