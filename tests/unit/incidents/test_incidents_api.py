"""The incident-response HTTP API on a real aiohttp server, with the real lifecycle and engine."""

from __future__ import annotations

import csv
import io

import pytest
from aiohttp.test_utils import TestClient, TestServer

from detector.alerts.lifecycle import LifecycleConfig
from detector.engine import ExperimentState, process_batch
from detector.events import Assignment
from detector.registration.compiled import CompiledRegistration
from detector.settings import Topics
from detector.shell.courier import fold_timeline
from detector.shell.outbox import AlertPublisher
from detector.web.incidents_api import add_routes
from detector.web.middleware import secure_app

T0 = 1_700_000_000_000
EXP = CompiledRegistration("qa-exp", owner="crm", allowlist=frozenset({"qa-1", "qa-2"}), severity="critical")


class FakeProducer:
    def __init__(self):
        self.sent = []

    async def send(self, topic, key=None, value=None, **kw):
        self.sent.append((topic, key, value))


class Registrations:
    def __init__(self, exps, history=None):
        self.exps, self._history = exps, history or {}

    def get(self, experiment):
        return self.exps.get(experiment)

    def history(self, experiment):
        return self._history.get(experiment, [])


class Ingest:
    def __init__(self, states, partitions=1):
        self.states = states
        self.partitions = {p: None for p in range(partitions)}
        self.settings = type("S", (), {"partitions": partitions})()

    def state_of(self, experiment):
        return self.states.get(experiment)


@pytest.fixture
async def api():
    st = ExperimentState.new("qa-exp")
    evs = [Assignment("qa-exp", "qa-1", "a", True, T0), Assignment("qa-exp", "qa-2", "b", True, T0 + 1)]
    evs += [Assignment("qa-exp", f"u{i}", "a", True, T0 + 100 + i) for i in range(30)]
    findings = process_batch(st, EXP, evs)
    assert findings
    pub = AlertPublisher(LifecycleConfig(group_wait_ms=0), {"qa-exp": EXP}.get, Topics("t."))
    pub.producer = FakeProducer()
    await pub.on_findings(0, findings, (T0 + 200) / 1000)
    await pub.tick((T0 + 300) / 1000)
    [inc] = list(pub.incidents())
    table = {inc.id: fold_timeline(None, {"delivery": {
        "sink": "ops-webhook", "notification_id": f"{inc.id}:firing:1", "incident_id": inc.id, "status": "delivered",
        "attempts": 1, "http_status": 200, "duration_ms": 12.5, "error": None, "finished_at": T0 + 350,
        "notification_status": "firing", "notification_kind": "firing"}})}
    table[inc.id]["incident"] = None  # the snapshot comes from the local lifecycle
    app = secure_app(api_token="s3cret")
    clock = [T0 / 1000 + 10]
    add_routes(app.router, publisher=pub, incidents=table, ingest=Ingest({"qa-exp": st}),
               registrations=Registrations({"qa-exp": EXP}), clock=lambda: clock[0])
    client = TestClient(TestServer(app))
    await client.start_server()
    _get = client.get
    client.get = lambda path, **kw: _get(path, **{"headers": {"Authorization": "Bearer s3cret"}, **kw})
    client.incident_id = inc.id
    client.publisher = pub
    try:
        yield client
    finally:
        await client.close()


AUTH = {"Authorization": "Bearer s3cret"}


async def test_list_and_get_with_merged_timeline(api):
    r = await api.get("/v1/incidents?experiment=qa-exp&status=firing")
    body = await r.json()
    assert r.status == 200 and body["count"] == 1
    [item] = body["incidents"]
    assert item["id"] == api.incident_id and item["rule"] == "allowlist_breach"
    assert "timeline" not in item and item["blast_radius"]["count"] == 30
    assert (await (await api.get("/v1/incidents?status=resolved")).json())["count"] == 0

    r = await api.get(f"/v1/incidents/{api.incident_id}")
    inc = await r.json()
    assert {"id", "experiment", "rule", "status", "timeline", "deliveries"} <= set(inc)
    kinds = [e["kind"] for e in inc["timeline"]]
    assert kinds == ["first_offending_event", "detection", "notification_queued", "delivery"]
    assert inc["timeline"][-1]["detail"]["http_status"] == 200
    assert inc["timeline"][0]["at"] == "2023-11-14T22:13:20.100Z"
    assert inc["detection_latency_ms"] == 100  # incident opened at T0+200, first offender at T0+100

    r = await api.get(f"/v1/incidents/{api.incident_id}?format=md")
    md = await r.text()
    assert r.headers["Content-Type"].startswith("text/markdown")
    assert md.startswith(f"## Incident {api.incident_id}: allowlist_breach in `qa-exp`")
    assert "| Notification delivery | ops-webhook: delivered HTTP 200 after 1 attempt(s)" in md
    assert (await api.get("/v1/incidents/nope")).status == 404
    assert (await api.get(f"/v1/incidents/{api.incident_id}?format=pdf")).status == 400


