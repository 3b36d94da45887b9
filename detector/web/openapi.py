"""OpenAPI 3.1 document of the worker's HTTP API (served at `GET /v1/openapi.json`).

Covers every route of the HTTP contract in DESIGN.md, including the ones other modules serve
(health, metrics, blast radius, incidents). The registration schema is the same one
`config/expectation.schema.json` holds (OpenAPI 3.1 schemas are JSON Schema 2020-12).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from detector.engine.rules import RULE_NAMES
from detector.registration.schema import expectation_json_schema

API_VERSION = "1.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


EXPERIMENT_PARAM = {
    "name": "experiment",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"},
}


def _flag(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
            "description": description}


DRY_RUN = _flag("dry_run", "Validate and return the diff, active rules and risks without writing.")
CONFIRM = _flag("confirm", "Apply a change that carries risks (otherwise 409).")
WRITE_ERRORS = {
    "401": _error("Missing or invalid bearer token."),
    "503": _error("Writes are disabled: DETECTOR_API_TOKEN is not set on the worker."),
}


def _schemas() -> dict[str, Any]:
    full = expectation_json_schema()
    for key in ("$schema", "$id"):
        full.pop(key, None)
    body = copy.deepcopy(full)
    body.pop("required", None)
    body["description"] = "A registration; `experiment` may be omitted (the path's is used) and must match it."
    field_error = {
        "type": "object",
        "required": ["field", "message"],
        "properties": {
            "field": {"type": "string", "description": "Dotted path of the offending field, e.g. population.fraction"},
            "message": {"type": "string"},
            "code": {"type": "string", "description": "Risk code, on 409 responses"},
            "source": {"type": "string", "description": "File the problem came from (CLI / GitOps)"},
        },
    }
    diff_entry = {
        "type": "object",
        "required": ["field", "old", "new"],
        "properties": {
            "field": {"type": "string"},
            "old": {},
            "new": {},
            "added": {"type": "array", "items": {"type": "string"}},
            "removed": {"type": "array", "items": {"type": "string"}},
            "added_count": {"type": "integer"},
            "removed_count": {"type": "integer"},
        },
    }
    risk = {
        "type": "object",
        "required": ["code", "field", "message"],
        "properties": {
            "code": {
                "type": "string",
                "examples": [
                    "allowlist_with_large_fraction",
                    "large_max_users_with_allowlist",
                    "max_users_below_observed",
                    "fraction_below_observed",
                    "widened_max_users",
                    "widened_fraction",
                    "window_already_ended",
                    "delete_with_traffic",
                ],
            },
            "field": {"type": "string"},
            "message": {"type": "string"},
        },
    }
    rules = list(RULE_NAMES)
    return {
        "Expectation": full,
        "ExpectationBody": body,
        "FieldError": field_error,
        "Error": {
            "type": "object",
            "required": ["error", "errors"],
            "properties": {"error": {"type": "string"}, "errors": {"type": "array", "items": _ref("FieldError")}},
            "additionalProperties": True,
        },
        "DiffEntry": diff_entry,
        "Risk": risk,
        "WriteResult": {
            "type": "object",
            "required": ["experiment", "action", "dry_run", "diff", "risks", "requires_confirmation"],
            "properties": {
                "experiment": {"type": "string"},
                "action": {"type": "string", "enum": ["create", "update", "unchanged", "delete"]},
                "dry_run": {"type": "boolean"},
                "diff": {"type": "array", "items": _ref("DiffEntry")},
                "active_rules": {"type": "array", "items": {"type": "string", "enum": rules}},
                "risks": {"type": "array", "items": _ref("Risk")},
                "requires_confirmation": {"type": "boolean"},
                "expectation": _ref("Expectation"),
            },
        },
        "ExpectationList": {
            "type": "object",
            "required": ["count", "expectations"],
            "properties": {"count": {"type": "integer"}, "expectations": {"type": "array", "items": _ref("Expectation")}},
        },
        "History": {
            "type": "object",
            "properties": {
                "experiment": {"type": "string"},
                "history": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["at", "who", "action", "diff"],
                        "properties": {
                            "at": {"type": "string", "format": "date-time"},
                            "who": {"type": "string"},
                            "action": {"type": "string", "enum": ["create", "update", "delete"]},
                            "diff": {"type": "array", "items": _ref("DiffEntry")},
                        },
                    },
                },
            },
        },
        "ExperimentView": {
            "type": "object",
            "description": "The declaration and the observation side by side.",
            "required": ["experiment", "registered", "declaration", "comparison", "rules"],
            "properties": {
                "experiment": {"type": "string"},
                "registered": {"type": "boolean"},
                "declaration": {"oneOf": [_ref("Expectation"), {"type": "null"}]},
                "active_rules": {"type": "array", "items": {"type": "string", "enum": rules}},
                "observed": {"type": "boolean"},
                "comparison": {
                    "type": "object",
                    "properties": {
                        "enrolled_users": {"type": "object"},
                        "eligible_users": {"type": "object"},
                        "fraction": {"type": "object"},
                        "variants": {"type": "object"},
                    },
                },
                "rules": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["rule", "active", "state"],
                        "properties": {
                            "rule": {"type": "string", "enum": rules},
                            "active": {"type": "boolean"},
                            "expected": {},
                            "state": {"type": "string"},
                            "statistic": {},
                        },
                    },
                },
                "observation": {"type": ["object", "null"]},
            },
        },
        "Incident": {
            "type": "object",
            "description": "An incident (alert lifecycle): the alert fields and a timestamped timeline.",
            "properties": {
                "id": {"type": "string"},
                "status": {"type": "string", "enum": ["firing", "resolved"]},
                "experiment": {"type": "string"},
                "rule": {"type": "string", "enum": rules},
                "severity": {"type": "string", "enum": ["critical", "error", "warning", "info"]},
                "summary": {"type": "string"},
                "started_at": {"type": "string", "format": "date-time"},
                "ended_at": {"type": ["string", "null"], "format": "date-time"},
                "first_offending_event_at": {"type": ["string", "null"], "format": "date-time"},
                "detected_at": {"type": "string", "format": "date-time"},
                "observed": {},
                "expected": {},
                "blast_radius": {"type": "object"},
                "timeline": {"type": "array", "items": {"type": "object", "properties": {"at": {"type": "string"}}}},
            },
            "additionalProperties": True,
        },
        "BlastRadius": {
            "type": "object",
            "properties": {
                "experiment": {"type": "string"},
                "count": {"type": "integer", "description": "Out-of-target users"},
                "users": {"type": "array", "items": {"type": "object"}},
                "truncated": {"type": "boolean"},
            },
            "additionalProperties": True,
        },
    }


@functools.lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    exp_path = "/v1/expectations/{experiment}"
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Exposure anomaly detector worker API",
            "version": API_VERSION,
            "description": (
                "Register the exposure an experiment is expected to have and compare it with what is observed. "
                "Writes need `Authorization: Bearer $DETECTOR_API_TOKEN`. Errors are "
                '`{"error": ..., "errors": [{"field", "message"}]}`.'
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "Liveness and readiness",
                    "operationId": "healthz",
                    "responses": {"200": _json({"type": "object"}, "Healthy."), "503": _json({"type": "object"}, "Not ready.")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "responses": {
                        "200": {"description": "Prometheus text exposition format.",
                                "content": {"text/plain": {"schema": {"type": "string"}}}}
                    },
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document.")},
                }
            },
            "/v1/expectations": {
                "get": {
                    "summary": "List registrations",
                    "operationId": "listExpectations",
                    "responses": {"200": _json(_ref("ExpectationList"), "Every registration, sorted by experiment.")},
                }
            },
            exp_path: {
                "parameters": [EXPERIMENT_PARAM],
                "get": {
                    "summary": "One registration (canonical form)",
                    "operationId": "getExpectation",
                    "responses": {"200": _json(_ref("Expectation"), "The registration."),
                                  "400": _error("Invalid experiment key."),
                                  "404": _error("Not registered.")},
                },
                "put": {
                    "summary": "Create or replace a registration",
                    "operationId": "putExpectation",
                    "security": [{"bearer": []}],
                    "parameters": [DRY_RUN, CONFIRM,
                                   {"name": "X-Detector-User", "in": "header", "required": False,
                                    "schema": {"type": "string", "maxLength": 128},
                                    "description": "Who makes the change (kept in the history); default 'api'."}],
                    "requestBody": {
                        "required": True,
                        "description": "At most 1 MiB.",
                        "content": {
                            "application/json": {"schema": _ref("ExpectationBody")},
                            "application/yaml": {"schema": _ref("ExpectationBody")},
                        },
                    },
                    "responses": {
                        "200": _json(_ref("WriteResult"), "Updated, unchanged, or (dry run) what would happen."),
                        "201": _json(_ref("WriteResult"), "Created."),
                        "400": _error("Malformed body, invalid path key or query parameter."),
                        "409": _error("Risky change: repeat with ?confirm=true. `risks` lists why."),
                        "413": _error("Body larger than 1 MiB."),
                        "415": _error("Content type other than JSON or YAML."),
                        "422": _error("Invalid registration; `errors` names each field."),
                        **WRITE_ERRORS,
                    },
                },
                "delete": {
                    "summary": "Delete a registration",
                    "operationId": "deleteExpectation",
                    "security": [{"bearer": []}],
                    "parameters": [DRY_RUN, CONFIRM],
                    "responses": {
                        "200": _json(_ref("WriteResult"), "Deleted (or, dry run, what would happen)."),
                        "404": _error("Not registered."),
                        "409": _error("The experiment receives traffic: repeat with ?confirm=true."),
                        **WRITE_ERRORS,
                    },
                },
            },
            exp_path + "/history": {
                "parameters": [EXPERIMENT_PARAM],
                "get": {
                    "summary": "Change history (who, when, diff)",
                    "operationId": "expectationHistory",
                    "responses": {"200": _json(_ref("History"), "Oldest first."), "404": _error("Unknown.")},
                },
            },
            "/v1/experiments/{experiment}": {
                "parameters": [EXPERIMENT_PARAM],
                "get": {
                    "summary": "Declaration and observation side by side, with each rule's state",
                    "operationId": "getExperiment",
                    "responses": {"200": _json(_ref("ExperimentView"), "The experiment."),
                                  "404": _error("Neither registered nor observed.")},
                },
            },
            "/v1/experiments/{experiment}/blast-radius": {
                "parameters": [EXPERIMENT_PARAM],
                "get": {
                    "summary": "Out-of-target users of an experiment",
                    "operationId": "getBlastRadius",
                    "parameters": [{"name": "format", "in": "query", "required": False,
                                    "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"}}],
                    "responses": {
                        "200": {
                            "description": "The out-of-target users.",
                            "content": {"application/json": {"schema": _ref("BlastRadius")},
                                        "text/csv": {"schema": {"type": "string"}}},
                        },
                        "404": _error("Unknown experiment."),
                    },
                },
            },
            "/v1/incidents": {
                "get": {
                    "summary": "List incidents",
                    "operationId": "listIncidents",
                    "responses": {"200": _json({"type": "object", "properties": {
                        "incidents": {"type": "array", "items": _ref("Incident")}}}, "Incidents, newest first.")},
                }
            },
            "/v1/incidents/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "get": {
                    "summary": "One incident with its timestamped timeline",
                    "operationId": "getIncident",
                    "responses": {"200": _json(_ref("Incident"), "The incident."), "404": _error("Unknown incident.")},
                },
            },
            "/v1/incidents/{id}/ack": _incident_action("Acknowledge an incident (stops repeat pages)", "ackIncident"),
            "/v1/incidents/{id}/resolve": _incident_action("Resolve an incident by hand", "resolveIncident"),
            "/v1/incidents/{id}/blast-radius": {
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "get": {
                    "summary": "Out-of-target users of the incident's rule (JSON, or CSV with ?format=csv)",
                    "operationId": "incidentBlastRadius",
                    "responses": {"200": _json({"type": "object"}, "Users, paged."), "404": _error("Unknown incident.")},
                },
            },
            "/v1/experiments/{experiment}/dashboard.json": {
                "parameters": [{"name": "experiment", "in": "path", "required": True, "schema": {"type": "string"}}],
                "get": {
                    "summary": "A Grafana dashboard for the experiment",
                    "operationId": "experimentDashboard",
                    "responses": {"200": _json({"type": "object"}, "Grafana dashboard JSON.")},
                },
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: Kafka reachable and partitions assigned",
                    "operationId": "readyz",
                    "responses": {"200": _json({"type": "object"}, "Ready."), "503": _json({"type": "object"}, "Not ready.")},
                }
            },
        },
    }


def _incident_action(summary: str, operation_id: str) -> dict[str, Any]:
    return {
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "post": {
            "summary": summary,
            "operationId": operation_id,
            "security": [{"bearer": []}],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"who": {"type": "string"}}}}}},
            "responses": {
                "200": _json(_ref("Incident"), "The incident after the action."),
                "400": _error("Who is acting is missing."),
                "401": _error("Missing or invalid bearer token."),
                "404": _error("Unknown incident."),
                "409": _error("Not possible in the incident's state, or held by another worker."),
            },
        },
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy, safe to modify)."""
    return copy.deepcopy(_document())
