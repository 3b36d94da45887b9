"""Security of the worker's HTTP API (issue 18), on the real route table of `detector.shell.web`.

The app is the worker's own (every route, the middleware stack, the real lifecycle, engine state
and registration service in memory); the requests go over a real aiohttp server. Table-driven:
every route of the app and of the OpenAPI document is checked, so a new route without a declared
access rule, or one that leaks user ids without `read:users`, fails here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from detector.alerts.lifecycle import LifecycleConfig
from detector.engine import ExperimentState, process_batch
from detector.events import Assignment
from detector.registration.compiled import CompiledRegistration
from detector.observability.metrics import DetectorMetrics
from detector.registration.service import InMemoryRegistrationService
from detector.settings import Settings, Topics
from detector.shell.courier import fold_timeline
from detector.shell.outbox import AlertPublisher
from detector.shell.web import add_routes
from detector.web import auth

T0 = 1_700_000_000_000
EXP = "sec-exp"
ALLOWED = ("allow-id-0001", "allow-id-0002")
OFFENDERS = tuple(f"offender-id-{i:04d}" for i in range(12))
FORMULA_IDS = ("=cmd|' /C calc'!A0", "+1+1", "@SUM(1,1)", "-2+3")
KNOWN_IDS = ALLOWED + OFFENDERS + FORMULA_IDS
TOKENS = {
    "read": "tok-read-000000000001",
    "read:users": "tok-users-00000000002",
    "write": "tok-write-00000000003",
    "respond": "tok-respond-000000004",
    "ingest": "tok-ingest-0000000005",
}
ALL = "tok-all-scopes-0000006"


class FakeProducer:
    def __init__(self):
        self.sent = []

    async def send(self, topic, key=None, value=None, **kw):
        self.sent.append((topic, key, value))


class Ingest:
    """What the web layer reads of the ingest service (real engine state inside)."""

    def __init__(self, states):
        self.states = states
        self.partitions = {0: None}
        self.settings = type("S", (), {"partitions": 1})()
        self.connected, self.consumer, self.last_batch_at = True, object(), 1

    def state_of(self, experiment):
        return self.states.get(experiment)


def _tokens_file(tmp_path, extra=()):
    entries = [{"name": f"only-{scope.replace(':', '-')}", "token": tok, "scopes": [scope]}
               for scope, tok in TOKENS.items()]
    entries.append({"name": "everything", "sha256": hashlib.sha256(ALL.encode()).hexdigest(),
                    "scopes": list(auth.SCOPES)})
    entries += list(extra)
    path = tmp_path / "tokens.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"tokens": entries}))
    return str(path)


async def _world(tmp_path, **settings_kw):
    """The worker's web app with one registration, engine state with offenders, and an incident."""
    exp = CompiledRegistration(EXP, owner="crm", allowlist=frozenset(ALLOWED), severity="critical")
    service = InMemoryRegistrationService(clock=lambda: T0 / 1000)
    await service.put(exp, "alice")
    # A change of the allowlist: the history's diff names user ids.
    await service.put(CompiledRegistration(EXP, owner="crm", allowlist=frozenset(ALLOWED + ("allow-id-0003",)),
                                  severity="critical"), "bob")
    await service.put(exp, "carol")
    st = ExperimentState.new(EXP)
    evs = [Assignment(EXP, u, "a", True, T0 + i) for i, u in enumerate(ALLOWED + OFFENDERS)]
    evs += [Assignment(EXP, u, v, True, T0 + 100 + i) for i, (u, v) in enumerate(zip(FORMULA_IDS, FORMULA_IDS))]
    findings = process_batch(st, exp, evs)
    pub = AlertPublisher(LifecycleConfig(group_wait_ms=0), service.get, Topics("t."))
    pub.producer = FakeProducer()
    await pub.on_findings(0, findings, (T0 + 200) / 1000)
    await pub.tick((T0 + 300) / 1000)
    [inc] = list(pub.incidents())
    table = {inc.id: fold_timeline(None, {"mitigation": {
        "sink": "mitigation", "notification_id": f"{inc.id}:mitigation", "incident_id": inc.id, "status": "failed",
        "attempts": 1, "http_status": None, "duration_ms": 3.0, "error": "SSH-2.0-OpenSSH_9.6 on 10.0.0.7:22",
        "finished_at": T0 + 350, "notification_status": "firing", "notification_kind": "firing"}})}
    table[inc.id]["incident"] = None
    settings = Settings(api_tokens_file=_tokens_file(tmp_path), **settings_kw)
    app = web.Application()
    metrics = DetectorMetrics(CollectorRegistry(), process_metrics=False)
    ingest = Ingest({EXP: st})
    add_routes(app, settings=settings, metrics=metrics, registrations=service, ingest=ingest,
               publisher=pub, incidents=table, started_at=time.time())
    client = TestClient(TestServer(app))
    await client.start_server()
    client.incident_id, client.service, client.metrics, client.publisher = inc.id, service, metrics, pub
    client.ingest, client.table = ingest, table
    return client


