"""risk.assess and risk.diff: pure functions."""

from __future__ import annotations

import dataclasses

from detector.registration.model import parse_registration
from detector.registration.risk import assess, diff
from regtest_helpers import VALID


def codes(risks):
    return sorted(r.code for r in risks)


def base():
    return parse_registration(VALID)


def test_safe_registration_has_no_risk():
    assert assess(None, base(), None) == []
    assert assess(base(), base(), {"enrolled_users": 3, "eligible_users": 1000, "observed_fraction": 0.003}) == []


def test_allowlist_with_large_fraction():
    new = dataclasses.replace(base(), fraction=0.5)
    assert "allowlist_with_large_fraction" in codes(assess(None, new, None))
    assert "allowlist_with_large_fraction" not in codes(assess(None, dataclasses.replace(new, fraction=0.49), None))
    not_qa = dict(description="checkout rollout", experiment="checkout-rollout")
    assert assess(None, dataclasses.replace(new, allowlist=None, **not_qa), None) == []


def test_large_max_users_with_allowlist():
    new = dataclasses.replace(base(), max_users=5_000_000)
    assert codes(assess(None, new, None)) == ["large_max_users_with_allowlist"]
    assert assess(None, dataclasses.replace(new, allowlist=None), None) == []


def test_declaration_far_below_observed_traffic():
    obs = {"enrolled_users": 31, "eligible_users": 100, "observed_fraction": 0.31}
    assert codes(assess(None, base(), obs)) == ["fraction_below_observed", "max_users_below_observed"]
    obs_ok = {"enrolled_users": 30, "eligible_users": 3000, "observed_fraction": 0.01}
    assert assess(None, base(), obs_ok) == []


def test_widening_more_than_tenfold():
    old = dataclasses.replace(base(), allowlist=None, max_users=100, fraction=0.01)
    new = dataclasses.replace(old, max_users=1001, fraction=0.2)
    assert codes(assess(old, new, None)) == ["widened_fraction", "widened_max_users"]
    assert assess(old, dataclasses.replace(old, max_users=1000, fraction=0.1), None) == []


def test_delete_with_traffic():
    assert codes(assess(base(), None, {"enrolled_users": 5})) == ["delete_with_traffic"]
    assert assess(base(), None, None) == []
    assert assess(base(), None, {"enrolled_users": 0, "eligible_users": 0}) == []


def test_window_already_ended_needs_now():
    new = dataclasses.replace(base(), ends_at=1_000)
    assert assess(None, new, None) == []
    assert codes(assess(None, new, None, now_ms=2_000)) == ["window_already_ended"]


def test_diff_fields_and_allowlist_changes():
    old = base()
    new = dataclasses.replace(old, max_users=4, allowlist=frozenset({"qa-001", "qa-004"}), severity="error")
    changes = diff(old, new)
    assert [c["field"] for c in changes] == ["population.allowlist", "population.max_users", "severity"]
    allow = changes[0]
    assert allow["added"] == ["qa-004"] and allow["removed"] == ["qa-002", "qa-003"]
    assert changes[1] == {"field": "population.max_users", "old": 3, "new": 4}
    assert diff(old, old) == []
    created = diff(None, old)
    assert {"field": "experiment", "old": None, "new": "subs-mvp-crm-qa"} in created
    assert all(c["new"] is None for c in diff(old, None))


def test_large_allowlist_diff_is_summarised():
    old = dataclasses.replace(base(), allowlist=frozenset(f"u{i}" for i in range(5000)))
    new = dataclasses.replace(old, allowlist=frozenset(f"u{i}" for i in range(1, 5002)))
    (change,) = diff(old, new)
    assert change["old"] == {"count": 5000} and change["new"] == {"count": 5001}
    assert change["added_count"] == 2 and change["removed_count"] == 1


def test_test_only_registration_with_wide_population():
    qa = dataclasses.replace(base(), description="QA of the CRM email flow, test accounts only")
    wide = dataclasses.replace(qa, allowlist=None, max_users=None, fraction=1.0)
    assert "test_only_with_wide_population" in codes(assess(None, wide, None))
    # a QA experiment that names its accounts is fine; so is a wide rollout that says nothing of QA
    assert "test_only_with_wide_population" not in codes(assess(None, qa, None))
    plain = dataclasses.replace(wide, description="checkout redesign rollout", experiment="checkout-redesign")
    assert "test_only_with_wide_population" not in codes(assess(None, plain, None))
    # the key alone can say it, words only (no match inside "latest" or "contest")
    keyed = dataclasses.replace(wide, description=None, experiment="crm-winback-email-qa")
    assert "test_only_with_wide_population" in codes(assess(None, keyed, None))
    contest = dataclasses.replace(wide, description="latest contest", experiment="contest-latest")
    assert "test_only_with_wide_population" not in codes(assess(None, contest, None))


def test_dropping_the_allowlist_is_a_risk():
    old = base()
    new = dataclasses.replace(old, allowlist=None, fraction=0.01)
    assert "allowlist_dropped" in codes(assess(old, new, None))
    assert "allowlist_dropped" not in codes(assess(old, old, None))
