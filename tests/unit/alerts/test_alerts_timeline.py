"""The scribe's timeline: ordered entries, JSON for the API."""

from __future__ import annotations

import orjson

from alerts_fixtures import finding
from detector.alerts.lifecycle import Lifecycle, LifecycleConfig
from detector.alerts.timeline import timeline_dict, timeline_json

T0 = 1_612_893_600_000


def test_timeline_lists_the_incident_in_order():
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0))
    [n] = lc.on_findings([finding(count=250, first_at=T0 - 1200, detected_at=T0 - 300)], T0)
    lc.record_mitigation(n.incident_id, {"status": "delivered", "http_status": 202}, T0 + 950)
    lc.acknowledge(n.incident_id, "alice", T0 + 60_000)
    lc.record_registration_change("subs-mvp-crm-qa", T0 + 90_000, version=3, allowlist_size=255)
    lc.on_rule_breaches("subs-mvp-crm-qa", {"allowlist_breach": False}, T0 + 120_000)
    inc = lc.incident(n.incident_id)

    doc = orjson.loads(timeline_json(inc))
    assert doc == orjson.loads(orjson.dumps(timeline_dict(inc)))
    assert {"id", "experiment", "rule", "status", "timeline"} <= set(doc)
    assert doc["status"] == "resolved"
    kinds = [e["kind"] for e in doc["timeline"]]
    assert kinds == ["first_offending_event", "detection", "notification_queued", "mitigation",
                     "acknowledged", "registration_change", "registration_change", "resolution",
                     "notification_queued"]
    ats = [e["at_ms"] for e in doc["timeline"]]
    assert ats == sorted(ats)
    assert doc["timeline"][0]["at"] == "2021-02-09T17:59:58.800Z"
    assert set(doc["timeline"][0]) == {"at", "at_ms", "kind", "detail"}


def test_timeline_is_bounded():
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0, max_timeline_entries=20))
    [n] = lc.on_findings([finding()], T0)
    for i in range(100):
        lc.record_mitigation(n.incident_id, {"status": "delivered"}, T0 + i)
    tl = lc.incident(n.incident_id).timeline
    assert len(tl) == 20 and tl[0].kind == "first_offending_event"