@pytest.fixture
async def world(tmp_path):
    client = await _world(tmp_path)
    try:
        yield client
    finally:
        await client.close()


def _bearer(token):
    return {"Authorization": f"Bearer {token}"} if token else {}


def _concrete(path: str, client) -> str:
    return (path.replace("{experiment}", EXP).replace("{id}", client.incident_id).replace("{source}", "growthbook")
            .replace("{format}", "posthog"))


def _routes(app):
    """The API's routes (the console's pages, public here, check their session themselves: tests/browser)."""
    return [(m, p, rule) for m, p, rule in auth.route_table(app)
            if p.startswith("/v1/") or p in ("/healthz", "/readyz", "/metrics")]


# ------------------------------------------------------------------------------- declared rules
async def test_every_route_of_the_app_and_of_the_openapi_document_declares_its_access(world):
    doc = await (await world.get("/v1/openapi.json")).json()
    assert all(rule in auth.ACCESS_RULES for _, _, rule in auth.route_table(world.app))  # console pages too
    table = _routes(world.app)
    assert len(table) >= 15
    assert all(rule in auth.ACCESS_RULES for _, _, rule in table), table
    by_route = {(m, p): rule for m, p, rule in table}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            rule = by_route.get((method.upper(), path))
            assert rule is not None, f"{method.upper()} {path} is documented but not served"
            assert op["x-access"] == rule, (path, method)
            assert op["security"] == ([] if rule == "public" else [{"bearer": [rule]}])
    documented = {(m.upper(), p) for p, item in doc["paths"].items() for m in item if m != "parameters"}
    api = {(m, p) for m, p in by_route if p.startswith("/v1/") or p in ("/healthz", "/metrics")}
    undocumented = sorted(api - documented)
    assert not undocumented, f"served but missing from the OpenAPI document: {undocumented}"


async def test_a_route_without_an_access_rule_stops_the_app_at_start_up():
    app = web.Application()
    from detector.web.middleware import install

    install(app, tokens=auth.load_tokens("t" * 20))

    async def sneaky(request):
        return web.json_response({"ids": list(KNOWN_IDS)})

    app.router.add_get("/v1/sneaky", sneaky)  # not through auth.add_route
    with pytest.raises(RuntimeError, match="GET /v1/sneaky"):
        auth.check_routes(app)
    with pytest.raises(RuntimeError, match="without an access rule"):
        async with TestClient(TestServer(app)):
            pass
    with pytest.raises(ValueError, match="access must be one of"):
        auth.add_route(web.Application().router, "GET", "/x", sneaky, access="admin")


