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

Reads are open; POSTs need `Authorization: Bearer <DETECTOR_API_TOKEN>`, exactly like the
registration writes (same checks, same error bodies: see `detector.web.expectations_api`).

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
from detector.web.expectations_api import (
    FROM_ENV,
    USER_HEADER,
    HTTPProblem,
    _Auth,
    _field_problem,
    _FromEnv,
    _wrap,
    json_response,
    read_body,
)

MAX_ACK_BODY = 16 * 1024
MAX_LIST = 1000


class IncidentsAPI:
    def __init__(self, *, publisher, incidents, ingest, registrations, auth: _Auth,
                 clock: Callable[[], float], base_url: str | None) -> None:
        self.publisher = publisher
        self.table = incidents
        self.ingest = ingest
        self.registrations = registrations
        self.auth = auth
        self.clock = clock
        self.base_url = base_url

    # ---- lookups ---------------------------------------------------------------------------
    def _history(self, experiment: str) -> list[dict]:
        history = getattr(self.registrations, "history", None)
        try:
            return list(history(experiment)) if history else []
        except Exception:
            return []

    def _expectation(self, experiment: str):
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
        views.sort(key=lambda v: (v.get("started_at") or "", v["id"]), reverse=True)
        return views

    async def list(self, request: web.Request) -> web.Response:
        q = request.query
        limit = _int_param(q, "limit", MAX_LIST, 1, MAX_LIST)
        views = [v for v in self.all_views() if matches(v, q)]
        items = [incident_summary(v) for v in views[:limit]]
        return json_response({"count": len(items), "total": len(views), "incidents": items})

    async def get(self, request: web.Request) -> web.StreamResponse:
        v = self._view_or_404(request.match_info["id"])
        fmt = request.query.get("format", "json")
        if fmt in ("md", "markdown"):
            return web.Response(text=incident_markdown(v, self.base_url or _base(request)),
                                content_type="text/markdown", charset="utf-8")
        if fmt != "json":
            raise _field_problem(400, "invalid format", "format", "use json or md")
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

    async def acknowledge(self, iid: str, who: str) -> str:
        """Acknowledge a firing incident held here: "acknowledged" or "unchanged" (HTTPProblem otherwise)."""
        self._local_or_problem(iid)
        _, inc = self.publisher.find(iid)
        if inc.status != "firing":
            raise _field_problem(409, f"incident {iid!r} is {inc.status}", "status", "only a firing incident can be acknowledged")
        action = "unchanged" if inc.acknowledged_by is not None else "acknowledged"
        await self.publisher.acknowledge(iid, who, self.clock())
        return action

    async def resolve_now(self, iid: str, who: str) -> str:
        """Resolve an incident held here now: "resolved" or "unchanged"."""
        self._local_or_problem(iid)
        _, inc = self.publisher.find(iid)
        action = "unchanged" if inc.status != "firing" else "resolved"
        if action == "resolved":
            await self.publisher.resolve(iid, who, self.clock())
        return action

    async def ack(self, request: web.Request) -> web.Response:
        self.auth.check(request)
        iid = request.match_info["id"]
        who, _note = await self._who(request)
        action = await self.acknowledge(iid, who)
        return json_response({"action": action, "incident": self._view_or_404(iid)})

    async def resolve(self, request: web.Request) -> web.Response:
        self.auth.check(request)
        iid = request.match_info["id"]
        who, _note = await self._who(request)
        action = await self.resolve_now(iid, who)
        return json_response({"action": action, "incident": self._view_or_404(iid)})

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
        expectation = self._expectation(experiment)
        if state is None:
            owned = len(getattr(self.ingest, "partitions", ()) or ())
            total = getattr(getattr(self.ingest, "settings", None), "partitions", None)
            if total is not None and owned < total:
                raise _field_problem(
                    404, f"no state for {experiment!r} on this worker", "experiment",
                    f"this worker owns {owned} of {total} partitions: ask the worker that owns the experiment's partition")
            if expectation is None:
                raise _field_problem(404, f"unknown experiment {experiment!r}", "experiment", "neither registered nor observed")
            state = _Empty(experiment)
        if fmt == "csv":
            resp = web.StreamResponse(headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{experiment}-blast-radius.csv"',
                "X-Blast-Radius-Complete": "true" if int(getattr(state, "offender_count", 0) or 0) <= sum(1 for _ in state.offenders()) else "false",
            })
            await resp.prepare(request)
            for chunk in br.csv_chunks(state, expectation, rule=rule, as_recorded=as_recorded):
                await resp.write(chunk.encode())
            await resp.write_eof()
            return resp
        limit = _int_param(q, "limit", br.DEFAULT_LIMIT, 1, br.MAX_LIMIT)
        try:
            body = br.page(state, expectation, limit=limit, cursor=q.get("cursor") or None, rule=rule,
                           as_recorded=as_recorded)
        except br.CursorError as exc:
            raise _field_problem(400, str(exc), "cursor", "pass next_cursor from the previous page unchanged") from None
        body["experiment"] = experiment
        body["registered"] = expectation is not None
        if body["next_cursor"]:
            nq = {k: v for k, v in q.items() if k != "cursor"}
            nq["cursor"] = body["next_cursor"]
            body["next"] = str(request.rel_url.with_query(nq))
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


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _int_param(q, name: str, default: int, lo: int, hi: int) -> int:
    if name not in q or q[name] == "":
        return default
    try:
        v = int(q[name])
    except ValueError:
        raise _field_problem(400, f"invalid query parameter {name}", name, f"must be an integer {lo}..{hi}") from None
    if not lo <= v <= hi:
        raise _field_problem(400, f"invalid query parameter {name}", name, f"must be an integer {lo}..{hi}")
    return v


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
    token: str | None | Any = FROM_ENV,
    clock: Callable[[], float] = time.time,
    base_url: str | None = None,
) -> IncidentsAPI:
    """Register the incident-response routes on `router`.

    `publisher`: `AlertPublisher` (local lifecycles: find, incidents, acknowledge, resolve);
    `incidents`: the `incidents` table (id -> {"incident", "deliveries"});
    `ingest`: has `state_of(experiment)` (engine state) and `partitions`;
    `registrations`: has `get(experiment)` -> Expectation and `history(experiment)`.
    `token` as in `detector.web.expectations_api.add_routes`.
    """
    auth = _Auth(None if isinstance(token, _FromEnv) else token, from_env=isinstance(token, _FromEnv))
    api = IncidentsAPI(publisher=publisher, incidents=incidents, ingest=ingest, registrations=registrations,
                       auth=auth, clock=clock, base_url=base_url)
    router.add_get("/v1/incidents", _wrap(api.list))
    router.add_get("/v1/incidents/{id}", _wrap(api.get))
    router.add_post("/v1/incidents/{id}/ack", _wrap(api.ack))
    router.add_post("/v1/incidents/{id}/resolve", _wrap(api.resolve))
    router.add_get("/v1/incidents/{id}/blast-radius", _wrap(api.incident_blast_radius))
    router.add_get("/v1/experiments/{experiment}/blast-radius", _wrap(api.experiment_blast_radius))
    return api


__all__ = ["HTTPProblem", "IncidentsAPI", "add_routes"]
