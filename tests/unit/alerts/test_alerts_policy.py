"""Notification policy: digests instead of a page storm, observe mode, severities, rate limits."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from alerts_fixtures import finding

from detector.alerts.digest import Digests
from detector.alerts.lifecycle import Lifecycle, LifecycleConfig
from detector.alerts.policy import NotificationPolicy
from detector.alerts.ratelimit import RateLimiter
from detector.alerts.routing import parse_alerting

T0 = 1_700_000_000_000
MIN = 60_000
FAST = {"grouping": [{"match": {"rule": "unregistered"}, "group_by": ["owner"], "group_wait": "2s",
                      "group_interval": "1m", "repeat_interval": "1h"}]}


def _unregistered(i: int, at: int = T0):
    return finding(f"exp-{i:03d}", "unregistered", count=10 + i, first_at=at, severity="warning")


def _run(lc: Lifecycle, digests: Digests, findings, start: int, until: int, step: int = 250, regs=None):
    pages, digest_notes = [], []
    now = start
    pages += lc.on_findings(findings, now, regs)
    while now <= until:
        pages += lc.tick(now)
        digest_notes += digests.tick(lc.folded_incidents(), now)
        now += step
    return pages, digest_notes


def test_300_unregistered_and_a_breach_give_one_digest_and_one_page():
    policy = NotificationPolicy.from_dict(FAST)
    lc = Lifecycle(LifecycleConfig(group_wait_ms=500), policy=policy)
    digests = Digests(policy)
    findings = [_unregistered(i) for i in range(300)] + [finding("qa-exp", "allowlist_breach", first_at=T0)]
    pages, notes = _run(lc, digests, findings, T0, T0 + MIN)
    assert [n.rule for n in pages if n.kind == "firing"] == ["allowlist_breach"]
    assert pages[0].created_at - T0 <= 500  # the breach is not delayed by the digest's wait
    assert len(notes) == 1
    d = notes[0]
    assert d.id.startswith("digest:") and d.id.endswith(":1") and d.status == "firing"
    assert d.observed["digest"]["count"] == 300 and d.observed["digest"]["new"] == 300
    assert d.created_at - T0 >= 2000  # the digest waits its group_wait
    assert {e["experiment"] for e in d.observed["digest"]["experiments"]} == {f"exp-{i:03d}" for i in range(300)}
    # every unregistered incident is recorded, none paged on its own
    incs = lc.incidents(status="firing")
    assert len(incs) == 301
    assert sum(1 for i in incs if i.folded and i.folded.startswith("digest:")) == 300


def test_digest_groups_by_owner_and_resolves_when_members_resolve():
    policy = NotificationPolicy.from_dict(FAST)
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0), policy=policy)
    digests = Digests(policy)
    regs = {f"exp-{i:03d}": SimpleNamespace(owner="team-a" if i < 2 else "team-b", labels={}, mode=None)
            for i in range(4)}
    pages, notes = _run(lc, digests, [_unregistered(i) for i in range(4)], T0, T0 + 5000, regs=regs)
    assert not pages
    assert sorted(n.owner for n in notes) == ["team-a", "team-b"]
    # registration: every unregistered incident is no longer in breach
    for i in range(4):
        lc.on_rule_breaches(f"exp-{i:03d}", {"unregistered": False}, T0 + 6000)
    resolved = digests.tick(lc.folded_incidents(), T0 + 6000)
    assert sorted(n.status for n in resolved) == ["resolved", "resolved"]
    assert all(n.id.endswith(":1:resolved") for n in resolved)
    assert digests.tick(lc.folded_incidents(), T0 + 7000) == []


def test_new_members_wait_for_group_interval_and_ids_survive_a_restart():
    policy = NotificationPolicy.from_dict(FAST)
    store: dict = {}
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0), policy=policy)
    d1 = Digests(policy, store)
    _, first = _run(lc, d1, [_unregistered(i) for i in range(3)], T0, T0 + 3000)
    assert [n.id.rsplit(":", 1)[1] for n in first] == ["1"]
    lc.on_findings([_unregistered(7, T0 + 4000)], T0 + 4000)
    lc.tick(T0 + 4000)
    assert d1.tick(lc.folded_incidents(), T0 + 30_000) == []  # group_interval (1m) not over
    # restart: a new Digests over the same store continues the numbering
    lc2 = Lifecycle.from_bytes(lc.to_bytes(), lc.config, policy)
    d2 = Digests(policy, store)
    later = d2.tick(lc2.folded_incidents(), T0 + 3000 + MIN)
    assert [n.id.rsplit(":", 1)[1] for n in later] == ["2"]
    assert later[0].observed["digest"]["new"] == 1 and later[0].observed["digest"]["count"] == 4
    # a restart after every member resolved still resolves the digest it announced
    lc3 = Lifecycle.from_bytes(lc.to_bytes(), lc.config, policy)
    for inc in lc3.folded_incidents():
        lc3.on_rule_breaches(inc.experiment, {"unregistered": False}, T0 + 3000 + MIN)
    snapshot = dict(store)
    gone = Digests(policy, snapshot).tick(lc3.folded_incidents(), T0 + 3000 + 2 * MIN)
    assert [(n.status, n.id.endswith(":2:resolved")) for n in gone] == [("resolved", True)]
    # nothing new: nothing more until repeat_interval
    assert d2.tick(lc2.folded_incidents(), T0 + 10 * MIN) == []
    assert [n.kind for n in d2.tick(lc2.folded_incidents(), T0 + 3000 + MIN + 3_600_000)] == ["repeat"]


@pytest.mark.parametrize("mode", ["observe", "page"])
def test_unregistered_mode_observe_records_without_notifying_and_page_pages(mode):
    policy = NotificationPolicy.from_dict({}, env={"DETECTOR_UNREGISTERED": mode})
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0), policy=policy)
    digests = Digests(policy)
    pages, notes = _run(lc, digests, [_unregistered(i) for i in range(5)], T0, T0 + 40_000)
    assert not notes
    incs = lc.incidents(status="firing")
    assert len(incs) == 5
    if mode == "observe":
        assert not pages and all(i.folded == "observe" for i in incs)
        assert all(any(e.kind == "folded" for e in i.timeline) for i in incs)
        # resolution of an observed incident sends nothing either
        assert lc.on_rule_breaches("exp-000", {"unregistered": False}, T0 + 50_000) == []
    else:
        assert sorted(n.experiment for n in pages if n.kind == "firing") == [f"exp-{i:03d}" for i in range(5)]


def test_registration_mode_observe_silences_its_breaches_only():
    policy = NotificationPolicy()
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0), policy=policy)
    regs = {"quiet": SimpleNamespace(owner="x", labels={}, mode="observe"),
            "loud": SimpleNamespace(owner="x", labels={}, mode="page")}
    notes = lc.on_findings([finding("quiet", first_at=T0), finding("loud", first_at=T0)], T0, regs)
    notes += lc.tick(T0 + 10)
    assert [n.experiment for n in notes] == ["loud"]
    assert lc.open_incident("quiet", "allowlist_breach").folded == "observe"


def test_breaches_are_never_folded_and_severities_apply_per_rule():
    with pytest.raises(ValueError, match="never folded"):
        NotificationPolicy.from_dict({"grouping": [{"match": {"rule": "allowlist_breach"}, "group_by": ["owner"]}]})
    policy = NotificationPolicy.from_dict({"grouping": [{"group_by": ["owner"]}],  # matches every rule
                                           "severities": {"unregistered": "info", "allowlist_breach": "critical"}})
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0), policy=policy)
    notes = lc.on_findings([finding("a", severity="warning", first_at=T0), _unregistered(1)], T0)
    notes += lc.tick(T0 + 1)
    assert [(n.rule, n.severity) for n in notes] == [("allowlist_breach", "critical")]
    assert lc.open_incident("exp-001", "unregistered").severity == "info"
    with pytest.raises(ValueError, match="DETECTOR_UNREGISTERED"):
        NotificationPolicy.from_dict({}, env={"DETECTOR_UNREGISTERED": "loud"})


def test_group_by_a_label_and_group_by_experiment():
    policy = NotificationPolicy.from_dict({"grouping": [{"match": {"rule": "unregistered"}, "group_by": ["team"],
                                                         "group_wait": "0s"}]})
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0), policy=policy)
    regs = {f"exp-{i:03d}": SimpleNamespace(owner=None, labels={"team": "t1" if i % 2 else "t2"}, mode=None)
            for i in range(6)}
    _, notes = _run(lc, Digests(policy), [_unregistered(i) for i in range(6)], T0, T0 + 1000, regs=regs)
    assert sorted(n.labels.get("team") for n in notes) == ["t1", "t2"]
    per_exp = NotificationPolicy.from_dict({"grouping": [{"group_by": ["experiment"]}]})
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0), policy=per_exp)
    pages, notes = _run(lc, Digests(per_exp), [_unregistered(i) for i in range(3)], T0, T0 + 1000)
    assert not notes and len([n for n in pages if n.kind == "firing"]) == 3


def _note(i: int, rule: str = "unregistered"):
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0))
    return lc.on_findings([finding(f"e{i}", rule, first_at=T0)], T0)[0]


def test_rate_limit_holds_advisory_pages_never_breaches_and_summarises():
    policy = NotificationPolicy.from_dict({"rate_limit": {"max": 3, "per": "10m"}})
    store: dict = {}
    rl = RateLimiter(policy, store)
    now = T0 - T0 % (10 * MIN) + 1000
    admitted = [rl.admit("slack", _note(i), now + i) for i in range(6)]
    assert admitted == [True, True, True, False, False, False]
    assert all(rl.admit("slack", _note(10 + i, "allowlist_breach"), now + 10) for i in range(3))
    assert rl.admit("pd", _note(20), now)  # per sink
    assert rl.due_summaries(now + 5 * MIN, ["slack", "pd"]) == []
    # restart in the middle: the held list survives in the store
    rl2 = RateLimiter(policy, store)
    due = rl2.due_summaries(now + 10 * MIN, ["slack", "pd"])
    assert len(due) == 1
    sink, summary = due[0]
    assert sink == "slack" and summary.observed["held_back"] == 3
    assert summary.id == f"held:slack:{now - 1000}"
    assert {h["experiment"] for h in summary.observed["listed"]} == {"e3", "e4", "e5"}
    assert rl2.due_summaries(now + 11 * MIN, ["slack"]) == []


def test_alerting_yaml_notifications_section_parses():
    from pathlib import Path

    import yaml

    raw = yaml.safe_load(Path("config/alerting.yaml").read_text())
    cfg = parse_alerting(raw, env={})
    assert cfg.policy.unregistered == "digest"
    assert cfg.policy.grouping[0].group_by == ("owner",)
    assert cfg.policy.rate_limit is not None
    assert parse_alerting(raw, env={"DETECTOR_UNREGISTERED": "observe"}).policy.unregistered == "observe"


def test_rate_limit_state_restored_as_a_dict_from_the_changelog():
    """Another worker restores the deliveries table from its changelog: the record arrives decoded."""
    import orjson

    policy = NotificationPolicy.from_dict({"rate_limit": {"max": 1, "per": "10m"}})
    store: dict = {}
    now = T0 - T0 % (10 * MIN) + 1000
    rl = RateLimiter(policy, store)
    assert [rl.admit("slack", _note(i), now + i) for i in range(3)] == [True, False, False]
    restored = {k: orjson.loads(v) for k, v in store.items()}  # what the table hands back after restore
    rl2 = RateLimiter(policy, restored)
    assert rl2.admit("slack", _note(9), now + 5) is False  # the window's budget is still spent
    [(sink, summary)] = rl2.due_summaries(now + 10 * MIN, ["slack"])
    assert summary.observed["held_back"] == 3


def test_records_restored_from_the_changelog_as_dicts_are_read():
    """Faust's table hands back a restored record as decoded JSON, not the bytes written."""
    import json

    policy = NotificationPolicy.from_dict({**FAST, "rate_limit": {"max": 1, "per": "10m"}})
    store: dict = {}
    lc = Lifecycle(LifecycleConfig(group_wait_ms=0), policy=policy)
    _run(lc, Digests(policy, store), [_unregistered(i) for i in range(2)], T0, T0 + 3000)
    now = T0 - T0 % (10 * MIN) + 1000
    rl = RateLimiter(policy, store)
    assert [rl.admit("s", _note(i), now) for i in range(2)] == [True, False]
    restored = {k: json.loads(v) for k, v in store.items()}
    assert Digests(policy, restored).tick(lc.folded_incidents(), T0 + 4000) == []  # seq 1 already sent
    assert not RateLimiter(policy, restored).admit("s", _note(5), now + 1)  # the window's count survived
