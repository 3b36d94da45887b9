"""The incident lifecycle: one page per incident, one resolution, repeats, ids that survive restarts."""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts_fixtures import finding
from detector.alerts.lifecycle import Lifecycle, LifecycleConfig
from detector.alerts.notification import Notification
from detector.alerts.routing import parse_alerting

MIN = 60_000
HOUR = 60 * MIN
T0 = 1_700_000_000_000

ENV = {
    "OPS_WEBHOOK_URL": "http://127.0.0.1:1/ops",
    "SLACK_WEBHOOK_URL": "http://127.0.0.1:1/slack",
    "PAGERDUTY_ROUTING_KEY": "R0UTING",
    "ALERTMANAGER_URL": "http://127.0.0.1:1",
}
CONFIG = {
    "sinks": {
        "ops": {"type": "webhook", "url_env": "OPS_WEBHOOK_URL"},
        "slack": {"type": "slack", "url_env": "SLACK_WEBHOOK_URL"},
        "pd": {"type": "pagerduty", "routing_key_env": "PAGERDUTY_ROUTING_KEY"},
        "am": {"type": "alertmanager", "url_env": "ALERTMANAGER_URL"},
    }
}


def incident_scenario(lc: Lifecycle, start: int = T0, until: int = T0 + 8 * MIN) -> list[Notification]:
    """5 allowlisted QA users, then the experiment goes to 100%: 250 others enroll over 5 batches.

    Each batch yields a finding with growing evidence (as the engine reports new offending
    evidence per batch); the worker ticks every 250 ms, then every second until `until`.
    """
    out: list[Notification] = []
    now = start
    for batch in range(5):
        count = 50 * (batch + 1)
        out += lc.on_findings([finding(count=count, first_at=start - 100, detected_at=now - 20)], now)
        now += 200
        out += lc.tick(now)
        now += 50
        out += lc.tick(now)
    while now < until:
        now += 1000
        out += lc.tick(now)
    return out


def test_incident_scenario_pages_each_sink_once_then_resolves_once():
    lc = Lifecycle(LifecycleConfig())
    notes = incident_scenario(lc)
    cfg = parse_alerting(CONFIG, ENV)
    assert set(cfg.sinks) == {"ops", "slack", "pd", "am"}

    per_sink = Counter()
    for n in notes:
        for sink in cfg.sinks_for(n):
            per_sink[(sink.name, n.kind)] += 1
    for name in ("ops", "slack", "pd", "am"):
        assert per_sink[(name, "firing")] == 1, per_sink
        assert per_sink[(name, "repeat")] == 0
        assert per_sink[(name, "resolved")] == 1
    # keep-alive refreshes go to Alertmanager only
    assert per_sink[("am", "refresh")] >= 3
    assert all(per_sink[(name, "refresh")] == 0 for name in ("ops", "slack", "pd"))

    firing = [n for n in notes if n.kind == "firing"]
    resolved = [n for n in notes if n.kind == "resolved"]
    assert len(firing) == 1 and len(resolved) == 1
    page = firing[0]
    assert page.created_at - T0 <= 500, "first page within group_wait"
    assert page.id == f"{page.incident_id}:firing:1"
    assert resolved[0].id == f"{page.incident_id}:resolved"
    assert resolved[0].resolved_by == "quiet_period"
    last_evidence = T0 + 4 * 250
    assert resolved[0].ended_at - last_evidence >= 5 * MIN
    assert resolved[0].ended_at - last_evidence < 5 * MIN + 1000
    assert resolved[0].blast_radius.count == 250, "resolution carries the final blast radius"
    inc = lc.incident(page.incident_id)
    assert inc.status == "resolved" and inc.findings == 5


def test_group_wait_batches_rules_of_one_experiment_and_group_interval_delays_later_ones():
    lc = Lifecycle(LifecycleConfig(group_wait_ms=500, group_interval_ms=MIN, refresh_interval_ms=None))
    assert lc.on_findings([finding(rule="allowlist_breach"), finding(rule="max_users_exceeded")], T0) == []
    assert lc.tick(T0 + 499) == []
    first = lc.tick(T0 + 500)
    assert sorted(n.rule for n in first) == ["allowlist_breach", "max_users_exceeded"]
    assert {n.group_key for n in first} == {"subs-mvp-crm-qa"}
    # another experiment has its own group and its own group_wait
    assert lc.on_findings([finding(experiment="other", rule="unregistered")], T0 + 1000) == []
    assert [n.experiment for n in lc.tick(T0 + 1500)] == ["other"]
    # a new rule of the already-paged experiment waits for group_interval after the last flush
    lc.on_findings([finding(rule="fraction_exceeded")], T0 + 2000)
    assert lc.tick(T0 + 2500) == []
    later = lc.tick(T0 + 500 + MIN)
    assert [n.rule for n in later] == ["fraction_exceeded"]


