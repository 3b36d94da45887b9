"""Catching the misconfiguration before anyone is enrolled, end to end on the real broker.

A local HTTP server serves a GrowthBook SDK payload and an Unleash client features response
(ETag / If-None-Match, the Unleash token checked), a flagd file sits in a directory, and one
GrowthBook source is push-only (its SDK webhook). The seed registration of the incident
(allowlist of 5 QA accounts, 50/50) is registered once per flag. With no assignment event at
all, each flag is changed the way the incident happened:

- GrowthBook: the launch rule's `coverage` 0 -> 1.0;
- flagd: the targeting becomes one `fractional` for everyone;
- Unleash: the `flexibleRollout` rollout "0" -> "100";
- GrowthBook by webhook push: the same coverage change in a Standard SDK webhook body.

Each page reaches the webhook receiver within the polling interval plus 2 s and names the
change; fixing the configuration resolves it. A source outage keeps the worker ready, pages
nothing and shows in /readyz and the metrics.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from harness import free_port, wait_until

from detector.simulate import registrations

TOKEN = "e2e-token"
UNLEASH_TOKEN = "default:production.e2e-unleash-client-token"
POLL_S = 0.5
QA = "crm-winback-email-qa"
RULE = "config_exceeds_declaration"
FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "flags" / "fixtures"


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


class FlagServer:
    """A real HTTP server (aiohttp in a thread) serving flag documents with ETags."""

    def __init__(self) -> None:
        self.port = free_port()
        self.docs: dict[str, dict] = {}
        self.down = False
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait(10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def set(self, path: str, doc: dict) -> None:
        with self._lock:
            self.docs[path] = copy.deepcopy(doc)

    def _serve(self, ready: threading.Event) -> None:
        import asyncio
        import hashlib

        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            with self._lock:
                self.requests.append({"path": request.path, "headers": dict(request.headers)})
                doc, down = self.docs.get(request.path), self.down
            if down:
                return web.Response(status=503, text="maintenance")
            if request.path.startswith("/api/client/") and request.headers.get("Authorization") != UNLEASH_TOKEN:
                return web.Response(status=401, text="unauthorized")
            if doc is None:
                return web.Response(status=404)
            body = json.dumps(doc).encode()
            etag = '"' + hashlib.sha1(body).hexdigest() + '"'
            if request.headers.get("If-None-Match") == etag:
                return web.Response(status=304, headers={"ETag": etag})
            return web.Response(body=body, content_type="application/json", headers={"ETag": etag})

        async def main():
            app = web.Application()
            app.router.add_get("/{tail:.*}", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            ready.set()
            while True:
                await asyncio.sleep(3600)

        asyncio.run(main())


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _write_atomically(path: Path, doc: dict) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def test_flag_configuration_changes_page_before_anyone_is_enrolled(workers, receiver, ns, tmp_path):
    server = FlagServer()
    gb_path, un_path = "/api/features/sdk-e2e", "/api/client/features"
    gb_doc, un_doc, fd_doc = (_fixture("growthbook_payload.json"), _fixture("unleash_client_features.json"),
                              _fixture("flagd_flags.json"))
    server.set(gb_path, gb_doc)
    server.set(un_path, un_doc)
    flag_dir = tmp_path / "flagd-configmap"
    flag_dir.mkdir()
    _write_atomically(flag_dir / "flags.json", fd_doc)

    sources = (f"growthbook={server.url(gb_path)},flagd={flag_dir},unleash={server.url(un_path)},"
               "growthbook.push=webhook")
    w = workers(env={"DETECTOR_WEBHOOK_URLS": receiver.url, "DETECTOR_API_TOKEN": TOKEN,
                     "DETECTOR_FLAG_SOURCES": sources, "DETECTOR_FLAG_POLL_INTERVAL": str(POLL_S),
                     "DETECTOR_UNLEASH_API_TOKEN": UNLEASH_TOKEN})
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    # ---- the seed registration, once per flag (the GrowthBook one by the default key) ------------
    seed = registrations(QA, 5)[0]
    regs = {
        QA: seed,  # no `flag`: key = experiment, the first source that has it (growthbook)
        f"{QA}-flagd": {**seed, "experiment": f"{QA}-flagd", "flag": {"source": "flagd", "key": QA}},
        f"{QA}-unleash": {**seed, "experiment": f"{QA}-unleash", "flag": {"source": "unleash", "key": QA}},
        f"{QA}-push": {**seed, "experiment": f"{QA}-push", "flag": {"source": "growthbook.push", "key": QA}},
    }
    for name, reg in regs.items():
        code, body = w.request("PUT", f"/v1/expectations/{name}?confirm=true", json.dumps(reg).encode(), auth)
        assert code in (200, 201), body

    # A flag source this worker is not given is a risk to confirm (409), not silently unchecked.
    code, body = w.request("PUT", f"/v1/expectations/{QA}-typo", json.dumps(
        {**seed, "experiment": f"{QA}-typo", "flag": {"source": "launchdarkly"}}).encode(), auth)
    assert code == 409 and [r["code"] for r in body["risks"]] == ["unknown_flag_source"], body

    def judged(name, state):
        code, body = w.get("/v1/flags")
        v = body.get("experiments", {}).get(name) if code == 200 else None
        return v if v and v.get("state") == state else None

    for name in (QA, f"{QA}-flagd", f"{QA}-unleash"):
        wait_until(lambda n=name: judged(n, "within"), 30, 0.1, f"{name} judged within its declaration")
    assert judged(QA, "within")["source"] == "growthbook"
    assert any(r["path"] == un_path and r["headers"].get("Authorization") == UNLEASH_TOKEN for r in server.requests)
    assert any("If-None-Match" in r["headers"] for r in server.requests if r["path"] == gb_path)
    assert not receiver.bodies(), receiver.bodies()

    def page_for(experiment, status="firing"):
        return lambda b: b.get("experiment") == experiment and b.get("rule") == RULE and b.get("status") == status

    def received_at(body):
        return next(r["at"] for r in receiver.requests if r["body"] is body)

    latencies = {}

    # ---- GrowthBook: coverage 0 -> 1.0 on the launch rule ---------------------------------------
    bad = copy.deepcopy(gb_doc)
    changed = time.time()
    bad["features"][QA]["rules"][1]["coverage"] = 1.0
    bad["dateUpdated"] = _iso(changed)
    server.set(gb_path, bad)
    [page] = receiver.wait_for(page_for(QA), timeout=POLL_S + 10)
    latencies["growthbook"] = received_at(page) - changed
    assert latencies["growthbook"] < POLL_S + 2.0, latencies
    assert "allowlist-only" in page["summary"] and "fr_launch" in page["summary"]
    assert "0% of eligible traffic" in page["observed"]["before"]
    assert "100% of eligible traffic" in page["observed"]["configuration"]
    assert page["observed"]["expected_blast_radius"].startswith("100% of eligible traffic")
    assert page["observed"]["first_user_at"] is None  # nobody enrolled yet: no assignment event at all
    assert page["severity"] == "critical"

    code, inc = w.get(f"/v1/incidents/{page['incident_id']}")
    assert code == 200, inc
    kinds = [e["kind"] for e in inc["timeline"]]
    assert kinds.index("configuration_changed") < kinds.index("detection") < kinds.index("notification_queued"), kinds
    changed_entry = inc["timeline"][kinds.index("configuration_changed")]
    assert changed_entry["at_ms"] == int(changed * 1000)  # the payload's dateUpdated
    assert "fr_launch" in changed_entry["detail"]["after"]
    code, body = w.get("/v1/experiments/" + QA + "/blast-radius")
    assert code in (200, 404)  # the engine saw no events for it

    server.set(gb_path, gb_doc)  # the fix
    receiver.wait_for(page_for(QA, "resolved"), timeout=POLL_S + 10)
    code, inc = w.get(f"/v1/incidents/{page['incident_id']}")
    assert inc["status"] == "resolved" and inc["resolved_by"] == "configuration_fixed", inc

    # ---- flagd: one fractional for everyone ------------------------------------------------------
    bad = copy.deepcopy(fd_doc)
    bad["flags"][QA]["targeting"] = {"fractional": [["control", 50], ["treatment", 50]]}
    changed = time.time()
    _write_atomically(flag_dir / "flags.json", bad)
    [page] = receiver.wait_for(page_for(f"{QA}-flagd"), timeout=POLL_S + 10)
    latencies["flagd"] = received_at(page) - changed
    assert latencies["flagd"] < POLL_S + 2.0, latencies
    assert "flagd:crm-winback-email-qa" in page["summary"] and "fractional" in page["summary"]
    assert "5 listed user(s)" in page["observed"]["before"]
    _write_atomically(flag_dir / "flags.json", fd_doc)
    receiver.wait_for(page_for(f"{QA}-flagd", "resolved"), timeout=POLL_S + 10)

    # ---- Unleash: flexibleRollout "0" -> "100" --------------------------------------------------
    bad = copy.deepcopy(un_doc)
    bad["features"][0]["strategies"][1]["parameters"]["rollout"] = "100"
    changed = time.time()
    server.set(un_path, bad)
    [page] = receiver.wait_for(page_for(f"{QA}-unleash"), timeout=POLL_S + 10)
    latencies["unleash"] = received_at(page) - changed
    assert latencies["unleash"] < POLL_S + 2.0, latencies
    assert "unleash:crm-winback-email-qa" in page["summary"] and "flexibleRollout" in page["summary"]
    server.set(un_path, un_doc)
    receiver.wait_for(page_for(f"{QA}-unleash", "resolved"), timeout=POLL_S + 10)

    # ---- GrowthBook SDK webhook (push-only source): the write scope, then the same change -------
    def push(doc):
        body = {"type": "payload.changed", "timestamp": _iso(time.time()), "data": {"payload": json.dumps(doc)}}
        return w.request("POST", "/v1/flag-sources/growthbook.push/webhook", json.dumps(body).encode(), auth)

    code, _ = w.request("POST", "/v1/flag-sources/growthbook.push/webhook", b"{}", {"Content-Type": "application/json"})
    assert code == 401
    assert push(gb_doc) == (202, {"status": "applied"})
    wait_until(lambda: judged(f"{QA}-push", "within"), 10, 0.1, "pushed configuration judged")
    bad = copy.deepcopy(gb_doc)
    bad["features"][QA]["rules"][1]["coverage"] = 1.0
    bad.pop("dateUpdated")
    changed = time.time()
    assert push(bad)[0] == 202
    [page] = receiver.wait_for(page_for(f"{QA}-push"), timeout=10)
    latencies["webhook"] = received_at(page) - changed
    assert latencies["webhook"] < 2.0, latencies
    assert push(gb_doc)[0] == 202
    receiver.wait_for(page_for(f"{QA}-push", "resolved"), timeout=10)

    # ---- a source outage: still ready, nothing pages, /readyz and the metric say so ---------------
    pages_before = len(receiver.bodies())
    server.down = True
    def outage():
        code, body = w.get("/readyz")
        src = (body.get("flag_sources") or {}).get("growthbook", {}) if isinstance(body, dict) else {}
        return code == 200 and src.get("status") == "unreachable" and "HTTP 503" in (src.get("error") or "") and body
    wait_until(outage, 10, 0.1, "/readyz reporting the growthbook source unreachable")
    code, metrics = w.get("/metrics")
    assert 'exposure_detector_flag_source_up{source="growthbook"} 0.0' in metrics
    assert 'exposure_detector_flag_source_up{source="flagd"} 1.0' in metrics
    time.sleep(3 * POLL_S)
    assert len(receiver.bodies()) == pages_before  # an unreachable source pages nothing, resolves nothing
    assert judged(QA, "within")  # judged on the last good configuration
    server.down = False
    wait_until(lambda: (b := w.get("/readyz")[1]) and b["flag_sources"]["growthbook"]["status"] == "ok", 10, 0.1,
               "growthbook source back")

    # Nothing was ever enrolled: the assignments topic is empty, and only our rule paged.
    assert {b["rule"] for b in receiver.bodies()} == {RULE}
    print("\nE2E flags: page after the change (s): " + ", ".join(f"{k} {v:.2f}" for k, v in latencies.items()))


def test_the_page_quotes_users_a_day_at_the_current_rate(workers, receiver, producer, ns, tmp_path):
    """With traffic (200 users evaluated and not enrolled over 30 minutes of event time), the page
    quotes the expected blast radius in users a day at that rate; judging every poll pages once."""
    server = FlagServer()
    gb_path = "/api/features/sdk-e2e"
    gb_doc = _fixture("growthbook_payload.json")
    server.set(gb_path, gb_doc)
    w = workers(env={"DETECTOR_WEBHOOK_URLS": receiver.url, "DETECTOR_API_TOKEN": TOKEN,
                     "DETECTOR_FLAG_SOURCES": f"growthbook={server.url(gb_path)}",
                     "DETECTOR_FLAG_POLL_INTERVAL": str(POLL_S)})
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    code, body = w.request("PUT", f"/v1/expectations/{QA}?confirm=true", json.dumps(registrations(QA, 5)[0]).encode(), auth)
    assert code in (200, 201), body
    now_ms = int(time.time() * 1000)
    first, last = now_ms - 30 * 60_000, now_ms - 1_000
    stamps = [first + (last - first) * i // 199 for i in range(200)]
    producer.send_events({"experiment": QA, "user_id": f"u-{i:05d}", "variant": None, "enrolled": False, "ts": ts}
                         for i, ts in enumerate(stamps))
    wait_until(lambda: (r := w.get(f"/v1/experiments/{QA}"))[0] == 200
               and r[1]["comparison"]["eligible_users"]["observed"] == 200, 30, 0.2, "200 eligible users")
    wait_until(lambda: w.get("/v1/flags")[1].get("experiments", {}).get(QA, {}).get("state") == "within", 15, 0.1,
               "judged within")

    bad = copy.deepcopy(gb_doc)
    bad["features"][QA]["rules"][1]["coverage"] = 1.0
    server.set(gb_path, bad)
    [page] = receiver.wait_for(lambda x: x.get("experiment") == QA and x.get("rule") == RULE, timeout=POLL_S + 10)
    per_day = round(200 * 86_400_000 / (last - first))
    assert page["observed"]["expected_blast_radius"] == \
        f"100% of eligible traffic; about {per_day:,} users a day at the current rate", page["observed"]
    time.sleep(6 * POLL_S)  # judged again at every poll meanwhile: still one page
    firing = [x for x in receiver.bodies() if x.get("rule") == RULE and x.get("status") == "firing"]
    assert len(firing) == 1, firing
    server.set(gb_path, gb_doc)
    receiver.wait_for(lambda x: x.get("experiment") == QA and x.get("rule") == RULE and x.get("status") == "resolved",
                      timeout=POLL_S + 10)
    assert {x["rule"] for x in receiver.bodies()} == {RULE}  # not-enrolled traffic breaches nothing


def test_two_workers_read_the_source_and_the_owner_alone_pages(workers, receiver, ns):
    """Every worker judges the configuration; only the owner of the experiment's partition feeds its
    lifecycle, so the fleet pages once (and resolves once)."""
    server = FlagServer()
    gb_path = "/api/features/sdk-e2e"
    gb_doc = _fixture("growthbook_payload.json")
    server.set(gb_path, gb_doc)
    env = {"DETECTOR_WEBHOOK_URLS": receiver.url, "DETECTOR_API_TOKEN": TOKEN, "DETECTOR_SESSION_TIMEOUT": "6",
           "DETECTOR_FLAG_SOURCES": f"growthbook={server.url(gb_path)}", "DETECTOR_FLAG_POLL_INTERVAL": str(POLL_S)}
    a, b = workers(env=env, name="a"), workers(env=env, name="b")

    def split():
        ready = [w.get("/readyz") for w in (a, b)]
        pa, pb = (body.get("partitions") or [] for _, body in ready)
        return all(code == 200 for code, _ in ready) and pa and pb and sorted(pa + pb) == list(range(ns.partitions))
    wait_until(split, 60, 0.2, "the two workers sharing the partitions")
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    reg = json.dumps(registrations(QA, 5)[0]).encode()
    # The fleet answers 503 while its group settles: ask again.
    wait_until(lambda: a.request("PUT", f"/v1/expectations/{QA}?confirm=true", reg, auth)[0] in (200, 201), 30, 0.5,
               "the registration accepted")
    for w in (a, b):
        wait_until(lambda w=w: w.get("/v1/flags")[1].get("experiments", {}).get(QA, {}).get("state") == "within",
                   30, 0.1, "judged within on both workers")

    bad = copy.deepcopy(gb_doc)
    bad["features"][QA]["rules"][1]["coverage"] = 1.0
    server.set(gb_path, bad)
    receiver.wait_for(lambda x: x.get("experiment") == QA and x.get("rule") == RULE, timeout=POLL_S + 10)
    for w in (a, b):
        wait_until(lambda w=w: w.get("/v1/flags")[1]["experiments"][QA]["state"] == "exceeds", 10, 0.1, "both judged")
    time.sleep(6 * POLL_S)
    firing = [x for x in receiver.bodies() if x.get("rule") == RULE and x.get("status") == "firing"]
    assert len(firing) == 1, firing
    server.set(gb_path, gb_doc)
    receiver.wait_for(lambda x: x.get("rule") == RULE and x.get("status") == "resolved", timeout=POLL_S + 10)
    time.sleep(4 * POLL_S)
    assert [x["status"] for x in receiver.bodies() if x.get("rule") == RULE] == ["firing", "resolved"]
