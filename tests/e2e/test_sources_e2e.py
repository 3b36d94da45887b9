"""Several sources at once on the real broker: the seed incident spread over four ways in.

The incident of `detector simulate incident` (a QA experiment for an allowlist of 5 accounts
rolled out to everyone; 250 real users enrolled) arrives over the native topic, PostHog
`$feature_flag_called` events, LaunchDarkly Data Export `feature` events (multi-kind contexts,
the `user` kind configured) and the HTTP collector. A third of the users are seen by two
sources. Done when the worker opens ONE allowlist incident whose blast radius is exactly the 250
users (deduplicated across sources by the configured identity), and every record is accounted
for: not-exposures counted, malformed records dead-lettered, the collector answering rejects
with their index and reason.
"""

from __future__ import annotations

import json
import random
import urllib.request

from harness import now_ms, wait_until

from detector.simulate import QA_EXPERIMENT as QA
from detector.simulate import qa_accounts, register_via_api, registrations, wait_registered

TOKEN = "e2e-sources-token"
SOURCES = "exposure.assignments=native,posthog.events=posthog:identity=distinct_id,ld.export=launchdarkly:context_kind=user"


def _native(user: str, variant: str, ts: int) -> dict:
    return {"experiment": QA, "user_id": user, "variant": variant, "enrolled": True, "ts": ts}


def _posthog(user: str, variant: str, ts: int) -> dict:
    return {"uuid": f"ph-{user}", "event": "$feature_flag_called", "distinct_id": user,
            "properties": {"$feature_flag": QA, "$feature_flag_response": variant, "$lib": "posthog-node"},
            "timestamp": ts}


def _launchdarkly(user: str, variant: str, ts: int) -> dict:
    return {"kind": "feature", "creationDate": ts, "key": QA, "version": 7,
            "contextKeys": {"user": user, "organization": "org-acme"},
            "variation": 0 if variant == "control" else 1, "value": variant, "default": "control",
            "reason": {"kind": "FALLTHROUGH", "inExperiment": True}}


