"""Each sink's wire format, checked field by field."""

from __future__ import annotations

import orjson
import pytest

from alerts_fixtures import finding
from detector.alerts.fingerprint import FNV64_OFFSET, label_fingerprint, label_fingerprint_hex
from detector.alerts.lifecycle import Lifecycle, LifecycleConfig
from detector.alerts.sinks import SINK_TYPES, build_sink
from detector.alerts.sinks.alertmanager_webhook import ZERO_TIME

T0 = 1_612_893_600_000  # 2021-02-09T18:00:00Z
REG = {"subs-mvp-crm-qa": {"owner": "subscriptions", "labels": {"team": "crm", "tier-1": "yes"}}}


@pytest.fixture
def pair():
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0))
    [firing] = lc.on_findings([finding(count=250, first_at=T0 - 1500, detected_at=T0 - 500)], T0, registrations=REG)
    [resolved] = lc.resolve(firing.incident_id, "alice", T0 + 60_000)
    return firing, resolved


def sink(kind, **spec):
    env = {"PD_KEY": "routing-key-123"}
    return build_sink(f"my-{kind}", {"type": kind, "url": "http://127.0.0.1:9/x", **spec}, env,
                      external_url="https://detector.example")


def body(req):
    return orjson.loads(req.body)


def test_registry_has_one_class_per_type():
    assert set(SINK_TYPES) == {"webhook", "alertmanager_webhook", "alertmanager", "pagerduty", "slack"}
    with pytest.raises(ValueError):
        build_sink("x", {"type": "carrier-pigeon", "url": "http://x"}, {})


def test_fnv1a_fingerprint_matches_prometheus_common_reference_values():
    # Values from prometheus/common model/signature_test.go (FNV-1a era).
    assert label_fingerprint({}) == FNV64_OFFSET == 14695981039346656037
    assert label_fingerprint({"name": "garland, briggs", "fear": "love is not enough"}) == 5799056148416392346
    assert label_fingerprint_hex({"name": "garland, briggs", "fear": "love is not enough"}) == "507a62d79ee76c9a"
    # order independent; the separator separates
    assert label_fingerprint({"a": "b", "c": "d"}) == label_fingerprint({"c": "d", "a": "b"})
    assert label_fingerprint({"a": "bc", "": "d"}) != label_fingerprint({"a": "b", "c": "d"})


def _reference_fnv(labels):
    """Independent FNV-1a 64 over the whole sorted `name\\xffvalue\\xff` buffer."""
    buf = b"".join(k.encode() + b"\xff" + v.encode() + b"\xff" for k, v in sorted(labels.items()))
    h = 0xCBF29CE484222325
    for b in buf:
        h = ((h ^ b) * 0x100000001B3) % 2**64
    return f"{h:016x}"


def test_webhook_exposure_alert_v1(pair):
    firing, resolved = pair
    req = sink("webhook").build_request(firing)
    assert req.method == "POST" and req.headers["Content-Type"] == "application/json"
    doc = body(req)
    assert doc["schema"] == "exposure-alert/v1"
    for key in ("id", "status", "experiment", "rule", "severity", "summary", "started_at", "ended_at",
                "first_offending_event_at", "detected_at", "observed", "expected", "blast_radius"):
        assert key in doc
    assert doc["id"] == firing.id and doc["status"] == "firing" and doc["ended_at"] is None
    assert doc["first_offending_event_at"] == "2021-02-09T17:59:58.500Z"
    assert doc["detected_at"] == "2021-02-09T17:59:59.500Z"
    assert doc["blast_radius"]["count"] == 250 and len(doc["blast_radius"]["sample_ids"]) == 10
    assert doc["owner"] == "subscriptions"
    assert doc["links"]["incident"] == f"https://detector.example/incidents/{firing.incident_id}"  # the console page
    assert doc["links"]["api"] == f"https://detector.example/v1/incidents/{firing.incident_id}"
    done = body(sink("webhook").build_request(resolved))
    assert done["status"] == "resolved" and done["ended_at"] == "2021-02-09T18:01:00.000Z"
    assert done["resolved_by"] == "operator:alice"


