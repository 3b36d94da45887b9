"""The merged incident timeline, list filters and the post-mortem Markdown."""

from __future__ import annotations

from detector.incidents.views import incident_markdown, incident_view, matches, merged_timeline

T = 1_700_000_000_000


def _inc(**kw):
    base = {
        "id": "inc_1", "experiment": "qa", "rule": "allowlist_breach", "status": "firing", "severity": "critical",
        "summary": "qa: 3 enrolled users not on the allowlist", "owner": "crm",
        "started_at": "2023-11-14T22:13:20.400Z", "first_offending_event_at": "2023-11-14T22:13:20.000Z",
        "detected_at": "2023-11-14T22:13:20.000Z", "blast_radius": {"count": 3, "sample_ids": []},
        "observed": {}, "expected": {},
        "timeline": [
            {"at": "2023-11-14T22:13:20.000Z", "at_ms": T, "kind": "first_offending_event", "detail": {}},
            {"at": "2023-11-14T22:13:20.000Z", "at_ms": T, "kind": "detection", "detail": {"summary": "s", "blast_radius": 1}},
            {"at": "2023-11-14T22:13:20.900Z", "at_ms": T + 900, "kind": "notification_queued",
             "detail": {"notification_id": "inc_1:firing:1", "notification_kind": "firing"}},
            {"at": "2023-11-14T22:13:30.000Z", "at_ms": T + 10_000, "kind": "registration_change", "detail": {}},
        ],
    }
    base.update(kw)
    return base


def test_deliveries_and_mitigation_merge_in_time_order_without_duplicates():
    row = {"deliveries": [
        {"kind": "delivery", "sink": "pagerduty", "notification_id": "inc_1:firing:1", "status": "retrying",
         "attempts": 1, "http_status": 503, "finished_at": T + 950},
        {"kind": "delivery", "sink": "pagerduty", "notification_id": "inc_1:firing:1", "status": "delivered",
         "attempts": 2, "http_status": 202, "finished_at": T + 2000},
        {"kind": "delivery", "sink": "pagerduty", "notification_id": "inc_1:firing:1", "status": "delivered",
         "attempts": 2, "http_status": 202, "finished_at": T + 2000},  # folded twice: shown once
        {"kind": "mitigation", "sink": "kill_switch", "notification_id": "inc_1:firing:1", "status": "delivered",
         "attempts": 1, "http_status": 200, "finished_at": T + 1000},
    ]}
    tl = merged_timeline(_inc(), row["deliveries"])
    assert [e["kind"] for e in tl] == ["first_offending_event", "detection", "notification_queued", "delivery",
                                       "mitigation", "delivery", "registration_change"]
    assert tl[5]["detail"]["http_status"] == 202


def test_registration_changes_say_who_changed_what():
    history = [
        {"at": "2023-11-14T22:00:00.000Z", "who": "ci", "source": "yaml", "action": "create", "diff": []},
        {"at": "2023-11-14T22:13:29.500Z", "who": "dana", "source": "api", "action": "update",
         "diff": [{"field": "population.allowlist", "old": ["qa-1"], "new": ["qa-1", "u9"]}]},
    ]
    view = incident_view(_inc(), {}, history)
    change = [e for e in view["timeline"] if e["kind"] == "registration_change"][0]
    assert change["detail"]["who"] == "dana" and change["detail"]["source"] == "api"
    md = incident_markdown(view, "http://detector:6066")
    assert "`update` by `dana` via `api`" in md
    assert "http://detector:6066/v1/experiments/qa/blast-radius?format=csv&rule=allowlist_breach" in md
    assert view["detection_latency_ms"] == 400


def test_markdown_rows_in_order():
    md = incident_markdown(incident_view(_inc(summary="a | b"), {}))
    lines = md.splitlines()
    assert lines[0] == "## Incident inc_1: allowlist_breach in `qa`"
    rows = [l for l in lines if l.startswith("| 2023")]
    assert [r.split(" | ")[1] for r in rows] == ["First offending event", "Detected", "Notification queued",
                                                 "Registration changed"]


def test_list_filters():
    v = _inc()
    assert matches(v, {"experiment": "qa", "rule": "allowlist_breach,max_users_exceeded"})
    assert not matches(v, {"status": "resolved"})
    assert matches(v, {"since": "2023-11-14T22:00:00Z"}) and not matches(v, {"since": "2023-11-15T00:00:00Z"})
    assert not matches(v, {"until": "2023-11-14T22:00:00Z"})


def test_markdown_shows_times_not_epoch_milliseconds():
    md = incident_markdown(incident_view(_inc(observed={"offenders": 3, "last_offending_event_at": T + 500}), {}))
    observed = next(line for line in md.splitlines() if line.startswith("- Observed:"))
    assert "2023-11-14T22:13:20.500Z" in observed and str(T + 500) not in observed
    assert '"offenders":3' in observed


def test_acknowledgement_names_the_credential_beside_the_claimed_person():
    tl = _inc()["timeline"] + [
        {"at": "2023-11-14T22:14:00.000Z", "at_ms": T + 40_000, "kind": "acknowledged",
         "detail": {"by": "alice", "token": "ops-bot"}},
        {"at": "2023-11-14T22:15:00.000Z", "at_ms": T + 100_000, "kind": "resolution",
         "detail": {"by": "operator:alice", "notified": True}},
    ]
    md = incident_markdown(incident_view(_inc(timeline=tl), {}))
    assert "by `alice` (token `ops-bot`)" in md
    assert "by `operator:alice`" in md and "by `operator:alice` (token" not in md