def test_zero_group_wait_pages_from_on_findings():
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0))
    notes = lc.on_findings([finding()], T0)
    assert [n.kind for n in notes] == ["firing"]


def test_repeat_interval_while_firing_and_ack_stops_repeats():
    lc = Lifecycle(LifecycleConfig(refresh_interval_ms=None))
    notes = []
    now = T0
    while now <= T0 + 9 * HOUR:  # evidence every minute keeps it firing
        notes += lc.on_findings([finding(count=(now - T0) // MIN + 1)], now)
        now += MIN
    kinds = [(n.kind, n.sequence) for n in notes]
    assert kinds == [("firing", 1), ("repeat", 2), ("repeat", 3)]
    assert notes[1].created_at - notes[0].created_at >= 4 * HOUR
    assert notes[1].id.endswith(":firing:2")
    assert notes[2].blast_radius.count > notes[1].blast_radius.count

    lc.acknowledge(notes[0].incident_id, "alice", now)
    more = []
    while now <= T0 + 20 * HOUR:
        more += lc.on_findings([finding(count=999)], now)
        now += MIN
    assert more == []
    kinds = [e.kind for e in lc.incident(notes[0].incident_id).timeline]
    assert "acknowledged" in kinds


def test_registration_change_resolves_and_a_new_breach_is_a_new_incident():
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0))
    [page] = lc.on_findings([finding(rule="allowlist_breach"), ], T0)
    lc.on_findings([finding(rule="segment_breach")], T0 + 10)  # waits for group_interval; stays unpaged
    out = lc.on_rule_breaches("subs-mvp-crm-qa", {"allowlist_breach": False, "segment_breach": True}, T0 + MIN,
                              version=2)
    assert [(n.kind, n.resolved_by) for n in out] == [("resolved", "registration_change")]
    assert out[0].id == f"{page.incident_id}:resolved"
    assert lc.open_incident("subs-mvp-crm-qa", "segment_breach") is not None
    # same reported first offending event after resolution: still a new incident, new id
    flushed = lc.on_findings([finding(rule="allowlist_breach")], T0 + 2 * MIN)
    assert sorted(n.rule for n in flushed) == ["allowlist_breach", "segment_breach"]
    [again] = [n for n in flushed if n.rule == "allowlist_breach"]
    assert again.kind == "firing" and again.incident_id != page.incident_id
    assert again.id == f"{again.incident_id}:firing:1"
    timeline_kinds = [e.kind for e in lc.incident(page.incident_id).timeline]
    assert timeline_kinds.index("registration_change") < timeline_kinds.index("resolution")


def test_operator_resolve_and_resolve_before_page_sends_nothing():
    lc = Lifecycle(LifecycleConfig(group_wait_ms=1000))
    lc.on_findings([finding()], T0)
    [inc] = lc.incidents()
    assert lc.resolve(inc.id, "bob", T0 + 10) == [], "never paged, so nothing to resolve downstream"
    assert lc.tick(T0 + 2000) == []
    [page] = lc.on_findings([finding(first_at=5_000)], T0 + 3000) + lc.tick(T0 + 4000)
    [res] = lc.resolve(page.incident_id, "bob", T0 + 5000)
    assert res.resolved_by == "operator:bob" and res.status == "resolved"
    assert lc.resolve(page.incident_id, "bob", T0 + 6000) == []
    with pytest.raises(KeyError):
        lc.resolve("inc_nope", "bob", T0)


def test_ids_are_deterministic_across_serialize_restore_and_replay():
    reference = [n.to_bytes() for n in incident_scenario(Lifecycle())]

    # Crash mid-way: state persisted after the first batch, the rest continues in a new process.
    lc = Lifecycle()
    out = lc.on_findings([finding(count=50, first_at=T0 - 100, detected_at=T0 - 20)], T0)
    restored = Lifecycle.from_bytes(lc.to_bytes())
    assert restored.to_bytes() == lc.to_bytes()
    assert Lifecycle.from_dict(lc.to_dict()).to_bytes() == lc.to_bytes()

    # Replaying the whole scenario from an empty snapshot re-derives the same ids and bodies.
    replay = [n.to_bytes() for n in incident_scenario(Lifecycle())]
    assert replay == reference
    ids = [Notification.from_bytes(b).id for b in reference]
    assert len(ids) == len(set(ids))

    # Snapshot taken just before the page, restored, same inputs: same page id.
    a = Lifecycle()
    a.on_findings([finding()], T0)
    snap = a.to_bytes()
    [p1] = a.tick(T0 + 600)
    b = Lifecycle.from_bytes(snap)
    [p2] = b.tick(T0 + 600)
    assert p1.id == p2.id and p1.to_bytes() == p2.to_bytes()
    assert out == []


def test_notification_round_trips_through_outbox_bytes():
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0))
    [n] = lc.on_findings([finding(count=3)], T0, registrations={"subs-mvp-crm-qa": {"owner": "subs", "labels": {"team": "crm"}}})
    assert n.owner == "subs" and n.labels == {"team": "crm"}
    back = Notification.from_bytes(n.to_bytes())
    assert back == n
    assert msgspec.json.decode(n.to_bytes())["blast_radius"] == {"count": 3, "sample_ids": ["user-0", "user-1", "user-2"]}
    assert n.is_first_page