async def test_each_scope_is_enforced_on_every_route(world):
    """No token: 401 (or allowed for public/status routes); a token without the scope: 403;
    the scope (alone): neither 401 nor 403. Writes are dry runs so the order does not matter."""
    body = json.dumps({"owner": "crm", "population": {"allowlist": list(ALLOWED)}, "severity": "critical"})
    checked = 0
    for method, path, rule in _routes(world.app):
        url = _concrete(path, world) + ("?dry_run=true" if method in ("PUT", "DELETE") else "")
        kw = {"data": body, "headers": {"Content-Type": "application/json"}} if method == "PUT" else {}
        if method == "POST":
            kw = {"json": {"who": "alice"}}

        async def call(token):
            headers = {**kw.get("headers", {}), **_bearer(token)}
            r = await world.request(method, url, **{**kw, "headers": headers})
            await r.read()
            return r.status

        anonymous = await call(None)
        if rule in ("public", "status"):  # DETECTOR_ANONYMOUS_READ defaults to status
            assert anonymous not in (401, 403), (method, path, anonymous)
        else:
            assert anonymous == 401, (method, path, anonymous)
            assert await call("not-a-token-at-all-123") == 401, (method, path)
            for scope, token in TOKENS.items():
                status = await call(token)
                if scope == rule or (scope, rule) == ("read:users", "read"):  # read:users implies read
                    assert status not in (401, 403), (method, path, scope, status)
                else:
                    assert status == 403, (method, path, scope, status)
            assert await call(ALL) not in (401, 403), (method, path)
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize("anonymous_read,expect", [("none", {"status": 401, "read": 401}),
                                                   ("status", {"status": 200, "read": 401}),
                                                   ("read", {"status": 200, "read": 200})])
async def test_anonymous_reads_are_configurable_but_never_user_ids(tmp_path, anonymous_read, expect):
    client = await _world(tmp_path, anonymous_read=anonymous_read)
    try:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/metrics")).status == expect["status"]
        assert (await client.get(f"/v1/expectations/{EXP}")).status == expect["read"]
        r = await client.get(f"/v1/experiments/{EXP}/blast-radius")
        assert r.status == 401
        text = await (await client.get(f"/v1/incidents/{client.incident_id}")).text()
        assert not any(i in text for i in KNOWN_IDS)
        assert "SSH-2.0" not in text  # the kill switch's error text needs a token
    finally:
        await client.close()


# ---------------------------------------------------------------------------------- user ids
async def test_user_ids_are_unreadable_without_read_users_on_every_route(world):
    leaks = {}
    with_ids = set()
    for method, path, rule in _routes(world.app):
        if method != "GET":
            continue
        url = _concrete(path, world)
        for fmt in ("", "?format=csv", "?format=md"):
            r = await world.get(url + fmt, headers=_bearer(TOKENS["read"]))
            text = await r.text()
            assert r.status != 500, (url, fmt)
            found = [i for i in KNOWN_IDS if i in text]
            if found:
                leaks[url + fmt] = found[:3]
            r = await world.get(url + fmt, headers=_bearer(TOKENS["read:users"]))
            text = await r.text()
            if any(i in text for i in KNOWN_IDS):
                with_ids.add(path)
    assert not leaks, leaks
    # ...and they are there for read:users, in each kind of view that holds them.
    assert {"/v1/expectations", "/v1/expectations/{experiment}", "/v1/expectations/{experiment}/history",
            "/v1/experiments/{experiment}", "/v1/incidents/{id}", "/v1/incidents/{id}/blast-radius",
            "/v1/experiments/{experiment}/blast-radius"} <= with_ids, with_ids
    # A write with a `write`-only token does not echo the ids either.
    body = json.dumps({"owner": "crm", "population": {"allowlist": ["new-id-9999", *ALLOWED]}, "severity": "critical"})
    r = await world.put(f"/v1/expectations/{EXP}?dry_run=true", data=body,
                        headers={"Content-Type": "application/json", **_bearer(TOKENS["write"])})
    text = await r.text()
    assert r.status == 200 and "new-id-9999" not in text and "allow-id-0001" not in text
    assert "population.allowlist" in (await r.json())["redacted"][0] or (await r.json())["redacted"]


