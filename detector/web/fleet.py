"""A fleet that answers as one: any worker answers every API call as the owner would.

Why forwarding, not shared state. An experiment's engine state (observation, blast radius) and
its incidents' lifecycle (the only place an incident can be acknowledged or resolved, and the
freshest view of it) live in one process: the worker that owns the experiment's partition of
the assignments topic in the `DETECTOR_APP_ID` group. Sharing that state would mean a second
copy that lags the first (the tables folded from topics do lag, and Faust's global tables are
only as complete as their standby replication), so a load balancer would get whichever copy it
hit. Instead every request that concerns one experiment is answered by its owner, and the
lists that span experiments are gathered from every owner, each contributing exactly the
experiments of its partitions. One source of truth per experiment; nothing to reconcile.

How a worker finds the owner. Each worker advertises its URL (`DETECTOR_ADVERTISED_URL`) in its
consumer-group metadata (the `user_data` of the round-robin assignor, so the protocol and the
assignment are unchanged). `DescribeGroups` then gives every member's URL and partitions, and
the group's state. The partition of an experiment is Kafka's default partitioner over its key
(murmur2, as producers keyed by experiment use).

What never happens: a wrong or partial answer. The owner checks, on every forwarded request,
that it still owns (and has restored) the partitions the sender thought it did; while the group
rebalances, a member is unreachable (killed, not yet expired by the session timeout) or an
owner disagrees, the answer is 503 with `Retry-After`.

Who may take part. Hops between workers are signed with the fleet secret (`DETECTOR_FLEET_SECRET`,
detector/web/fleet_auth.py): a forwarded request carries no `Authorization` and no `Cookie`, but the
caller's principal (for console pages, the session's) signed with the method, path, partitions,
time and body; the owner verifies it and applies the same access control to that principal. The
URL a worker advertises is signed too, so a member that joined the group without the secret is
never forwarded to (its partitions answer 503). Without a secret a worker never forwards: with
other workers in the group, a request it does not own is answered 503 naming the setting.

    fleet = Fleet(settings, ingest, experiment_of_incident=...)
    fleet.install(app)      # its middleware, the X-Detector-Served-By header, cleanup
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import socket
import time
from collections.abc import Callable
from urllib.parse import quote
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import yarl
from aiohttp import web
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata
from aiokafka.partitioner import murmur2

from detector.web import auth, fleet_auth
from detector.web.fleet_auth import FORWARDED
from detector.web.problems import DEFAULT_PAGE, MAX_PAGE, encode_cursor, next_link

log = logging.getLogger(__name__)

SERVED_BY = "X-Detector-Served-By"
RETRY_AFTER_S = 2
MEMBERSHIP_TTL_S = 1.0
FORWARD_TIMEOUT_S = 30.0
GATHER_LIMIT = MAX_PAGE  # incidents.MAX_LIST: each owner's handler is asked for this many items


@dataclass(frozen=True)
class Paging:
    """How a gathered list is paged: its sort key (the handler's cursor holds it), order, default limit."""

    key: Callable[[dict], list[str]]
    reverse: bool
    default_limit: int


# The paged lists: merged across owners by their sort key, `limit` and `cursor` passed to each owner.
PAGED: dict[str, Paging] = {
    "expectations": Paging(lambda v: [str(v.get("experiment"))], False, DEFAULT_PAGE),
    "incidents": Paging(lambda v: [str(v.get("started_at") or ""), str(v.get("id"))], True, MAX_PAGE),
}
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Host", "Content-Length", "Content-Encoding",
))
# Never forwarded: the caller's credentials (the hop is signed instead) and any fleet header it sent.
NOT_FORWARDED = HOP_BY_HOP | {"authorization", "cookie", *(h.lower() for h in fleet_auth.FLEET_HEADERS)}

# Route templates and how they are answered. "experiment": by the owner of the path's experiment;
# "incident": by the owner of the incident's experiment; "gather:<key>": merged from every owner,
# each contributing the items (list under <key>, each with an "experiment") of its partitions.
ROUTES: dict[str, str] = {
    "/v1/expectations": "gather:expectations",
    "/v1/expectations/{experiment}": "experiment",
    "/v1/expectations/{experiment}/history": "experiment",
    "/v1/experiments/{experiment}": "experiment",
    "/v1/experiments/{experiment}/blast-radius": "experiment",
    "/v1/incidents": "gather:incidents",
    "/v1/discovery": "gather:experiments",
    "/v1/incidents/{id}": "incident",
    "/v1/incidents/{id}/ack": "incident",
    "/v1/incidents/{id}/resolve": "incident",
    "/v1/incidents/{id}/blast-radius": "incident",
    # The console's pages of one incident or experiment (the session cookie travels with the request).
    "/incidents/{id}": "incident",
    "/incidents/{id}/{action}": "incident",
    "/incidents/{id}/blast-radius.csv": "incident",
    "/experiments/{experiment}": "experiment",
}


