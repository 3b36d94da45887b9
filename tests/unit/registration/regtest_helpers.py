"""Shared constants and mini JSON Schema validator for the registration tests."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from detector.web.registrations_api import add_routes
from detector.web.middleware import secure_app

TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

VALID = {
    "experiment": "subs-mvp-crm-qa",
    "owner": "subscriptions",
    "description": "QA of the CRM email flow in production, test accounts only",
    "starts_at": "2021-02-09T18:00:00Z",
    "ends_at": "2099-02-12T00:00:00Z",
    "population": {
        "allowlist": ["qa-001", "qa-002", "qa-003"],
        "max_users": 3,
        "fraction": 0.01,
        "segments": {"country": ["US"]},
    },
    "variants": {"control": 0.5, "treatment": 0.5},
    "severity": "critical",
}


def make_app(service, token=TOKEN, anonymous_read="status") -> web.Application:
    # client_max_size: our handler must enforce 1 MiB itself
    app = secure_app(api_token=token or "", anonymous_read=anonymous_read, client_max_size=64 * 1024 * 1024)
    add_routes(app.router, service, clock=lambda: 1_700_000_000.0)
    return app


def reading(client, token=TOKEN):
    """`client` whose GETs carry the token unless a test passes its own headers (reads need `read`)."""
    get = client.get
    client.get = lambda path, **kw: get(path, **{"headers": {"Authorization": f"Bearer {token}"}, **kw})
    return client


TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def schema_errors(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """A small JSON Schema 2020-12 validator for the keywords our schema uses (jsonschema is not
    installed). Unknown keywords fail loudly so the schema cannot silently outgrow it."""
    known = {
        "$schema", "$id", "title", "description", "default", "examples", "format", "type", "properties",
        "additionalProperties", "required", "enum", "pattern", "minimum", "maximum", "exclusiveMinimum",
        "minLength", "maxLength", "minItems", "maxItems", "items", "minProperties", "maxProperties",
        "propertyNames", "anyOf",
    }
    unknown = set(schema) - known
    assert not unknown, f"mini validator does not know {unknown}"
    errs: list[str] = []
    t = schema.get("type")
    if t is not None:
        types = [t] if isinstance(t, str) else t
        if not any(TYPES[x](value) for x in types):
            return [f"{path}: not {t}"]
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{path}: not in enum")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errs.append(f"{path}: pattern")
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1 << 60):
            errs.append(f"{path}: length")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(f"{path}: minimum")
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(f"{path}: maximum")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errs.append(f"{path}: exclusiveMinimum")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 1 << 60):
            errs.append(f"{path}: items count")
        if "items" in schema:
            for i, item in enumerate(value):
                errs += schema_errors(schema["items"], item, f"{path}[{i}]")
    if isinstance(value, dict):
        if len(value) < schema.get("minProperties", 0) or len(value) > schema.get("maxProperties", 1 << 60):
            errs.append(f"{path}: property count")
        for req in schema.get("required", []):
            if req not in value:
                errs.append(f"{path}.{req}: required")
        props = schema.get("properties", {})
        for key, sub in value.items():
            if "propertyNames" in schema:
                errs += schema_errors(schema["propertyNames"], key, f"{path}.{key}(name)")
            if key in props:
                errs += schema_errors(props[key], sub, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errs.append(f"{path}.{key}: additional property")
            elif isinstance(schema.get("additionalProperties"), dict):
                errs += schema_errors(schema["additionalProperties"], sub, f"{path}.{key}")
    if "anyOf" in schema and not any(not schema_errors(s, value, path) for s in schema["anyOf"]):
        errs.append(f"{path}: anyOf")
    return errs


def _with(path: str, value: Any, *, drop: bool = False):
    """A copy of VALID with `path` (dotted) set to value, or removed."""
    import copy

    doc = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[p]
    if drop:
        node.pop(last, None)
    else:
        node[last] = value
    return doc


def _without_rules():
    doc = {"experiment": "no-rules", "owner": "x", "severity": "info"}
    return doc


# (id, document, field the error must name, JSON Schema can express it too)
BAD_CASES: list[tuple[str, Any, str, bool]] = [
    ("unknown-top-field", _with("colour", "blue"), "colour", True),
    ("flat-allowlist", _with("allowlist", ["a"]), "allowlist", True),
    ("unknown-population-field", _with("population.percent", 10), "population.percent", True),
    ("fraction-above-1", _with("population.fraction", 1.5), "population.fraction", True),
    ("fraction-negative", _with("population.fraction", -0.1), "population.fraction", True),
    ("fraction-percent", _with("population.fraction", 10), "population.fraction", True),
    ("fraction-string", _with("population.fraction", "0.1"), "population.fraction", True),
    ("fraction-bool", _with("population.fraction", True), "population.fraction", True),
    ("max-users-negative", _with("population.max_users", -1), "population.max_users", True),
    ("max-users-float", _with("population.max_users", 2.5), "population.max_users", True),
    ("max-users-integral-float", _with("population.max_users", 3.0), "population.max_users", False),
    ("max-users-bool", _with("population.max_users", True), "population.max_users", True),
    ("max-users-string", _with("population.max_users", "3"), "population.max_users", True),
    ("variants-sum", _with("variants", {"control": 0.5, "treatment": 0.4}), "variants", False),
    ("variants-negative", _with("variants", {"control": 1.5, "treatment": -0.5}), "variants.treatment", True),
    ("variants-empty", _with("variants", {}), "variants", True),
    ("variant-weight-string", _with("variants", {"control": "half", "treatment": 0.5}), "variants.control", True),
    ("allowlist-empty-entry", _with("population.allowlist", ["qa-001", ""]), "population.allowlist[1]", True),
    ("allowlist-space-entry", _with("population.allowlist", ["qa-001 "]), "population.allowlist[0]", True),
    ("allowlist-int-entry", _with("population.allowlist", ["qa-001", 7]), "population.allowlist[1]", True),
    ("allowlist-not-list", _with("population.allowlist", "qa-001"), "population.allowlist", True),
    ("allowlist-too-large", _with("population.allowlist", [f"u{i}" for i in range(100_001)]),
     "population.allowlist", True),
    ("experiment-invalid-key", _with("experiment", "bad key!"), "experiment", True),
    ("experiment-leading-dash", _with("experiment", "-x"), "experiment", True),
    ("experiment-too-long", _with("experiment", "a" * 129), "experiment", True),
    ("experiment-int", _with("experiment", 42), "experiment", True),
    ("experiment-missing", _with("experiment", None, drop=True), "experiment", True),
    ("ends-before-starts", _with("ends_at", "2021-02-01T00:00:00Z"), "ends_at", False),
    ("ends-equals-starts", _with("ends_at", "2021-02-09T18:00:00Z"), "ends_at", False),
    ("starts-not-rfc3339", _with("starts_at", "2021-02-09 18:00"), "starts_at", True),
    ("starts-no-timezone", _with("starts_at", "2021-02-09T18:00:00"), "starts_at", True),
    ("starts-invalid-date", _with("starts_at", "2021-02-30T18:00:00Z"), "starts_at", False),
    ("starts-epoch-int", _with("starts_at", 1612893600000), "starts_at", True),
    ("segments-string-value", _with("population.segments", {"country": "US"}), "population.segments.country", True),
    ("segments-empty-list", _with("population.segments", {"country": []}), "population.segments.country", True),
    ("segments-bool-value", _with("population.segments", {"country": [False]}), "population.segments.country[0]",
     True),
    ("segments-empty", _with("population.segments", {}), "population.segments", True),
    ("severity-unknown", _with("severity", "page-me"), "severity", True),
    ("tolerance-negative", _with("tolerance", -0.1), "tolerance", True),
    ("alpha-zero", _with("alpha", 0), "alpha", True),
    ("alpha-too-large", _with("alpha", 0.2), "alpha", True),
    ("kill-url-ftp", _with("mitigation", {"kill_url": "ftp://flags/x"}), "mitigation.kill_url", True),
    ("kill-url-no-host", _with("mitigation", {"kill_url": "https://"}), "mitigation.kill_url", True),
    ("kill-url-credentials", _with("mitigation", {"kill_url": "https://u:p@flags/x"}), "mitigation.kill_url", True),
    ("mitigation-unknown", _with("mitigation", {"url": "https://flags/x"}), "mitigation.url", True),
    ("labels-non-string", _with("labels", {"team": 3}), "labels.team", True),
    ("labels-bad-name", _with("labels", {"team-name": "x"}), "labels.team-name", True),
    ("schema-version-2", _with("schema_version", 2), "schema_version", True),
    ("schema-version-bool", _with("schema_version", True), "schema_version", True),
    ("population-list", _with("population", ["a"]), "population", True),
    ("owner-int", _with("owner", 5), "owner", True),
    ("no-rule-at-all", _without_rules(), "population", True),
]