async def test_every_read_of_user_ids_is_audited_without_the_ids(world, caplog):
    counter = "exposure_detector_user_id_reads_total"
    before = world.metrics.registry.get_sample_value(counter, {"what": "blast radius"}) or 0
    with caplog.at_level(logging.INFO, logger="detector.audit"):
        r = await world.get(f"/v1/experiments/{EXP}/blast-radius", headers=_bearer(TOKENS["read:users"]))
        assert r.status == 200 and OFFENDERS[0] in await r.text()
        await (await world.get(f"/v1/expectations/{EXP}", headers=_bearer(ALL))).read()
        await (await world.get(f"/v1/expectations/{EXP}", headers=_bearer(TOKENS["read"]))).read()  # no ids: no record
    records = [r for r in caplog.records if r.name == "detector.audit"]
    assert [(r.principal, r.what, r.experiment) for r in records] == [
        ("only-read-users", "blast radius", EXP), ("everything", "registration", EXP)]
    assert all(r.levelno == logging.INFO for r in records)
    for rec in records:
        line = rec.getMessage() + json.dumps({k: str(v) for k, v in vars(rec).items()})
        assert not any(i in line for i in KNOWN_IDS), line
    assert world.metrics.registry.get_sample_value(counter, {"what": "blast radius"}) == before + 1


# ------------------------------------------------------------------------------ hostile input
async def test_no_500_on_hostile_input(world, caplog):
    big_cursor = __import__("base64").urlsafe_b64encode(b"99999999999999999999999999999:x").decode().rstrip("=")
    alias_bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    prev = "a"
    for name in "bcdefghi":
        alias_bomb += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]\n"
        prev = name
    alias_bomb += f"? *{prev}\n: 1\n"
    w = {"Content-Type": "application/json", **_bearer(ALL)}
    cases = [
        ("PUT", f"/v1/expectations/{EXP}", b'{"owner": "\\ud800", "population": {"max_users": 1}}', w, 400),
        ("PUT", f"/v1/expectations/{EXP}", b'{"owner": "crm", "population": {"allowlist": ["\\udfff"]}}', w, 400),
        ("PUT", f"/v1/expectations/{EXP}", alias_bomb.encode(), {**w, "Content-Type": "application/yaml"}, 400),
        ("PUT", f"/v1/expectations/{EXP}", b"\xff\xfe", w, 400),
        ("PUT", f"/v1/expectations/{EXP}", b'{"owner": ' * 5000, w, 400),
        ("POST", f"/v1/incidents/{world.incident_id}/ack", b'{"who": "\\udc00"}', w, 400),
        ("POST", f"/v1/incidents/{world.incident_id}/ack", b'{"who": "' + b"x" * 20000 + b'"}', w, 413),
        ("GET", f"/v1/experiments/{EXP}/blast-radius?cursor={big_cursor}", None, _bearer(ALL), 400),
        ("GET", f"/v1/experiments/{EXP}/blast-radius?cursor=" + "A" * 5000, None, _bearer(ALL), 400),
        ("GET", f"/v1/experiments/{EXP}/blast-radius?limit=99999999999999999999", None, _bearer(ALL), 400),
        ("GET", f"/v1/experiments/{EXP}/blast-radius?limit=1e309", None, _bearer(ALL), 400),
        ("GET", "/v1/expectations?cursor=WzE4NDQ2NzQ0MDczNzA5NTUxNjE2XQ", None, _bearer(ALL), 400),
        ("GET", "/v1/expectations?limit=-1", None, _bearer(ALL), 400),
        ("GET", "/v1/incidents?cursor=%ED%A0%80", None, _bearer(ALL), 400),
        ("GET", f"/v1/expectations/{EXP}/history?cursor=WzFd%00", None, _bearer(ALL), 400),
        ("GET", "/v1/expectations/%ED%A0%80", None, _bearer(ALL), 400),
        ("GET", "/v1/experiments/a%0D%0Ab/blast-radius?format=csv", None, _bearer(ALL), 400),
        ("GET", f"/v1/incidents/{world.incident_id}?format=%0D%0A", None, _bearer(ALL), 400),
        ("GET", "/v1/incidents/%00", None, _bearer(ALL), 404),
        ("DELETE", "/v1/incidents", None, _bearer(ALL), 405),
        ("GET", "/v1/nope", None, {}, 404),
    ]
    for method, url, data, headers, status in cases:
        started = time.perf_counter()
        r = await world.request(method, url, data=data, headers=headers)
        body = await r.text()
        assert r.status == status, (method, url[:80], r.status, body[:300])
        assert time.perf_counter() - started < 2, (method, url[:80])
        assert r.headers["Content-Type"].startswith("application/json")
        parsed = json.loads(body)
        assert parsed["error"] and "Traceback" not in body
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_malformed_http_is_logged_once_at_warning_without_traceback(world, caplog):
    host, port = world.server.host, world.server.port
    for raw in (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                b"GET /\x00 HTTP/1.1\r\n\r\n"):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.") and answer[8:13] == b" 400 ", answer[:80]
    await asyncio.sleep(0.1)
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert server and all(r.levelno == logging.WARNING and not r.exc_info for r in server), \
        [(r.levelname, r.getMessage()) for r in server]


