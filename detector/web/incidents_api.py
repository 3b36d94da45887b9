"""HTTP API for incident response: incidents, their timeline, acknowledgement, blast radius.

    add_routes(router, publisher=..., incidents=..., ingest=..., registrations=...)

    GET  /v1/incidents                         list (filters: experiment, rule, status, severity,
                                               owner, since, until; limit), newest first
    GET  /v1/incidents/{id}                    one incident with its merged timeline (JSON);
                                               ?format=md: Markdown for a post-mortem
    POST /v1/incidents/{id}/ack                acknowledge (stops repeat pages); who: JSON body
                                               {"who": ...} or the X-Detector-User header
    POST /v1/incidents/{id}/resolve            resolve now (a `resolved` notification goes out)
    GET  /v1/incidents/{id}/blast-radius       the blast radius of the incident's rule
    GET  /v1/experiments/{experiment}/blast-radius
                                               out-of-target users: paged JSON (?limit=&cursor=
                                               &rule=&as_recorded=) or ?format=csv (streamed, a
                                               header row, first column user_id)

Access (declared with each route, enforced by `detector.web.middleware`): the incident routes
need `read` (sample ids and allowlist diffs only with `read:users`, audited; a kill switch's error
text only for a caller with a token), ack and resolve need `respond`, the blast-radius routes
return user ids and need `read:users` (every call audited). Lists are paged (`?limit=&cursor=`).
Links in the Markdown view are built from `DETECTOR_EXTERNAL_URL` only (without it they are
relative), never from the request's Host header.

Where an incident lives: its lifecycle is held by the worker that owns the experiment's
input partition (freshest, and the only one that can acknowledge or resolve it); every
worker also folds `exposure.timeline` into the `incidents` table, so any worker can show
any incident. Blast radius is read from the engine state, which only the owning worker has.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from detector.alerts.timeline import timeline_dict
from detector.incidents import blast_radius as br
from detector.incidents.views import incident_markdown, incident_summary, incident_view, matches
from detector.registration.model import valid_experiment_key
from detector.web.auth import READ, READ_USERS, RESPOND, audit_user_read, add_route, principal
from detector.web.registrations_api import USER_HEADER
from detector.web.problems import (
    MAX_PAGE,
    HTTPProblem,
    field_problem,
    int_param,
    json_response,
    next_link,
    paged,
    read_body,
)
from detector.web.redact import user_data

_field_problem = field_problem
MAX_ACK_BODY = 16 * 1024
MAX_LIST = MAX_PAGE
HIDDEN = "(hidden: shown to callers with a token)"


class IncidentsAPI:
    def __init__(self, *, publisher, incidents, ingest, registrations,
                 clock: Callable[[], float], base_url: str | None) -> None:
        self.publisher = publisher
        self.table = incidents
        self.ingest = ingest
        self.registrations = registrations
        self.clock = clock
        self.base_url = base_url

    # ---- lookups ---------------------------------------------------------------------------
    def _history(self, experiment: str) -> list[dict]:
        history = getattr(self.registrations, "history", None)
        try:
            return list(history(experiment)) if history else []
        except Exception:
            return []

    def _registration(self, experiment: str):
        return self.registrations.get(experiment) if self.registrations is not None else None

    def _raw(self, iid: str) -> tuple[dict | None, dict]:
        """(incident dict, table row): the local lifecycle first, else the table."""
        row = (self.table.get(iid) if self.table is not None else None) or {}
        hit = self.publisher.find(iid) if self.publisher is not None else None
        if hit is not None:
            return timeline_dict(hit[1]), row
        return (dict(row["incident"]) if row.get("incident") else None), row

    def view(self, iid: str) -> dict[str, Any] | None:
        inc, row = self._raw(iid)
        if inc is None:
            return None
        return incident_view(inc, row, self._history(inc["experiment"]))

    def _view_or_404(self, iid: str) -> dict[str, Any]:
        v = self.view(iid)
        if v is None:
            raise _field_problem(404, f"no incident {iid!r}", "id", "unknown on this worker (or past retention)")
        return v

    # ---- incidents -------------------------------------------------------------------------
    def all_views(self) -> list[dict[str, Any]]:
        """Every incident this worker knows (local lifecycles first, then the table), newest first."""
        seen: dict[str, dict] = {}
        if self.publisher is not None:
            for inc in self.publisher.incidents():
                seen[inc.id] = timeline_dict(inc)
        if self.table is not None:
            for iid, row in list(self.table.items()):
                if iid not in seen and row and row.get("incident"):
                    seen[iid] = dict(row["incident"])
        views = list(seen.values())
        views.sort(key=_list_key, reverse=True)
        return views

    async def list(self, request: web.Request) -> web.Response:
        """Newest first, paged (`?limit=`, default and maximum 1000; `?cursor=`)."""
        q = request.query
        views = [v for v in self.all_views() if matches(v, q)]
        page, next_cursor = paged(request, views, _list_key, shape=(str, str), reverse=True, default_limit=MAX_LIST)
        items = [incident_summary(v) for v in page]
        return json_response(user_data(request, {
            "count": len(items), "total": len(views), "incidents": items,
            "next_cursor": next_cursor, "next": next_link(request, next_cursor)}, what="incident list"))

    async def get(self, request: web.Request) -> web.StreamResponse:
        v = self._view_or_404(request.match_info["id"])
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "md", "markdown"):
            raise _field_problem(400, "invalid format", "format", "use json or md")
        v = user_data(request, _hide_errors(request, v), what="incident", experiment=v.get("experiment"))
        if fmt in ("md", "markdown"):
            return web.Response(text=incident_markdown(v, self.base_url), content_type="text/markdown",
                                charset="utf-8")
        return json_response(v)

    async def _who(self, request: web.Request) -> tuple[str, str | None]:
        raw = await read_body(request, MAX_ACK_BODY)
        body: dict[str, Any] = {}
        if raw.strip():
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise _field_problem(400, "body is not valid JSON", "(body)", str(exc)[:200]) from None
            if not isinstance(body, dict):
                raise _field_problem(400, "body must be a JSON object", "(body)", 'e.g. {"who": "alice"}')
        who = body.get("who") if body.get("who") is not None else request.headers.get(USER_HEADER)
        if not isinstance(who, str) or not who.strip() or len(who) > 128 or not who.isprintable():
            raise _field_problem(400, "who is acting is required", "who",
                                 f'send {{"who": "<name>"}} or the {USER_HEADER} header (1-128 printable characters)')
        note = body.get("note")
        return who.strip(), (str(note)[:500] if note is not None else None)

    def _local_or_problem(self, iid: str) -> None:
        if self.publisher is not None and self.publisher.find(iid) is not None:
            return
        inc, _ = self._raw(iid)
        if inc is None:
            raise _field_problem(404, f"no incident {iid!r}", "id", "unknown on this worker (or past retention)")
        raise _field_problem(409, f"incident {iid!r} is held by another worker", "id",
                             "send this request to the worker that owns the experiment's partition")

    async def acknowledge(self, iid: str, who: str, token: str | None = None) -> str:
        """Acknowledge a firing incident held here: "acknowledged" or "unchanged" (HTTPProblem otherwise)."""
        self._local_or_problem(iid)
        _, inc = self.publisher.find(iid)
        if inc.status != "firing":
            raise _field_problem(409, f"incident {iid!r} is {inc.status}", "status", "only a firing incident can be acknowledged")
        action = "unchanged" if inc.acknowledged_by is not None else "acknowledged"
        await self.publisher.acknowledge(iid, who, self.clock(), token)
        return action

    async def resolve_now(self, iid: str, who: str, token: str | None = None) -> str:
        """Resolve an incident held here now: "resolved" or "unchanged"."""
        self._local_or_problem(iid)
        _, inc = self.publisher.find(iid)
        action = "unchanged" if inc.status != "firing" else "resolved"
        if action == "resolved":
            await self.publisher.resolve(iid, who, self.clock(), token)
        return action

    def _action_result(self, request: web.Request, action: str, iid: str) -> web.Response:
        view = self._view_or_404(iid)
        return json_response({"action": action, "incident": user_data(
            request, _hide_errors(request, view), what="incident", experiment=view.get("experiment"))})

    async def ack(self, request: web.Request) -> web.Response:
        iid = request.match_info["id"]
        who, _note = await self._who(request)
        return self._action_result(request, await self.acknowledge(iid, who, principal(request).name), iid)

    async def resolve(self, request: web.Request) -> web.Response:
        iid = request.match_info["id"]
        who, _note = await self._who(request)
        return self._action_result(request, await self.resolve_now(iid, who, principal(request).name), iid)

    # ---- blast radius ------------------------------------------------------------------------
    async def experiment_blast_radius(self, request: web.Request) -> web.StreamResponse:
        experiment = request.match_info["experiment"]
        if not valid_experiment_key(experiment):
            raise _field_problem(400, "invalid experiment key in the path", "experiment", f"{experiment[:60]!r}")
        return await self._blast_radius(request, experiment, request.query.get("rule") or None)

    async def incident_blast_radius(self, request: web.Request) -> web.StreamResponse:
        inc, _ = self._raw(request.match_info["id"])
        if inc is None:
            raise _field_problem(404, f"no incident {request.match_info['id']!r}", "id", "unknown on this worker")
        return await self._blast_radius(request, inc["experiment"], inc["rule"])

    async def _blast_radius(self, request: web.Request, experiment: str, rule: str | None) -> web.StreamResponse:
        q = request.query
        fmt = q.get("format", "json")
        if fmt not in ("json", "csv"):
            raise _field_problem(400, "invalid format", "format", "use json or csv")
        as_recorded = _bool_param(q, "as_recorded")
        state = self.ingest.state_of(experiment) if self.ingest is not None else None
        registration = self._registration(experiment)
        if state is None:
            owned = len(getattr(self.ingest, "partitions", ()) or ())
            total = getattr(getattr(self.ingest, "settings", None), "partitions", None)
            if total is not None and owned < total:
                raise _field_problem(
                    404, f"no state for {experiment!r} on this worker", "experiment",
                    f"this worker owns {owned} of {total} partitions: ask the worker that owns the experiment's partition")
            if registration is None:
                raise _field_problem(404, f"unknown experiment {experiment!r}", "experiment", "neither registered nor observed")
            state = _Empty(experiment)
        if fmt == "csv":
            resp = web.StreamResponse(headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": content_disposition(f"{experiment}-blast-radius.csv"),
                "X-Blast-Radius-Complete": "true" if _complete(state) else "false",
            })
            audit_user_read(request, what="blast radius csv", experiment=experiment, fields=["user_id"])
            await resp.prepare(request)
            for chunk in br.csv_chunks(state, registration, rule=rule, as_recorded=as_recorded):
                await resp.write(chunk.encode())
            await resp.write_eof()
            return resp
        limit = int_param(q, "limit", br.DEFAULT_LIMIT, 1, br.MAX_LIMIT)
        try:
            body = br.page(state, registration, limit=limit, cursor=q.get("cursor") or None, rule=rule,
                           as_recorded=as_recorded)
        except br.CursorError as exc:
            raise _field_problem(400, str(exc), "cursor", "pass next_cursor from the previous page unchanged") from None
        body["experiment"] = experiment
        body["registered"] = registration is not None
        if body["next_cursor"]:
            body["next"] = next_link(request, body["next_cursor"])
        audit_user_read(request, what="blast radius", experiment=experiment, count=body["count"])
        return json_response(body)


class _Empty:
    """State of an experiment registered but not seen yet: nobody out of target."""

    offender_count = 0

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment

    def offenders(self):
        return iter(())

    def enrolled_lower_bound(self) -> int:
        return 0


def _list_key(view: dict) -> tuple[str, str]:
    return (str(view.get("started_at") or ""), str(view["id"]))


def _hide_errors(request: web.Request, view: dict[str, Any]) -> dict[str, Any]:
    """A kill switch's error text (it can name what answers on an internal port) only for token holders."""
    if principal(request).authenticated:
        return view
    view = dict(view)
    view["deliveries"] = [{**d, "error": HIDDEN} if d.get("kind") == "mitigation" and d.get("error") else d
                          for d in view.get("deliveries") or []]
    view["timeline"] = [
        {**e, "detail": {**e["detail"], "error": HIDDEN}} if e.get("kind") == "mitigation" and e.get("detail", {}).get("error")
        else e for e in view.get("timeline") or []]
    return view