def partition_of(experiment: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record keyed by `experiment`."""
    return (murmur2(experiment.encode("utf-8")) & 0x7FFFFFFF) % partitions


def advertising_assignor(url: str) -> type:
    """The round-robin assignor (same name, same assignment) carrying this worker's URL in its metadata."""

    class AdvertisingRoundRobin(RoundRobinPartitionAssignor):
        @classmethod
        def metadata(cls, topics):
            return ConsumerProtocolMemberMetadata(cls.version, list(topics), url.encode("utf-8"))

    return AdvertisingRoundRobin


def default_advertised_url(host: str, port: int) -> str:
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    return f"http://{host}:{port}"


@dataclass
class Membership:
    """The group as DescribeGroups saw it."""

    stable: bool
    owners: dict[int, str] = field(default_factory=dict)  # partition -> owner URL
    at: float = 0.0

    def by_owner(self) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for p, url in self.owners.items():
            out.setdefault(url, set()).add(p)
        return out


def _csv_key(cell: str) -> str:
    """The experiment of a CSV cell (spreadsheet-safe cells carry a leading apostrophe)."""
    return cell[1:] if cell[:2] in ("'=", "'+", "'-", "'@") else cell


def _csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


class Unavailable(Exception):
    """The fleet cannot give a complete, right answer now: 503 with Retry-After."""


class NoSecret(Exception):
    """Answering needs another worker, and this one has no fleet secret: 503 naming the setting."""


def _problem(status: int, title: str, detail: str, retry: bool = False) -> web.Response:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if retry else {}
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/problem+json",
                        headers=headers)


