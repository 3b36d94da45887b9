"""HTTP API for registrations: `/v1/expectations`, `/v1/experiments/{experiment}`, `/v1/openapi.json`.

    add_routes(app.router, service)      # service: detector.registration.service.RegistrationService

Access (declared with each route, enforced by `detector.web.middleware`): reads need `read`
(allowlists and their diffs only with `read:users`, audited), writes (PUT, DELETE) need `write`.
A worker with no token configured refuses them with 503 and says why (nobody can authenticate,
and it is the operator's configuration, not the caller, that is wrong); a missing or wrong token
gets 401, a token without the scope 403.

Write flow: auth -> body size (<= 1 MiB, else 413) -> decode (JSON or YAML by Content-Type, 415
for anything else) -> `parse_registration` (422 naming each field) -> diff and `risk.assess` ->
`?dry_run=true` answers here, without writing -> risky without `?confirm=true`: 409 with the
risks -> write. A write that changes nothing is not written again (`"action": "unchanged"`).

Every error is JSON: `{"error": summary, "errors": [{"field", "message"}, ...]}`.
"""

from __future__ import annotations

import json
import numbers
import time
from typing import Any, Callable

import yaml
from aiohttp import web

from detector.engine.rules import BY_NAME
from detector.registration.compiled import CompiledRegistration
from detector.registration.errors import RegistrationError
from detector.registration.files import yaml_load
from detector.registration.model import parse_registration, registration_to_dict, valid_experiment_key
from detector.registration.risk import Risk, assess, diff
from detector.registration.service import RegistrationService
from detector.web.auth import PUBLIC, READ, WRITE, add_route
from detector.web.problems import (
    MAX_BODY_BYTES,
    HTTPProblem,
    field_problem,
    first_lone_surrogate,
    json_response,
    next_link,
    paged,
    read_body,
)
from detector.web.redact import user_data

USER_HEADER = "X-Detector-User"
JSON_TYPES = ("application/json",)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
# Parsed as YAML, which accepts JSON too. Form-encoded is here because `curl --data-binary @file`
# sends that content type by default.
SNIFF_TYPES = ("application/octet-stream", "text/plain", "application/x-www-form-urlencoded", "")

_SERVICE_KEY = "detector.registration.service"


_field_problem = field_problem