async def test_lone_surrogate_registration_is_refused_with_the_field(world):
    r = await world.put(f"/v1/expectations/{EXP}", data=b'{"owner": "crm", "description": "caf\\udce9",'
                        b' "population": {"max_users": 1}}', headers={"Content-Type": "application/json", **_bearer(ALL)})
    body = await r.json()
    assert r.status == 400 and body["errors"][0]["field"] == "(body).description"


# --------------------------------------------------------------------------- blast radius CSV
async def test_blast_radius_csv_escapes_formula_cells(world):
    r = await world.get(f"/v1/experiments/{EXP}/blast-radius?format=csv", headers=_bearer(TOKENS["read:users"]))
    import csv
    import io

    rows = list(csv.reader(io.StringIO(await r.text())))
    cells = [c for row in rows[1:] for c in (row[0], row[2])]
    assert cells and not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
    assert "'=cmd|' /C calc'!A0" in cells and "'+1+1" in cells and "'@SUM(1,1)" in cells and "'-2+3" in cells
    # The JSON form keeps the raw ids (it is not read by spreadsheets).
    page = await (await world.get(f"/v1/experiments/{EXP}/blast-radius?limit=100", headers=_bearer(ALL))).json()
    assert {"=cmd|' /C calc'!A0", "+1+1"} <= {u["user_id"] for u in page["users"]}


def test_content_disposition_from_stream_data_holds_one_safe_filename():
    from detector.web.incidents_api import content_disposition

    for hostile in ('x"; filename="evil.exe', "a\r\nSet-Cookie: s=1", "caf\u00e9\u202e", "../../etc/passwd", ""):
        value = content_disposition(f"{hostile}-blast-radius.csv")
        assert value.count("filename=") == 1 and "\r" not in value and "\n" not in value
        inner = value.split('filename="', 1)[1][:-1]
        assert set(inner) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"), value
        assert not inner.startswith(".")


async def test_incident_blast_radius_csv_with_a_hostile_experiment_name(world):
    """An experiment name from the event stream reaches the header only as a safe filename."""
    hostile = 'e"; filename="evil.exe\r\nSet-Cookie: s=1'
    world.ingest.states[hostile] = world.ingest.states[EXP]
    world.table["inc_hostile"] = {"incident": {"id": "inc_hostile", "experiment": hostile, "rule": "allowlist_breach",
                                               "status": "firing", "timeline": []}, "deliveries": []}
    r = await world.get("/v1/incidents/inc_hostile/blast-radius?format=csv", headers=_bearer(TOKENS["read:users"]))
    assert r.status == 200, await r.text()
    assert r.headers["Content-Disposition"] == 'attachment; filename="e___filename__evil.exe__Set-Cookie__s_1-blast-radius.csv"'
    assert "Set-Cookie" not in r.headers


# ------------------------------------------------------------------------------------ Markdown
async def test_markdown_escapes_input_and_links_only_from_external_url(tmp_path):
    client = await _world(tmp_path, external_url="https://detector.example.org")
    try:
        evil = "[approve](http://evil.invalid) ![x](http://evil.invalid/x.png) <http://evil.invalid>"
        r = await client.post(f"/v1/incidents/{client.incident_id}/ack", json={"who": evil[:120]},
                              headers=_bearer(TOKENS["respond"]))
        assert r.status == 200, await r.text()
        md = await (await client.get(f"/v1/incidents/{client.incident_id}?format=md",
                                     headers={**_bearer(TOKENS["read"]), "Host": "attacker.invalid"})).text()
        assert "attacker.invalid" not in md
        assert "https://detector.example.org/v1/experiments/sec-exp/blast-radius?format=csv" in md
        for line in md.splitlines():
            if "evil.invalid" in line:
                # only inside inline code spans: strip them and nothing of it is left
                import re

                outside = re.sub(r"(`+)(.+?)\1", "", line)
                assert "evil.invalid" not in outside and "](" not in outside, line
    finally:
        await client.close()
    client = await _world(tmp_path)  # no DETECTOR_EXTERNAL_URL: a relative path, never the Host header
    try:
        md = await (await client.get(f"/v1/incidents/{client.incident_id}?format=md",
                                     headers={**_bearer(TOKENS["read"]), "Host": "attacker.invalid"})).text()
        assert "attacker.invalid" not in md and "`/v1/experiments/sec-exp/blast-radius?format=csv" in md
    finally:
        await client.close()