async def test_ack_needs_token_and_who_then_resolve(api):
    url = f"/v1/incidents/{api.incident_id}/ack"
    assert (await api.post(url, json={"who": "alice"})).status == 401
    assert (await api.post(url, json={"who": "alice"}, headers={"Authorization": "Bearer wrong"})).status == 401
    r = await api.post(url, headers=AUTH)
    assert r.status == 400 and (await r.json())["errors"][0]["field"] == "who"
    assert (await api.post(url, data=b"[1]", headers=AUTH)).status == 400
    r = await api.post(url, json={"who": "alice"}, headers=AUTH)
    body = await r.json()
    assert r.status == 200 and body["action"] == "acknowledged"
    assert body["incident"]["acknowledged_by"] == "alice"
    assert body["incident"]["timeline"][-1]["kind"] == "acknowledged"
    # who is what the caller says; the credential that made the call is recorded beside it
    token = body["incident"]["timeline"][-1]["detail"].get("token")
    assert token and token != "alice"
    r = await api.post(url, headers={**AUTH, "X-Detector-User": "bob"})
    assert (await r.json())["action"] == "unchanged"
    # the snapshot went to exposure.timeline for the other workers' views
    assert any(t == "t.exposure.timeline" for t, _, _ in api.publisher.producer.sent)

    r = await api.post(f"/v1/incidents/{api.incident_id}/resolve", headers={**AUTH, "X-Detector-User": "bob"})
    body = await r.json()
    assert r.status == 200 and body["action"] == "resolved"
    assert body["incident"]["status"] == "resolved" and body["incident"]["resolved_by"] == "operator:bob"
    assert [e["kind"] for e in body["incident"]["timeline"]][-2:] == ["resolution", "notification_queued"]
    assert body["incident"]["timeline"][-2]["detail"]["by"] == "operator:bob"
    assert body["incident"]["timeline"][-2]["detail"]["token"] == token
    assert any(t == "t.exposure.alerts" and b"resolved" in v for t, _, v in api.publisher.producer.sent)
    r = await api.post(url, json={"who": "alice"}, headers=AUTH)
    assert r.status == 409
    r = await api.post(f"/v1/incidents/{api.incident_id}/resolve", json={"who": "bob"}, headers=AUTH)
    assert (await r.json())["action"] == "unchanged"
    assert (await api.post("/v1/incidents/nope/ack", json={"who": "a"}, headers=AUTH)).status == 404


async def test_writes_refused_when_no_token_configured():
    app = secure_app()
    add_routes(app.router, publisher=None, incidents={}, ingest=Ingest({}), registrations=Registrations({}))
    async with TestClient(TestServer(app)) as c:
        r = await c.post("/v1/incidents/x/ack", json={"who": "a"}, headers=AUTH)
        assert r.status == 503


async def test_blast_radius_json_pages_csv_and_incident_scope(api):
    r = await api.get("/v1/experiments/qa-exp/blast-radius?limit=20")
    page = await r.json()
    assert r.status == 200 and page["count"] == 20 and page["summary"]["total"] == 30
    assert page["users"][0] == {"user_id": "u0", "first_seen_at": "2023-11-14T22:13:20.100Z",
                                "first_seen_ms": T0 + 100, "variant": "a", "rules": ["allowlist_breach"]}
    r2 = await api.get(page["next"])
    page2 = await r2.json()
    assert [u["user_id"] for u in page2["users"]] == [f"u{i}" for i in range(20, 30)] and page2["next_cursor"] is None

    r = await api.get("/v1/experiments/qa-exp/blast-radius?format=csv")
    assert r.headers["Content-Type"].startswith("text/csv")
    assert r.headers["X-Blast-Radius-Complete"] == "true"
    rows = list(csv.reader(io.StringIO(await r.text())))
    assert rows[0][0] == "user_id" and len(rows) == 31 and "qa-1" not in {r[0] for r in rows}

    r = await api.get(f"/v1/incidents/{api.incident_id}/blast-radius")
    assert (await r.json())["rule"] == "allowlist_breach"

    assert (await api.get("/v1/experiments/qa-exp/blast-radius?cursor=garbage")).status == 400
    assert (await api.get("/v1/experiments/qa-exp/blast-radius?limit=0")).status == 400
    assert (await api.get("/v1/experiments/qa-exp/blast-radius?format=xml")).status == 400
    assert (await api.get("/v1/experiments/unknown/blast-radius")).status == 404
    assert (await api.get("/v1/experiments/-bad/blast-radius")).status == 400