def test_alertmanager_webhook_v4(pair):
    firing, resolved = pair
    msg = body(sink("alertmanager_webhook").build_request(firing))
    assert set(msg) == {"receiver", "status", "alerts", "groupLabels", "commonLabels", "commonAnnotations",
                        "externalURL", "version", "groupKey", "truncatedAlerts"}
    assert msg["version"] == "4" and msg["status"] == "firing" and msg["receiver"] == "my-alertmanager_webhook"
    [alert] = msg["alerts"]
    assert set(alert) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert alert["labels"] == {"alertname": "ExposureAnomaly", "experiment": "subs-mvp-crm-qa",
                               "rule": "allowlist_breach", "severity": "critical", "owner": "subscriptions",
                               "team": "crm", "tier_1": "yes"}
    assert alert["fingerprint"] == _reference_fnv(alert["labels"]) == label_fingerprint_hex(alert["labels"])
    assert alert["endsAt"] == ZERO_TIME and alert["startsAt"] == "2021-02-09T18:00:00.000Z"
    assert msg["groupLabels"] == {"experiment": "subs-mvp-crm-qa"}
    assert msg["groupKey"] == '{}:{experiment="subs-mvp-crm-qa"}'
    assert alert["annotations"]["incident_id"] == firing.incident_id
    res = body(sink("alertmanager_webhook").build_request(resolved))
    assert res["status"] == "resolved" and res["alerts"][0]["endsAt"] == "2021-02-09T18:01:00.000Z"
    assert res["alerts"][0]["fingerprint"] == alert["fingerprint"], "same alert, same fingerprint"


def test_alertmanager_push(pair):
    firing, resolved = pair
    s = sink("alertmanager", url="http://127.0.0.1:9093/")
    req = s.build_request(firing)
    assert req.url == "http://127.0.0.1:9093/api/v2/alerts"
    [alert] = body(req)
    assert alert["labels"]["alertname"] == "ExposureAnomaly"
    assert "endsAt" not in alert, "firing: Alertmanager applies resolve_timeout; refreshes keep it alive"
    assert alert["generatorURL"].endswith(firing.incident_id)
    [gone] = body(s.build_request(resolved))
    assert gone["endsAt"] == "2021-02-09T18:01:00.000Z" and gone["labels"] == alert["labels"]
    assert s.wants_refresh and not sink("webhook").wants_refresh
    [ttl] = body(sink("alertmanager", alert_ttl="10m").build_request(firing))
    assert ttl["endsAt"] == "2021-02-09T18:10:00.000Z"


def test_pagerduty_events_v2(pair):
    firing, resolved = pair
    s = sink("pagerduty", routing_key_env="PD_KEY")
    ev = body(s.build_request(firing))
    assert ev["event_action"] == "trigger" and ev["routing_key"] == "routing-key-123"
    assert ev["dedup_key"] == firing.incident_id
    p = ev["payload"]
    assert p["severity"] == "critical" and p["source"] == "exposure-detector" and len(p["summary"]) <= 1024
    assert p["component"] == "subs-mvp-crm-qa" and p["class"] == "allowlist_breach"
    assert p["custom_details"]["blast_radius"] == 250
    assert ev["links"][0]["href"].endswith(firing.incident_id)
    rv = body(s.build_request(resolved))
    assert rv == {"routing_key": "routing-key-123", "event_action": "resolve", "dedup_key": firing.incident_id}
    assert [s.classify(c, {}) for c in (202, 400, 401, 429, 500, 503)] == ["ok", "fail", "fail", "retry", "retry", "retry"]
    assert build_sink("pd", {"type": "pagerduty", "routing_key_env": "PD_KEY"}, {"PD_KEY": "k"}).url == \
        "https://events.pagerduty.com/v2/enqueue"


def test_slack_text_and_blocks(pair):
    firing, resolved = pair
    msg = body(sink("slack").build_request(firing))
    assert "FIRING" in msg["text"] and "subs-mvp-crm-qa" in msg["text"]
    types = [b["type"] for b in msg["blocks"]]
    assert types[0] == "header" and "context" in types
    assert any("250 user(s)" in f["text"] for b in msg["blocks"] if b["type"] == "section" for f in b.get("fields", []))
    done = body(sink("slack").build_request(resolved))
    assert "RESOLVED" in done["text"]
    assert sink("slack").classify(404, {}) == "fail" and sink("slack").classify(429, {}) == "retry"


def test_webhook_types_sign_by_default_others_do_not():
    env = {"DETECTOR_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "PD_KEY": "k"}
    assert build_sink("a", {"type": "webhook", "url": "http://x"}, env).signer is not None
    assert build_sink("b", {"type": "alertmanager_webhook", "url": "http://x"}, env).signer is not None
    assert build_sink("c", {"type": "slack", "url": "http://x"}, env).signer is None
    assert build_sink("d", {"type": "webhook", "url": "http://x"}, {}).signer is None