_FILENAME_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def content_disposition(filename: str) -> str:
    """An attachment header whose filename holds only [A-Za-z0-9._-] (anything else becomes `_`).

    The name is built from stream data (an experiment key from an incident): quotes, `;`, CR/LF or
    non-ASCII in it must not add parameters or headers.
    """
    safe = "".join(c if c in _FILENAME_SAFE else "_" for c in filename)[:150].lstrip(".") or "download"
    return f'attachment; filename="{safe}"'


def _bool_param(q, name: str) -> bool:
    v = q.get(name)
    if v is None:
        return False
    v = v.strip().lower()
    if v in ("", "1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise _field_problem(400, f"invalid query parameter {name}", name, "must be true or false")


def add_routes(
    router: web.UrlDispatcher,
    *,
    publisher,
    incidents,
    ingest,
    registrations,
    clock: Callable[[], float] = time.time,
    base_url: str | None = None,
) -> IncidentsAPI:
    """Register the incident-response routes on `router`, each with its access rule.

    `publisher`: `AlertPublisher` (local lifecycles: find, incidents, acknowledge, resolve);
    `incidents`: the `incidents` table (id -> {"incident", "deliveries"});
    `ingest`: has `state_of(experiment)` (engine state) and `partitions`;
    `registrations`: has `get(experiment)` -> CompiledRegistration and `history(experiment)`.
    `base_url`: `DETECTOR_EXTERNAL_URL`, the only source of absolute links.
    The app must carry the middleware stack (`detector.web.middleware.install`).
    """
    api = IncidentsAPI(publisher=publisher, incidents=incidents, ingest=ingest, registrations=registrations,
                       clock=clock, base_url=base_url)
    add_route(router, "GET", "/v1/incidents", api.list, access=READ)
    add_route(router, "GET", "/v1/incidents/{id}", api.get, access=READ)
    add_route(router, "POST", "/v1/incidents/{id}/ack", api.ack, access=RESPOND, max_body=MAX_ACK_BODY)
    add_route(router, "POST", "/v1/incidents/{id}/resolve", api.resolve, access=RESPOND, max_body=MAX_ACK_BODY)
    add_route(router, "GET", "/v1/incidents/{id}/blast-radius", api.incident_blast_radius, access=READ_USERS)
    add_route(router, "GET", "/v1/experiments/{experiment}/blast-radius", api.experiment_blast_radius,
              access=READ_USERS)
    return api


__all__ = ["HTTPProblem", "IncidentsAPI", "add_routes", "content_disposition"]


def _complete(state: Any) -> bool:
    """Every out-of-target user is in the list (the offender records were not capped)."""
    return int(getattr(state, "offender_count", 0) or 0) <= sum(1 for _ in state.offenders())