def test_next_due_tells_the_timer_when_to_tick():
    lc = Lifecycle(LifecycleConfig(group_wait_ms=500))
    assert lc.next_due() is None
    lc.on_findings([finding()], T0)
    assert lc.next_due() == T0 + 500


def test_resolved_incidents_are_forgotten_after_retention_but_ids_never_repeat():
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0, retention_ms=HOUR))
    [p] = lc.on_findings([finding()], T0)
    lc.resolve(p.incident_id, "x", T0 + 1)
    lc.tick(T0 + 2 * HOUR)
    assert lc.incident(p.incident_id) is None
    [q] = lc.on_findings([finding()], T0 + 3 * HOUR)
    assert q.incident_id != p.incident_id


def test_config_from_yaml_durations():
    cfg = LifecycleConfig.from_dict({"group_wait": "250ms", "repeat_interval": "2h", "refresh_interval": None,
                                     "resolve_quiet_period_ms": 1000})
    assert cfg.group_wait_ms == 250 and cfg.repeat_interval_ms == 2 * HOUR
    assert cfg.refresh_interval_ms is None and cfg.resolve_quiet_period_ms == 1000
    with pytest.raises(ValueError):
        LifecycleConfig.from_dict({"group_weight": "1s"})


events = st.lists(
    st.tuples(
        st.sampled_from(["finding", "tick", "resolve", "ack", "reregister"]),
        st.sampled_from(["allowlist_breach", "max_users_exceeded"]),
        st.integers(min_value=1, max_value=10 * MIN),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(events)
def test_property_one_resolution_per_incident_and_dense_firing_sequences(steps):
    lc = Lifecycle(LifecycleConfig(group_wait_ms=500, resolve_quiet_period_ms=5 * MIN, repeat_interval_ms=20 * MIN,
                                   refresh_interval_ms=MIN))
    now, out = T0, []
    for action, rule, dt in steps:
        now += dt
        if action == "finding":
            out += lc.on_findings([finding(rule=rule, first_at=T0)], now)
        elif action == "tick":
            out += lc.tick(now)
        elif action == "reregister":
            out += lc.on_rule_breaches("subs-mvp-crm-qa", {rule: False}, now)
        else:
            inc = lc.open_incident("subs-mvp-crm-qa", rule)
            if inc is not None:
                if action == "resolve":
                    out += lc.resolve(inc.id, "op", now)
                else:
                    lc.acknowledge(inc.id, "op", now)
    ids = [n.id for n in out]
    assert len(ids) == len(set(ids)), "notification ids are unique"
    by_incident: dict[str, list[Notification]] = {}
    for n in out:
        by_incident.setdefault(n.incident_id, []).append(n)
    for incident_id, notes in by_incident.items():
        pages = [n.sequence for n in notes if n.kind in ("firing", "repeat")]
        assert pages == list(range(1, len(pages) + 1))
        resolved = [n for n in notes if n.kind == "resolved"]
        assert len(resolved) <= 1
        assert pages, "nothing is resolved or refreshed downstream before it was paged"
        if resolved:
            assert notes[-1].kind == "resolved", "nothing after the resolution"
    assert Lifecycle.from_bytes(lc.to_bytes()).to_bytes() == lc.to_bytes()