# ------------------------------------------------------------------------------------- paging
async def test_every_list_is_paged_with_a_cursor(world):
    for i in range(230):
        await world.service.put(CompiledRegistration(f"page-{i:03d}", owner="o", max_users=5), "t")
    seen, url, pages = [], "/v1/expectations?limit=100", 0
    while url:
        body = await (await world.get(url, headers=_bearer(TOKENS["read"]))).json()
        seen += [e["experiment"] for e in body["expectations"]]
        url, pages = body["next"], pages + 1
        assert pages < 10
    assert pages == 3 and len(seen) == 231 == len(set(seen)) and seen == sorted(seen)
    body = await (await world.get("/v1/expectations", headers=_bearer(TOKENS["read"]))).json()
    assert body["count"] == 100 and body["total"] == 231 and body["next_cursor"]
    r = await world.get("/v1/incidents?limit=1", headers=_bearer(TOKENS["read"]))
    body = await r.json()
    assert body["count"] == 1 and body["next_cursor"] is None
    r = await world.get(f"/v1/expectations/{EXP}/history?limit=2", headers=_bearer(TOKENS["read"]))
    body = await r.json()
    assert len(body["history"]) == 2 and body["next"]
    rest = await (await world.get(body["next"], headers=_bearer(TOKENS["read"]))).json()
    assert len(rest["history"]) == 1 and rest["next_cursor"] is None


# --------------------------------------------------------------------------------------- tokens
def test_tokens_file_hashes_scopes_and_errors(tmp_path):
    store = auth.load_tokens("env-token", _tokens_file(tmp_path))
    assert store.authenticate(ALL).name == "everything"
    assert store.authenticate("env-token").scopes == frozenset(auth.SCOPES)
    assert store.authenticate(TOKENS["read"]).scopes == {"read"}
    assert store.authenticate(TOKENS["read"] + "x") is None and store.authenticate("") is None
    for bad, message in (
        ([{"name": "a", "token": "short", "scopes": ["read"]}], "at least 16"),
        ([{"name": "a", "token": "x" * 20, "scopes": ["admin"]}], "unknown scope"),
        ([{"name": "a", "token": "x" * 20, "sha256": "00", "scopes": ["read"]}], "exactly one"),
        ([{"name": "a", "sha256": "zz", "scopes": ["read"]}], "64 hex"),
        ([{"name": "a", "token": "x" * 20}], "scopes"),
        ({"tokens": "nope"}, "list"),
    ):
        with pytest.raises(auth.AuthConfigError, match=message):
            auth.parse_tokens(bad)
    with pytest.raises(auth.AuthConfigError, match="cannot read"):
        auth.load_tokens("", str(tmp_path / "missing.yaml"))
    with pytest.raises(auth.AuthConfigError, match="DETECTOR_ANONYMOUS_READ"):
        auth.anonymous_scopes("all")
    import inspect

    assert "hmac.compare_digest" in inspect.getsource(auth.TokenStore.authenticate)


async def test_head_follows_the_get_rule(world):
    assert (await world.head("/healthz")).status == 200
    assert (await world.head(f"/v1/expectations/{EXP}")).status == 401
    assert (await world.head(f"/v1/expectations/{EXP}", headers=_bearer(TOKENS["read"]))).status == 200
    assert (await world.head(f"/v1/experiments/{EXP}/blast-radius", headers=_bearer(TOKENS["read"]))).status == 403