# ----------------------------------------------------------------------------------- request bits
def _flag(request: web.Request, name: str) -> bool:
    if name not in request.query:
        return False
    value = request.query[name].strip().lower()
    if value in ("", "1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise _field_problem(400, f"invalid query parameter {name}", name, f"must be true or false, got {value!r}")


def _who(request: web.Request) -> str:
    who = request.headers.get(USER_HEADER, "").strip()
    if not who or len(who) > 128 or not who.isprintable():
        return "api"
    return who


def _experiment(request: web.Request) -> str:
    key = request.match_info["experiment"]
    if not valid_experiment_key(key):
        raise _field_problem(
            400,
            "invalid experiment key in the path",
            "experiment",
            f"{key[:60]!r} is not a valid experiment key: 1-128 characters, letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return key


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_body(body: bytes, content_type: str) -> Any:
    """JSON or YAML by content type; 400 for a syntax error, 415 for other content types."""
    ctype = (content_type or "").lower()
    is_json = ctype in JSON_TYPES or ctype.endswith("+json")
    if not (is_json or ctype in YAML_TYPES or ctype in SNIFF_TYPES):
        raise _field_problem(
            415, "unsupported content type", "Content-Type", f"use application/json or application/yaml, got {ctype!r}"
        )
    if not body.strip():
        raise _field_problem(400, "empty body", "(body)", "send a registration as JSON or YAML")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _field_problem(400, "body is not UTF-8", "(body)", str(exc)) from None
    try:
        value = (json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
                 if is_json else yaml_load(text))
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        kind = "JSON" if is_json else "YAML"
        raise _field_problem(400, f"body is not valid {kind}", "(body)", str(exc)[:500]) from None
    where = first_lone_surrogate(value)
    if where is not None:
        raise _field_problem(400, "body holds a lone UTF-16 surrogate", where,
                             "text must be valid Unicode (a \\ud800-\\udfff escape must be part of a pair)")
    return value


def _registration_problem(exc: RegistrationError) -> HTTPProblem:
    fields = ", ".join(dict.fromkeys(e.field for e in exc.errors))
    return HTTPProblem(422, f"invalid registration: {fields}", exc.to_dicts())


def _risk_problem(risks: list[Risk], action: str, **extra: Any) -> HTTPProblem:
    return HTTPProblem(
        409,
        f"this {action} needs confirmation ({', '.join(r.code for r in risks)}): review the risks and "
        "repeat with ?confirm=true",
        [{"field": r.field, "message": r.message, "code": r.code} for r in risks],
        risks=[r.to_dict() for r in risks],
        **extra,
    )


# ---------------------------------------------------------------------------------- side by side
def _expected_for(rule: str, e: CompiledRegistration | None) -> Any:
    """The rule's own view of the declaration (the `expected` of its findings)."""
    r = BY_NAME.get(rule)
    return r.expected(e) if e is not None and r is not None and r.active(e) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else None


def side_by_side(experiment: str, e: CompiledRegistration | None, obs: dict[str, Any] | None) -> dict[str, Any]:
    """The declaration and the observation of one experiment, rule by rule."""
    o = obs or {}
    enrolled = _int(o.get("enrolled_users", o.get("distinct_users")))
    eligible = _int(o.get("eligible_users"))
    fraction = o.get("observed_fraction")
    fraction = float(fraction) if isinstance(fraction, numbers.Real) and not isinstance(fraction, bool) else None
    if fraction is None and enrolled is not None and eligible:
        fraction = enrolled / eligible
    observed_variants = {k: v for k, v in (o.get("variants") or {}).items() if _int(v) is not None}
    total = sum(observed_variants.values())
    declared_variants = (e.variants if e else None) or {}
    variants = {
        name: {
            "declared_weight": declared_variants.get(name),
            "observed_users": observed_variants.get(name, 0) if obs is not None else None,
            "observed_share": (observed_variants.get(name, 0) / total) if total else None,
        }
        for name in sorted(set(declared_variants) | set(observed_variants))
    }
    states = o.get("rules") or {}
    active = e.active_rules() if e else ["unregistered"]
    rules = []
    for rule in active + sorted(r for r in states if r not in active):
        state = states.get(rule)
        state = state if isinstance(state, dict) else {}
        entry = {
            "rule": rule,
            "active": rule in active,
            "expected": _expected_for(rule, e),
            "state": state.get("state") or ("no_data" if obs is None else "ok"),
            "statistic": state.get("statistic"),
        }
        entry.update({k: v for k, v in state.items() if k not in entry})
        rules.append(entry)
    return {
        "experiment": experiment,
        "registered": e is not None,
        "declaration": registration_to_dict(e) if e else None,
        "active_rules": active if e else [],
        "observed": obs is not None,
        "comparison": {
            "enrolled_users": {
                "observed": enrolled,
                "declared_max": e.max_users if e else None,
                "allowlist_size": len(e.allowlist) if e and e.allowlist is not None else None,
            },
            "eligible_users": {"observed": eligible},
            "fraction": {
                "observed": fraction,
                "declared": e.fraction if e else None,
                "alert_above": e.fraction * (1 + e.tolerance) if e and e.fraction is not None else None,
            },
            "variants": variants,
        },
        "rules": rules,
        "observation": obs,
    }


# --------------------------------------------------------------------------------------- handlers
class RegistrationsAPI:
    def __init__(self, service: RegistrationService, clock: Callable[[], float],
                 kill_url_problem: Callable[[str], str | None] | None = None,
                 extra_risks: Callable[[Any], list] | None = None):
        self.service, self.clock, self.kill_url_problem = service, clock, kill_url_problem
        self.extra_risks = extra_risks  # risks other areas add (e.g. detector.flags: an unknown flag source)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def put(self, request: web.Request) -> web.Response:
        experiment = _experiment(request)
        dry_run, confirm = _flag(request, "dry_run"), _flag(request, "confirm")
        raw = decode_body(await read_body(request), request.content_type)
        try:
            new = parse_registration(raw, path_experiment=experiment)
        except RegistrationError as exc:
            raise _registration_problem(exc) from None
        if new.kill_url is not None and self.kill_url_problem is not None:
            problem = self.kill_url_problem(new.kill_url)
            if problem:
                raise HTTPProblem(422, "invalid registration: mitigation.kill_url",
                                  [{"field": "mitigation.kill_url", "message": problem}])
        old = self.service.get(experiment)
        changes = diff(old, new)
        risks = assess(old, new, self.service.observation(experiment), now_ms=self._now_ms())
        if self.extra_risks is not None:
            risks += self.extra_risks(new)
        action = "create" if old is None else ("update" if changes else "unchanged")
        result = {
            "experiment": experiment,
            "action": action,
            "dry_run": dry_run,
            "diff": changes,
            "active_rules": new.active_rules(),
            "risks": [r.to_dict() for r in risks],
            "requires_confirmation": bool(risks) and not confirm,
            "expectation": registration_to_dict(new),
        }
        if dry_run:
            return json_response(user_data(request, result, what="registration", experiment=experiment))
        if action == "unchanged":
            result["risks"], result["requires_confirmation"] = [], False
            return json_response(user_data(request, result, what="registration", experiment=experiment))
        if risks and not confirm:
            raise _risk_problem(risks, action, experiment=experiment, active_rules=new.active_rules(),
                                diff=user_data(request, changes, what="registration diff", experiment=experiment))
        await self.service.put(new, _who(request))
        body = user_data(request, result, what="registration", experiment=experiment)
        if action == "create":
            return json_response(body, status=201, headers={"Location": f"/v1/expectations/{experiment}"})
        return json_response(body)

    async def delete(self, request: web.Request) -> web.Response:
        experiment = _experiment(request)
        dry_run, confirm = _flag(request, "dry_run"), _flag(request, "confirm")
        old = self.service.get(experiment)
        if old is None:
            raise _not_registered(experiment)
        risks = assess(old, None, self.service.observation(experiment), now_ms=self._now_ms())
        result = {
            "experiment": experiment,
            "action": "delete",
            "dry_run": dry_run,
            "diff": diff(old, None),
            "risks": [r.to_dict() for r in risks],
            "requires_confirmation": bool(risks) and not confirm,
        }
        if dry_run:
            return json_response(user_data(request, result, what="registration diff", experiment=experiment))
        if risks and not confirm:
            raise _risk_problem(risks, "delete", experiment=experiment)
        await self.service.delete(experiment, _who(request))
        return json_response(user_data(request, result, what="registration diff", experiment=experiment))

    async def get(self, request: web.Request) -> web.Response:
        experiment = _experiment(request)
        e = self.service.get(experiment)
        if e is None:
            raise _not_registered(experiment)
        return json_response(user_data(request, registration_to_dict(e), what="registration", experiment=experiment))

    async def list(self, request: web.Request) -> web.Response:
        """Paged by experiment key (`?limit=`, default 100, at most 1000; `?cursor=`)."""
        items = self.service.all()
        keys, next_cursor = paged(request, sorted(items), lambda k: [k], shape=(str,))
        body = user_data(request, {"expectations": [registration_to_dict(items[k]) for k in keys]},
                         what="registration list")
        return json_response({"count": len(keys), "total": len(items), **body, "next_cursor": next_cursor,
                              "next": next_link(request, next_cursor)})

    async def history(self, request: web.Request) -> web.Response:
        """Oldest first, paged by position (`?limit=`, `?cursor=`); at most the last 100 changes are kept."""
        experiment = _experiment(request)
        entries = list(self.service.history(experiment))
        if not entries and self.service.get(experiment) is None:
            raise _not_registered(experiment)
        numbered = list(enumerate(entries))
        page, next_cursor = paged(request, numbered, lambda p: [p[0]], shape=(int,))
        body = {"experiment": experiment, "history": [entry for _, entry in page], "next_cursor": next_cursor,
                "next": next_link(request, next_cursor)}
        return json_response(user_data(request, body, what="registration history", experiment=experiment))

    async def experiment(self, request: web.Request) -> web.Response:
        experiment = _experiment(request)
        e = self.service.get(experiment)
        obs = self.service.observation(experiment)
        if e is None and obs is None:
            raise _field_problem(
                404, f"unknown experiment {experiment!r}", "experiment", "neither registered nor observed"
            )
        return json_response(user_data(request, side_by_side(experiment, e, obs), what="experiment",
                                       experiment=experiment))

    async def openapi(self, request: web.Request) -> web.Response:
        from detector.web.auth import route_table
        from detector.web.openapi import openapi_document, with_access

        return json_response(with_access(openapi_document(), route_table(request.app)))


def _not_registered(experiment: str) -> HTTPProblem:
    return _field_problem(404, f"no registration for experiment {experiment!r}", "experiment", "is not registered")


def add_routes(
    router: web.UrlDispatcher,
    services: Any,
    *,
    clock: Callable[[], float] = time.time,
    kill_url_problem: Callable[[str], str | None] | None = None,
    extra_risks: Callable[[Any], list] | None = None,
) -> RegistrationsAPI:
    """Register the registration routes on `router`, each with its access rule.

    `services` is a `RegistrationService`, or an object with a `registrations` attribute holding one.
    The app must carry the middleware stack (`detector.web.middleware.install`): it authenticates.
    `kill_url_problem(url)` says why a registration's kill URL is refused (None: allowed).
    """
    service = getattr(services, "registrations", services)
    api = RegistrationsAPI(service, clock, kill_url_problem, extra_risks)
    add_route(router, "GET", "/v1/expectations", api.list, access=READ)
    add_route(router, "PUT", "/v1/expectations/{experiment}", api.put, access=WRITE, max_body=MAX_BODY_BYTES)
    add_route(router, "GET", "/v1/expectations/{experiment}", api.get, access=READ)
    add_route(router, "DELETE", "/v1/expectations/{experiment}", api.delete, access=WRITE)
    add_route(router, "GET", "/v1/expectations/{experiment}/history", api.history, access=READ)
    add_route(router, "GET", "/v1/experiments/{experiment}", api.experiment, access=READ)
    add_route(router, "GET", "/v1/openapi.json", api.openapi, access=PUBLIC)
    return api