class Fleet:
    def __init__(self, settings, ingest=None, *, experiment_of_incident: Callable[[str], str | None],
                 describe_group: Callable | None = None) -> None:
        self.settings = settings
        self.ingest = ingest  # detector.ingest.service.IngestService: partitions, rebalancing
        self.experiment_of_incident = experiment_of_incident
        self.url = settings.advertised_url or default_advertised_url(settings.web_host, settings.web_port)
        self.secret: str = getattr(settings, "fleet_secret", "") or ""
        self.assignor = advertising_assignor(fleet_auth.sign_url(self.secret, self.url))
        self.peers = fleet_auth.parse_peers(getattr(settings, "fleet_peers", "") or "")
        self._refused: set[str] = set()
        # The console's forwarded pages: who the session is (Console.hop), set by whoever builds both.
        self.session_hop: Callable[[web.Request], fleet_auth.Hop] | None = None
        self._describe = describe_group or self._describe_group
        self._membership: Membership | None = None
        self._refresh_lock = asyncio.Lock()
        self._admin: Any = None
        self._session: aiohttp.ClientSession | None = None

    # ---- membership ----------------------------------------------------------------------------
    async def _describe_group(self) -> Membership:
        from aiokafka.admin import AIOKafkaAdminClient

        if self._admin is None:
            admin = AIOKafkaAdminClient(**self.settings.kafka.client_kwargs(), request_timeout_ms=5000)
            await admin.start()
            self._admin = admin
        [resp] = await self._admin.describe_consumer_groups([self.settings.app_id])
        group = resp.groups[0]
        error_code, state, members = group[0], group[2], group[5]
        if error_code:
            raise Unavailable(f"the consumer group cannot be described (error {error_code})")
        owners: dict[int, str] = {}
        topic = self.settings.topics.assignments
        for member in members:
            meta, assignment = member[3], member[4]
            data = ConsumerProtocolMemberMetadata.decode(meta).user_data.decode("utf-8", "replace") if meta else ""
            url = fleet_auth.verified_url(self.secret, data)  # "": not signed with our secret, never asked
            if url and not fleet_auth.peer_allowed(url, self.peers):
                if url not in self._refused:  # once per URL, not at every refresh
                    self._refused.add(url)
                    log.warning("group member %s is outside DETECTOR_FLEET_PEERS: never forwarded to", url)
                url = ""
            if not assignment:
                continue
            for t, parts in ConsumerProtocolMemberAssignment.decode(assignment).assignment:
                if t == topic:
                    for p in parts:
                        owners[p] = url
        return Membership(stable=(state == "Stable"), owners=owners, at=time.monotonic())

    async def membership(self) -> Membership:
        m = self._membership
        if m is not None and time.monotonic() - m.at < MEMBERSHIP_TTL_S:
            return m
        async with self._refresh_lock:
            m = self._membership
            if m is None or time.monotonic() - m.at >= MEMBERSHIP_TTL_S:
                try:
                    m = self._membership = await asyncio.wait_for(self._describe(), 5.0)
                except Unavailable:
                    raise
                except Exception as exc:
                    raise Unavailable(f"the consumer group cannot be described: {exc.__class__.__name__}") from None
        assert m is not None
        return m

    def _owned_here(self, partitions: set[int]) -> bool:
        """This worker holds (restored) every one of `partitions` and is not mid-rebalance."""
        ing = self.ingest
        return not getattr(ing, "rebalancing", False) and partitions <= set(ing.partitions)

    # ---- the middleware ------------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        kind = ROUTES.get(resource.canonical) if resource is not None else None
        if kind is None:
            return await handler(request)
        asked = request.headers.get(FORWARDED)
        try:
            if asked is not None:  # we are asked as the owner of these partitions
                return await self._as_owner(request, handler, kind, asked)
            if kind.startswith("gather:"):
                return await self._gather(request, handler, kind.split(":", 1)[1])
            return await self._route(request, handler, kind)
        except NoSecret as exc:
            return _problem(503, f"the fleet secret is not configured ({fleet_auth.SETTING})", str(exc))
        except Unavailable as exc:
            return _problem(503, "the fleet is rebalancing or a worker is unreachable", str(exc), retry=True)

    async def _as_owner(self, request, handler, kind: str, asked: str) -> web.StreamResponse:
        if fleet_auth.HOP_KEY not in request:  # the auth middleware verifies hops; fail closed all the same
            return _problem(401, "invalid fleet signature", "a forwarded request must be signed by the fleet")
        try:
            parts = {int(p) for p in asked.split(",") if p.strip()}
        except ValueError:
            return _problem(400, "invalid forwarding header", FORWARDED)
        if not self._owned_here(parts):
            raise Unavailable(f"{self.url} no longer owns partitions {sorted(parts)}")
        if kind == "experiment" and self._partition(request.match_info["experiment"]) not in parts:
            raise Unavailable("the experiment is not in the partitions this request was forwarded for")
        if kind == "incident":
            exp = self.experiment_of_incident(request.match_info["id"])
            if exp is None or self._partition(exp) not in parts:
                return _problem(404, "incident not held here", "ask the owner of its experiment")
        if kind.startswith("gather:"):
            return await self._owned_items(request, handler, kind.split(":", 1)[1], parts)
        return await handler(request)

    def _partition(self, experiment: str) -> int:
        return partition_of(experiment, self.settings.partitions)

    async def _owner_of(self, experiment: str) -> tuple[str, int]:
        m = await self.membership()
        if not m.stable:
            raise Unavailable("the consumer group is rebalancing")
        p = self._partition(experiment)
        url = m.owners.get(p)
        if p in m.owners and not url:
            raise Unavailable(f"partition {p} is held by a member that did not sign its URL with this "
                              f"worker's {fleet_auth.SETTING} or is outside DETECTOR_FLEET_PEERS")
        if not url:
            raise Unavailable(f"partition {p} has no owner at the moment")
        return url, p

    def _require_secret(self) -> None:
        if not self.secret:
            raise NoSecret(f"set {fleet_auth.SETTING} (or {fleet_auth.SETTING}_FILE), the same on every worker: "
                           "this worker has no fleet secret, so it forwards nothing to the other workers of its group")

    def _hop(self, request: web.Request) -> fleet_auth.Hop:
        """Who the caller is, as the owner is told (API: the authenticated token; console: the session)."""
        if not request.path.startswith("/v1/") and self.session_hop is not None:
            return self.session_hop(request)
        return fleet_auth.Hop(auth.principal(request))

    def _signed(self, request: web.Request, method: str, path_qs: str, parts: set[int],
                body: bytes | None, forward_headers: bool) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED} \
            if forward_headers else {}
        headers.update(fleet_auth.sign(self.secret, method=method, path_qs=path_qs,
                                       partitions=",".join(str(p) for p in sorted(parts)),
                                       hop=self._hop(request), body=body, now=time.time()))
        return headers

    async def _route(self, request, handler, kind: str) -> web.StreamResponse:
        if kind == "experiment":
            experiment = request.match_info["experiment"]
        else:
            experiment = self.experiment_of_incident(request.match_info["id"]) or await self._find_incident(
                request, request.match_info["id"])
            if experiment is None:
                return await handler(request)  # nobody holds it: the handler's own 404
        url, p = await self._owner_of(experiment)
        if url == self.url:
            if not self._owned_here({p}):
                raise Unavailable(f"partition {p} is being restored here")
            return await handler(request)
        self._require_secret()
        return await self._forward(request, url, {p})

    async def _find_incident(self, request: web.Request, iid: str) -> str | None:
        """An incident this worker has not seen yet: ask every owner (each answers for its partitions)."""
        m = await self.membership()
        if not m.stable:
            raise Unavailable("the consumer group is rebalancing")
        owners = {u: ps for u, ps in m.by_owner().items() if u != self.url}
        if not owners:
            return None
        self._require_secret()
        path = "/v1/incidents/" + quote(iid, safe="")  # one path segment, whatever the id holds

        async def ask(url: str, parts: set[int]):
            status, body = await self._fetch_json(request, url, path, parts, forward_headers=False)
            return body.get("experiment") if status == 200 and isinstance(body, dict) else None

        found = await asyncio.gather(*(ask(u, ps) for u, ps in owners.items()))
        return next((f for f in found if f), None)

    # ---- forwarding ----------------------------------------------------------------------------
    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S, connect=3))
        return self._session

    async def _forward(self, request: web.Request, url: str, parts: set[int]) -> web.StreamResponse:
        body = await request.read() if request.can_read_body else None
        path_qs = request.rel_url.raw_path_qs
        headers = self._signed(request, request.method, path_qs, parts, body, forward_headers=True)
        try:
            upstream = await self._client().request(
                request.method, yarl.URL(url + path_qs, encoded=True), data=body, headers=headers,
                allow_redirects=False)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise Unavailable(f"the owner {url} is unreachable ({exc.__class__.__name__})") from None
        async with upstream:
            resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for k, v in upstream.headers.items():
                if k.lower() not in HOP_BY_HOP:
                    resp.headers.add(k, v)
            await resp.prepare(request)
            try:
                async for chunk in upstream.content.iter_chunked(64 * 1024):
                    await resp.write(chunk)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                # Headers are out: the only honest thing left is to cut the response short.
                log.warning("forwarding from %s broke off: %s", url, exc.__class__.__name__)
                raise
            await resp.write_eof()
            return resp

    async def _fetch_json(self, request: web.Request, url: str, path_qs: str, parts: set[int],
                          forward_headers: bool = True):
        status, raw, headers_in = await self._fetch(request, url, path_qs, parts, forward_headers)
        if headers_in.get("Content-Type", "").startswith("text/csv"):
            return status, raw.decode("utf-8")
        try:
            return status, orjson.loads(raw or b"null")
        except orjson.JSONDecodeError:
            raise Unavailable(f"the owner {url} answered something unreadable") from None

    async def _fetch(self, request: web.Request, url: str, path_qs: str, parts: set[int], forward_headers: bool):
        """GET `path_qs` (already URL-encoded) from the owner `url`, signed as `request`'s caller."""
        h = self._signed(request, "GET", path_qs, parts, None, forward_headers)
        try:
            async with self._client().get(yarl.URL(url + path_qs, encoded=True), headers=h) as r:
                return r.status, await r.read(), r.headers
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise Unavailable(f"the owner {url} is unreachable ({exc.__class__.__name__})") from None

    # ---- lists spanning experiments ------------------------------------------------------------
    async def _owned_items(self, request, handler, key: str, parts: set[int]) -> web.Response:
        """As an owner: the list, keeping only the experiments of `parts` (all of them, up to the cap;
        for a paged list, its first `limit` after `cursor`, with a next_cursor when it has more)."""
        paging = PAGED.get(key)
        limit = request.query.get("limit", "")
        if "limit" in request.query or paging is not None:
            request = request.clone(rel_url=request.rel_url.update_query(limit=str(GATHER_LIMIT)))
        resp = await handler(request)
        if resp.status != 200:
            return resp
        if resp.content_type == "text/csv":  # one row per experiment, the experiment first
            rows = list(csv.reader(io.StringIO(resp.text)))
            kept = rows[:1] + [r for r in rows[1:] if r and self._partition(_csv_key(r[0])) in parts]
            return web.Response(text=_csv_text(kept), content_type="text/csv", headers={
                k: v for k, v in resp.headers.items() if k.lower() == "content-disposition"})
        body = orjson.loads(resp.body)
        items = [i for i in body.get(key, []) if self._partition(str(i.get("experiment", ""))) in parts]
        out = {**body, key: items, "count": len(items)}
        if "total" in body:
            out["total"] = len(items)
        if paging is not None:
            n = int(limit) if limit.isdigit() and 1 <= int(limit) <= GATHER_LIMIT else paging.default_limit
            # more: past the page, or past the handler's cap (then this owner's list is a correct prefix)
            more = len(items) > n or bool(body.get("next_cursor"))
            items = items[:n]
            out.update({key: items, "count": len(items),
                        "next_cursor": encode_cursor(paging.key(items[-1])) if more and items else None})
            out.pop("next", None)
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    async def _local_items(self, request: web.Request, handler, key: str, path_qs: str, parts: set[int]):
        """This worker's share of a gathered list, without a hop (and so without needing the secret)."""
        if not self._owned_here(parts):
            raise Unavailable(f"partitions {sorted(parts)} are being restored here")
        resp = await self._owned_items(request.clone(rel_url=yarl.URL(path_qs, encoded=True)), handler, key, parts)
        raw = resp.body if isinstance(resp.body, bytes) else b""
        if resp.content_type == "text/csv":
            return resp.status, raw.decode("utf-8")
        return resp.status, orjson.loads(raw or b"null")

    async def _gather(self, request: web.Request, handler, key: str) -> web.Response:
        m = await self.membership()
        if not m.stable:
            raise Unavailable("the consumer group is rebalancing")
        owners = m.by_owner()
        if set(m.owners) != set(range(self.settings.partitions)):
            raise Unavailable("not every partition has an owner at the moment")
        q = dict(request.query)
        limit = q.get("limit")
        if limit and not (limit.isdigit() and 1 <= int(limit) <= GATHER_LIMIT):
            return await handler(request)  # its own 400 for an invalid limit
        paging = PAGED.get(key)
        n = int(limit) if limit else paging.default_limit if paging else GATHER_LIMIT
        q["limit"] = str(n)  # a paged list: each owner its first n after the cursor (passed on as is)
        path_qs = str(request.rel_url.with_query(q)) if paging is not None else request.rel_url.raw_path_qs
        if set(owners) - {self.url}:
            self._require_secret()
        answers = await asyncio.gather(*(
            self._local_items(request, handler, key, path_qs, ps) if u == self.url
            else self._fetch_json(request, u, path_qs, ps) for u, ps in owners.items()))
        for status, body in answers:
            if status == 503:
                raise Unavailable("an owner is rebalancing")
            if status != 200:
                return web.Response(status=status, body=orjson.dumps(body), content_type="application/problem+json")
        if all(isinstance(body, str) for _, body in answers):  # CSV: one header, rows by experiment
            tables = [list(csv.reader(io.StringIO(body))) for _, body in answers]
            rows = sorted((r for t in tables for r in t[1:] if r), key=lambda r: _csv_key(r[0]))
            return web.Response(text=_csv_text(tables[0][:1] + rows), content_type="text/csv")
        items: list[dict] = []
        for _, body in answers:
            items.extend(body.get(key, []))
        extra = {k: v for k, v in answers[0][1].items() if k not in (key, "count", "total", "next_cursor", "next")}
        if paging is None:
            items.sort(key=lambda v: str(v.get("experiment")))
            return web.json_response({**extra, "count": len(items), key: items},
                                     dumps=lambda o: orjson.dumps(o).decode())
        # Each owner gave its first n after the cursor: the first n of their union are the fleet's.
        items.sort(key=paging.key, reverse=paging.reverse)
        total = sum(int(body.get("total") or 0) for _, body in answers)
        more = len(items) > n or any(body.get("next_cursor") for _, body in answers)
        items = items[:n]
        cursor = encode_cursor(paging.key(items[-1])) if more and items else None
        return web.json_response({**extra, "count": len(items), "total": total, key: items, "next_cursor": cursor,
                                  "next": next_link(request, cursor)}, dumps=lambda o: orjson.dumps(o).decode())

    def install(self, app: web.Application) -> None:
        app[fleet_auth.SECRET_KEY] = self.secret  # the auth middleware verifies hops with it
        app.middlewares.append(self.middleware)
        app.on_response_prepare.append(self._served_by)
        app.on_cleanup.append(self.close)

    async def _served_by(self, request: web.Request, response: web.StreamResponse) -> None:
        # Which worker computed the answer (a forwarded answer keeps its owner's).
        if SERVED_BY not in response.headers:
            response.headers[SERVED_BY] = self.url

    async def close(self, _app=None) -> None:
        if self._session is not None:
            await self._session.close()
        if self._admin is not None:
            await self._admin.close()