def _post(url: str, path: str, body: bytes, token: str | None = TOKEN) -> tuple[int, dict]:
    req = urllib.request.Request(url + path, data=body, method="POST",
                                 headers={"Content-Type": "application/x-ndjson",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_seed_incident_over_native_posthog_launchdarkly_and_http(workers, ns, producer):
    w = workers(env={"DETECTOR_API_TOKEN": TOKEN, "DETECTOR_SOURCES": SOURCES})
    register_via_api(w.url, TOKEN, registrations()[:1])
    wait_registered(w.url, [QA])

    rng = random.Random(19)
    ts = now_ms()
    offenders = [f"u-{rng.randrange(10**8):08d}" for _ in range(250)]
    assert len(set(offenders)) == 250
    channels: dict[str, list[tuple[str, str]]] = {"native": [], "posthog": [], "launchdarkly": [], "http": []}
    names = list(channels)
    for u in qa_accounts(5):
        channels["native"].append((u, "treatment"))
    for i, u in enumerate(offenders):
        variant = rng.choice(["control", "treatment"])
        channels[names[i % 4]].append((u, variant))
        if i % 3 == 0:  # the same person seen by a second source, under the same identity
            channels[names[(i + 1) % 4]].append((u, variant))

    # The HTTP collector first: auth, then a body with one bad record among good ones.
    nd = b"\n".join(json.dumps(_native(u, v, ts)).encode() for u, v in channels["http"])
    assert _post(w.url, "/v1/assignments", nd, token=None)[0] == 401
    assert _post(w.url, "/v1/assignments", nd, token="wrong")[0] == 401
    bad = b'{"experiment": "' + QA.encode() + b'", "variant": "control"}'
    code, body = _post(w.url, "/v1/assignments", nd + b"\n" + bad)
    assert code == 202, body
    assert body["accepted"] == len(channels["http"])
    [rej] = body["rejected"]
    assert rej["index"] == len(channels["http"]) and "user_id" in rej["reason"], rej
    # A platform shape through /v1/sources/{format}: a $pageview is reported, not dropped silently.
    code, body = _post(w.url, "/v1/sources/posthog", json.dumps(
        [{"event": "$pageview", "distinct_id": "u-x", "properties": {}}]).encode())
    assert code == 202 and body == {"accepted": 0, "rejected": [], "not_exposure": [0]}, body

    producer.send_events([_native(u, v, ts) for u, v in channels["native"]])
    for u, v in channels["posthog"]:  # PostHog keys its export by person, not by experiment
        producer.p.send(ns.topic("posthog.events"), key=u.encode(), value=json.dumps(_posthog(u, v, ts)).encode())
    producer.p.send(ns.topic("posthog.events"), key=b"x", value=json.dumps(
        {"event": "$pageview", "distinct_id": "u-1", "properties": {"$current_url": "/"}}).encode())
    for u, v in channels["launchdarkly"]:
        producer.p.send(ns.topic("ld.export"), key=None, value=json.dumps(_launchdarkly(u, v, ts)).encode())
    producer.p.send(ns.topic("ld.export"), key=None, value=b'{"kind": "feature", "key": 42}')  # malformed
    producer.p.send(ns.topic("ld.export"), key=None, value=json.dumps(
        {"kind": "feature", "creationDate": ts, "key": QA, "contextKeys": {"device": "d-1"}, "variation": 1,
         "value": "treatment"}).encode())  # no `user` context: no_identity, counted
    producer.p.flush()

    def blast_radius_complete():
        code, listing = w.get(f"/v1/incidents?experiment={QA}")
        if code != 200:
            return None
        breaches = [i for i in listing["incidents"] if i["rule"] == "allowlist_breach"]
        return listing if breaches and breaches[0]["blast_radius"]["count"] >= 250 else None

    listing = wait_until(blast_radius_complete, 60, 0.2, "the allowlist incident with 250 users")
    breaches = [i for i in listing["incidents"] if i["rule"] == "allowlist_breach"]
    assert len(breaches) == 1, listing  # one incident, not one per source
    assert breaches[0]["blast_radius"]["count"] == 250

    code, body = w.get(f"/v1/incidents/{breaches[0]['id']}/blast-radius?limit=1000")
    assert code == 200 and body["rule"] == "allowlist_breach" and body["count"] == 250, body
    ids = [u["user_id"] for u in body["users"]]
    assert len(ids) == 250 and set(ids) == set(offenders)  # exact: deduplicated, no QA account

    def source_metrics():
        code, _ = w.get("/healthz")
        with urllib.request.urlopen(f"{w.url}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        lines = [ln for ln in text.splitlines() if ln.startswith("exposure_detector_source_")]
        return lines if any("records_rejected_total" in ln and "ld.export" in ln for ln in lines) else None

    lines = wait_until(source_metrics, 30, 0.5, "per-source metrics")

    def value(name: str, **labels: str) -> float:
        want = [f'{k}="{v}"' for k, v in labels.items()]
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines
                   if ln.startswith(f"exposure_detector_source_{name}{{") and all(x in ln for x in want))

    ph, ld = ns.topic("posthog.events"), ns.topic("ld.export")
    assert value("records_read_total", topic=ph, format="posthog") == len(channels["posthog"]) + 1
    assert value("records_decoded_total", topic=ph, format="posthog") == len(channels["posthog"])
    assert value("records_not_exposure_total", topic=ph, format="posthog") == 1
    assert value("records_decoded_total", topic=ld, format="launchdarkly") == len(channels["launchdarkly"])
    assert value("records_rejected_total", topic=ld, format="launchdarkly", reason="invalid_field") == 1
    assert value("records_rejected_total", topic=ld, format="launchdarkly", reason="no_identity") == 1
    assert value("records_rejected_total", topic="http", format="native") == 1
    assert value("lag", topic=ld, format="launchdarkly") == 0
