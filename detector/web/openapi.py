"""OpenAPI 3.1 document of the worker's HTTP API (served at `GET /v1/openapi.json`).

Covers every route of the HTTP contract in DESIGN.md, including the ones other modules serve
(health, metrics, blast radius, incidents). Every schema in it is generated from a typed model:
the registration from `detector.registration.model.Registration` (the same schema
`config/expectation.schema.json` holds; OpenAPI 3.1 schemas are JSON Schema 2020-12), the other
bodies from the pydantic models below. The paths list the operations and point at them.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from detector.engine.rules import RULE_NAMES
from detector.flags.rule import RULE as FLAG_RULE
from detector.registration.model import Registration
from detector.registration.schema import registration_json_schema, model_schema

API_VERSION = "1.0.0"
COMPONENTS = "#/components/schemas/"
Rule = Literal[RULE_NAMES]  # type: ignore[valid-type]
IncidentRule = Literal[(*RULE_NAMES, FLAG_RULE)]  # type: ignore[valid-type]  # + the flag configuration rule
Severity = Literal["critical", "error", "warning", "info"]


# ------------------------------------------------------------------------- body models
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class FieldError(BaseModel):
    """One problem with a request."""

    field: str = Field(description="Dotted path of the offending field, e.g. population.fraction")
    message: str
    code: str | None = Field(None, description="Risk code, on 409 responses")
    source: str | None = Field(None, description="File the problem came from (CLI / GitOps)")


class Error(_Open):
    """Every error answer: a summary and each problem with its field."""

    error: str
    errors: list[FieldError]


class DiffEntry(BaseModel):
    """One changed field of a registration."""

    field: str
    old: Any
    new: Any
    added: list[str] | None = None
    removed: list[str] | None = None
    added_count: int | None = None
    removed_count: int | None = None


class Risk(BaseModel):
    """Why a change needs `?confirm=true` (codes in `detector.registration.risk`)."""

    code: str = Field(examples=[
        "allowlist_with_large_fraction", "large_max_users_with_allowlist", "max_users_below_observed",
        "fraction_below_observed", "widened_max_users", "widened_fraction", "window_already_ended",
        "delete_with_traffic",
    ])
    field: str
    message: str


class WriteResult(BaseModel):
    """What a PUT or DELETE did (or, dry run, would do)."""

    experiment: str
    action: Literal["create", "update", "unchanged", "delete"]
    dry_run: bool
    diff: list[DiffEntry]
    active_rules: list[Rule] | None = None
    risks: list[Risk]
    requires_confirmation: bool
    expectation: Registration | None = Field(None, description="The registration as stored (canonical form).")


class RegistrationList(BaseModel):
    """One page of registrations, sorted by experiment (follow `next`)."""

    count: int
    total: int | None = None
    expectations: list[dict[str, Any]] = Field(description="Registrations (without `population.allowlist` "
                                                           "unless the caller has read:users).")
    next_cursor: str | None = None
    next: str | None = Field(None, description="URL of the next page; null on the last.")
    redacted: list[str] | None = Field(None, description="Fields left out: the caller lacks the read:users scope.")


class HistoryEntry(BaseModel):
    at: str = Field(json_schema_extra={"format": "date-time"})
    who: str
    source: str | None = None
    action: Literal["create", "update", "delete"]
    diff: list[DiffEntry]


class History(BaseModel):
    """Changes to a registration, oldest first."""

    experiment: str
    history: list[HistoryEntry]


class RuleView(BaseModel):
    rule: Rule
    active: bool
    expected: Any = None
    state: str
    statistic: Any = None


class Comparison(BaseModel):
    enrolled_users: dict[str, Any] | None = None
    eligible_users: dict[str, Any] | None = None
    fraction: dict[str, Any] | None = None
    variants: dict[str, Any] | None = None


class ExperimentView(BaseModel):
    """The declaration and the observation side by side."""

    experiment: str
    registered: bool
    declaration: Registration | None
    active_rules: list[Rule] | None = None
    observed: bool | None = None
    comparison: Comparison
    rules: list[RuleView]
    observation: dict[str, Any] | None = None


class TimelineEntry(_Open):
    at: str


class Incident(_Open):
    """An incident (alert lifecycle): the alert fields and a timestamped timeline."""

    id: str
    status: Literal["firing", "resolved"]
    experiment: str
    rule: IncidentRule
    severity: Severity
    summary: str
    started_at: str = Field(json_schema_extra={"format": "date-time"})
    ended_at: str | None = Field(None, json_schema_extra={"format": "date-time"})
    first_offending_event_at: str | None = Field(None, json_schema_extra={"format": "date-time"})
    detected_at: str = Field(json_schema_extra={"format": "date-time"})
    observed: Any = None
    expected: Any = None
    blast_radius: dict[str, Any]
    timeline: list[TimelineEntry]


class IncidentList(BaseModel):
    """One page of incidents, newest first (follow `next`)."""

    count: int | None = None
    total: int | None = None
    incidents: list[Incident]
    next_cursor: str | None = None
    next: str | None = None


class BlastRadius(_Open):
    """Out-of-target users of an experiment."""

    experiment: str
    count: int = Field(description="Out-of-target users")
    users: list[dict[str, Any]]
    truncated: bool | None = None


class IncidentAction(BaseModel):
    """Who acknowledges or resolves."""

    who: str | None = None


BODY_MODELS: tuple[type[BaseModel], ...] = (
    Error, WriteResult, RegistrationList, History, ExperimentView, Incident, IncidentList, BlastRadius,
    IncidentAction,
)


def _schemas() -> dict[str, Any]:
    """components/schemas, generated from the models; `Registration` is the registration's JSON
    Schema itself (`RegistrationBody`: the same without the required `experiment`)."""
    _, top = models_json_schema([(m, "validation") for m in BODY_MODELS], ref_template=COMPONENTS + "{model}")
    schemas = {name: _strip_titles(body) for name, body in top["$defs"].items()}
    for name in ("Registration", "RegistrationBody"):
        full = registration_json_schema(require_experiment=(name == "Registration"))
        for key in ("$schema", "$id"):
            full.pop(key, None)
        schemas[name] = full
    schemas["RegistrationBody"]["description"] = (
        "A registration; `experiment` may be omitted (the path's is used) and must match it."
    )
    # Population, Mitigation, FlagRef live inside Registration's own (self-contained) schema.
    for inner in set(schemas) - {m.__name__ for m in BODY_MODELS} - {"Registration", "RegistrationBody"}:
        if f'"{COMPONENTS}{inner}"' not in repr(schemas).replace("'", '"'):
            schemas.pop(inner)
    return schemas


def _strip_titles(node: Any) -> Any:
    if isinstance(node, list):
        return [_strip_titles(n) for n in node]
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if k != "title" or not isinstance(v, str)}
    return node


def _ref(name: str) -> dict[str, str]:
    return {"$ref": COMPONENTS + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


EXPERIMENT_PARAM = {
    "name": "experiment",
    "in": "path",
    "required": True,
    "schema": model_schema(Registration)["properties"]["experiment"],
}


def _flag(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
            "description": description}


PAGING = [
    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
     "description": "Page size (registrations: default 100; incidents: default 1000)."},
    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 1024},
     "description": "`next_cursor` of the previous page, unchanged."},
]
DRY_RUN = _flag("dry_run", "Validate and return the diff, active rules and risks without writing.")
CONFIRM = _flag("confirm", "Apply a change that carries risks (otherwise 409).")
WRITE_ERRORS = {
    "401": _error("Missing or invalid bearer token."),
    "503": _error("Writes are disabled: DETECTOR_API_TOKEN is not set on the worker."),
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
                    "parameters": PAGING,
                    "responses": {"200": _json(_ref("RegistrationList"), "One page of registrations, sorted by experiment."),
                                  "400": _error("Invalid limit or cursor.")},
                }
            },
            exp_path: {
                "parameters": [EXPERIMENT_PARAM],
                "get": {
                    "summary": "One registration (canonical form)",
                    "operationId": "getExpectation",
                    "responses": {"200": _json(_ref("Registration"), "The registration."),
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
                            "application/json": {"schema": _ref("RegistrationBody")},
                            "application/yaml": {"schema": _ref("RegistrationBody")},
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
                    "parameters": PAGING,
                    "responses": {"200": _json(_ref("IncidentList"), "One page of incidents, newest first."),
                                  "400": _error("Invalid limit or cursor.")},
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
            "/v1/flags": {
                "get": {
                    "summary": "Flag sources and each registration's flag configuration judgement",
                    "operationId": "getFlags",
                    "responses": {"200": _json({"type": "object", "properties": {
                        "sources": {"type": "object", "additionalProperties": {"type": "object"}},
                        "experiments": {"type": "object", "additionalProperties": {"type": "object"}}}},
                        "Per source: status, error, last success; per registration: source, key, state "
                        "(within, exceeds, cannot_tell, unknown, unknown_source), configuration, reasons.")},
                }
            },
            "/v1/flag-sources/{source}/webhook": {
                "parameters": [{"name": "source", "in": "path", "required": True, "schema": {"type": "string"}}],
                "post": {
                    "summary": "Push a flag configuration (GrowthBook SDK webhook, flagd document, Unleash client "
                               "features) or signal a change (Unleash webhook addon): the source is re-read",
                    "operationId": "pushFlagConfiguration",
                    "requestBody": {"required": False, "content": {"application/json": {"schema": {}}}},
                    "responses": {"202": _json({"type": "object"}, "Applied, or a poll of the source scheduled."),
                                  "404": _json({"type": "object"}, "No such flag source."),
                                  "422": _json({"type": "object"}, "A push-only source got no configuration.")},
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
            "/v1/discovery": {
                "get": {
                    "summary": "What was observed of each unregistered experiment (?all=true: every one), for drafting "
                               "registrations (JSON, or CSV with ?format=csv); scope `read`",
                    "operationId": "discovery",
                    "parameters": [_flag("all", "include registered experiments"),
                                   {"name": "format", "in": "query", "required": False,
                                    "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"}}],
                    "responses": {"200": _json({"type": "object", "properties": {
                        "count": {"type": "integer"}, "unregistered_only": {"type": "boolean"},
                        "experiments": {"type": "array", "items": {"type": "object"}}}},
                        "Experiments with eligible/enrolled users, fraction and its 95% interval, variants, "
                        "segments seen, first and last seen."),
                        "400": _json({"type": "object"}, "Unknown format.")},
                }
            },
            "/v1/experiments/{experiment}/dashboard.json": {
                "parameters": [{"name": "experiment", "in": "path", "required": True, "schema": {"type": "string"}}],
                "get": {
                    "summary": "A Grafana dashboard for the experiment",
                    "operationId": "experimentDashboard",
                    "responses": {"200": _json({"type": "object"}, "Grafana dashboard JSON.")},
                },
            },
            # --- sources: the HTTP collector (detector/web/collector.py) ---
            "/v1/assignments": _collect("Write native assignment events (JSON array, NDJSON or one object)",
                                        "postAssignments"),
            "/v1/sources/{format}": {
                "parameters": [{"name": "format", "in": "path", "required": True, "schema": {"type": "string"},
                                "description": "segment, posthog, launchdarkly, statsig, unleash, amplitude, "
                                               "optimizely, openfeature (otel), native"}],
                **_collect("Write a platform's exposure events (a Segment webhook body too)", "postSourceEvents"),
            },
            # --- end sources ---
            "/readyz": {
                "get": {
                    "summary": "Readiness: Kafka reachable and partitions assigned",
                    "operationId": "readyz",
                    "responses": {"200": _json({"type": "object"}, "Ready."), "503": _json({"type": "object"}, "Not ready.")},
                }
            },
        },
    }


def _collect(summary: str, operation_id: str) -> dict[str, Any]:
    """A collector route: needs a token with the `ingest` scope; 202 once Kafka acknowledged."""
    result = {"type": "object", "properties": {
        "accepted": {"type": "integer"},
        "rejected": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"}, "kind": {"type": "string"}, "reason": {"type": "string"}}}},
        "not_exposure": {"type": "array", "items": {"type": "integer"}},
        "no_identity": {"type": "array", "items": {"type": "integer"}}}}
    return {
        "post": {
            "summary": summary,
            "operationId": operation_id,
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"type": ["array", "object"]}},
                "application/x-ndjson": {"schema": {"type": "string"}}}},
            "responses": {
                "202": _json(result, "Written to exposure.assignments (acks=all); rejects listed by index."),
                "401": _error("Missing or invalid token."),
                "413": _error("Body over 1 MiB, or too many records."),
                "422": _json(result, "No record was valid."),
                "429": _error("Rate limit of this token (Retry-After)."),
                "503": _error("Kafka did not acknowledge: send again."),
            },
        }
    }


def _incident_action(summary: str, operation_id: str) -> dict[str, Any]:
    return {
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "post": {
            "summary": summary,
            "operationId": operation_id,
            "security": [{"bearer": []}],
            "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("IncidentAction")}}},
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


def with_access(doc: dict[str, Any], table: list[tuple[str, str, str | None]]) -> dict[str, Any]:
    """`doc` with each operation's access rule from the app's route table (`detector.web.auth.route_table`):
    `x-access` (public, status or a scope) and `security` (the bearer scheme with that scope as its role)."""
    for method, path, rule in table:
        op = doc.get("paths", {}).get(path, {}).get(method.lower())
        if op is None or rule is None:
            continue
        op["x-access"] = rule
        if rule == "public":
            op["security"] = []
        else:
            op["security"] = [{"bearer": [rule]}]
            op.setdefault("responses", {}).setdefault("401", _error("Missing or invalid bearer token."))
            op["responses"].setdefault("403", _error(f"The token lacks the `{rule}` scope."))
    return doc
