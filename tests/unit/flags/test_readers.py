"""The three readers on documented fixtures (sources in fixtures/SOURCES.md), cannot-tell cases included."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from detector.flags import flagd, growthbook, unleash
from detector.flags.model import FormatError

FIX = Path(__file__).parent / "fixtures"
QA = ("qa-001", "qa-002", "qa-003", "qa-004", "qa-005")


def load(name: str) -> dict:
    return json.loads((FIX / name).read_text())


# ---- GrowthBook ---------------------------------------------------------------------------
def test_growthbook_seed_is_the_qa_list_and_a_zero_coverage_launch_rule():
    doc = growthbook.read(load("growthbook_payload.json"))
    f = doc.flags["crm-winback-email-qa"]
    assert f.cannot_tell is None and f.enabled
    assert f.users == frozenset(QA)
    qa, launch = f.rules
    assert qa.users == QA and qa.share == 1.0 and qa.split == {"control": 0.5, "treatment": 0.5}
    assert launch.traffic and launch.share == 0.0
    assert f.exposing_rules == (qa,)
    assert f.updated_at == 1796220120000  # dateUpdated 2026-12-02T14:02:00Z


def test_growthbook_coverage_weights_conditions_and_saved_groups():
    doc = growthbook.read(load("growthbook_payload.json"))
    express = doc.flags["checkout-express-pay"].rules[0]
    assert express.share == pytest.approx(0.1) and express.traffic and not express.conditions
    ranker = doc.flags["search-ranker-v3-br"].rules[0]
    assert {c.attribute: (c.op, c.values) for c in ranker.conditions} == {
        "country": ("in", ("BR", "PT")), "platform": ("in", ("ios", "android"))}
    assert ranker.split == {"control": 0.5, "ranker-v3": 0.5}
    staff, us = doc.flags["beta-banner"].rules
    # $inGroup resolved from the payload's savedGroups, on the hash attribute `id`: a user list.
    assert staff.users == ("staff-1", "staff-2") and staff.kind == "force" and staff.share == 1.0
    assert us.kind == "rollout" and us.share == 0.25 and us.conditions[0].values == ("US",)


def test_growthbook_cannot_tell_cases():
    doc = growthbook.read(load("growthbook_payload.json"))
    assert "grp_not_in_payload" in doc.flags["remote-group-banner"].cannot_tell
    assert "$near" in doc.flags["odd-operator"].cannot_tell
    enc = growthbook.read({"encryptedFeatures": "m5ylFM6ndyOJA2OPadubkw==.Uu7ViqgKEt/dWvCyhI46q088PkAEJbnXKf3KPZjf9IEQQ+A8fojNoxw4wIbPX3aj", "dateUpdated": "2026-12-02T14:02:00Z"})
    assert enc.flags == {} and "encrypted" in enc.cannot_tell
    bandit = growthbook.read_feature("b", {"rules": [{"contextualBanditRef": "cb_1", "contextualVariations": [1, 2]}]})
    assert "bandit" in bandit.cannot_tell


def test_growthbook_sdk_semantics_for_weights_force_default_and_webhook_body():
    # Weights not summing to 1 fall back to equal weights, as the SDK's getBucketRanges does.
    f = growthbook.read_feature("x", {"defaultValue": 0, "rules": [{"variations": [0, 1, 2], "weights": [0.7, 0.7, 0.7]}]})
    assert f.rules[0].split == pytest.approx({"0": 1 / 3, "1": 1 / 3, "2": 1 / 3})
    # A forced default value exposes nobody; a passthrough variation is not in the experiment.
    f = growthbook.read_feature("x", {"defaultValue": False, "rules": [
        {"force": False}, {"variations": [False, True], "meta": [{"key": "a", "passthrough": True}, {"key": "b"}]}]})
    assert f.rules[0].share == 0.0 and f.rules[1].share == 0.5 and f.rules[1].split == {"b": 1.0}
    # Namespaces and explicit ranges.
    f = growthbook.read_feature("x", {"rules": [{"variations": [0, 1], "namespace": ["ns", 0, 0.4],
                                                  "ranges": [[0, 0.25], [0.5, 0.75]]}]})
    assert f.rules[0].share == pytest.approx(0.2)
    # The Standard SDK webhook carries the payload as a JSON string in data.payload.
    body = {"type": "payload.changed", "timestamp": "2024-04-03T01:54:20.449Z",
            "data": {"payload": json.dumps(load("growthbook_payload.json"))}}
    assert growthbook.is_payload(body)
    assert growthbook.read(body).flags.keys() == growthbook.read(load("growthbook_payload.json")).flags.keys()
    assert not growthbook.is_payload({"type": "payload.changed", "timestamp": "2024-04-03T01:54:20.449Z"})
    with pytest.raises(FormatError):
        growthbook.read({"type": "payload.changed"})


# ---- flagd --------------------------------------------------------------------------------
def test_flagd_seed_targets_the_qa_list_only():
    f = flagd.read(load("flagd_flags.json")).flags["crm-winback-email-qa"]
    assert f.cannot_tell is None
    [rule] = f.rules  # the else branch is null: the code default, reason DEFAULT, nobody exposed
    assert rule.users == QA and rule.share == 1.0 and rule.split == {"control": 0.5, "treatment": 0.5}


def test_flagd_fractional_for_everyone_is_a_traffic_rule():
    doc = load("flagd_flags.json")
    doc["flags"]["crm-winback-email-qa"]["targeting"] = {"fractional": [["control", 50], ["treatment", 50]]}
    [rule] = flagd.read(doc).flags["crm-winback-email-qa"].rules
    assert rule.traffic and rule.share == 1.0 and not rule.conditions


def test_flagd_documented_examples_static_disabled_and_conditions():
    doc = flagd.read(load("flagd_flags.json")).flags
    [hc] = doc["headerColor"].rules  # $ref resolved; `in` on a string is a substring test: "other"
    assert hc.kind == "fractional" and hc.share == 1.0 and hc.conditions[0].op == "other"
    assert hc.split == {"red": 0.25, "blue": 0.25, "green": 0.25, "yellow": 0.25}
    [banner] = doc["new-welcome-banner"].rules
    assert banner.conditions[0].op == "ends_with" and banner.conditions[0].values == ("@example.com",)
    [static] = doc["static-on"].rules
    assert static.kind == "static" and static.share == 1.0  # reason STATIC: everyone
    assert doc["disabled-flag"].enabled is False and doc["disabled-flag"].exposing_rules == ()
    [country] = doc["country-rollout"].rules
    # Every user reaching a fractional gets a targeting match, "off" included (reason TARGETING_MATCH):
    # exposed, as the OpenFeature exposure decoder counts them; the split says who got what.
    assert country.share == 1.0 and country.conditions[0].values == ("BR", "PT")
    assert country.split == pytest.approx({"on": 0.1, "off": 0.9})


def test_flagd_cannot_tell_cases():
    doc = flagd.read(load("flagd_flags.json")).flags
    assert "missingEvaluator" in doc["dangling-ref"].cannot_tell
    assert "geo_within" in doc["custom-op"].cannot_tell
    assert "evaluation context" in doc["variant-from-context"].cannot_tell
    with pytest.raises(FormatError):
        flagd.read({"features": []})


def test_flagd_if_chain_branches_carry_the_negation_of_earlier_conditions():
    f = flagd.read_flag("x", {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": None,
                              "targeting": {"if": [{"==": [{"var": "country"}, "US"]}, "a",
                                                   {"in": [{"var": "targetingKey"}, ["u1"]]}, "b", "a"]}})
    us, listed, rest = f.rules
    assert us.conditions[0].values == ("US",) and us.traffic
    assert listed.users == ("u1",) and listed.conditions[0].op == "not_in"
    assert rest.traffic and rest.conditions[0].op == "not_in" and rest.conditions[1].op == "other"


# ---- Unleash ------------------------------------------------------------------------------
def test_unleash_seed_is_a_user_list_and_a_zero_rollout():
    f = unleash.read(load("unleash_client_features.json")).flags["crm-winback-email-qa"]
    users, rollout = f.rules
    assert users.users == QA and users.split == {"control": 0.5, "treatment": 0.5}
    assert rollout.kind == "flexibleRollout" and rollout.share == 0.0
    assert f.exposing_rules == (users,)


def test_unleash_constraints_segments_and_cannot_tell():
    doc = unleash.read(load("unleash_client_features.json")).flags
    [r] = doc["pricing-annual-banner"].rules
    assert r.share == pytest.approx(0.05)
    assert {c.attribute: c.values for c in r.conditions} == {"country": ("US", "CA"), "platform": ("ios", "android")}
    assert "segment 42" in doc["remote-segment"].cannot_tell
    assert "myTenantStrategy" in doc["custom-strategy"].cannot_tell
    assert "GEO_WITHIN" in doc["odd-operator"].cannot_tell
    assert doc["everyone"].rules[0].share == 1.0
    assert doc["switched-off"].enabled is False


def test_unleash_inverted_constraint_and_strategy_variants():
    f = unleash.read_feature({"name": "x", "enabled": True, "strategies": [{
        "name": "flexibleRollout", "parameters": {"rollout": "30"},
        "constraints": [{"contextName": "country", "operator": "IN", "values": ["DE"], "inverted": True}],
        "variants": [{"name": "a", "weight": 100}, {"name": "b", "weight": 900}]}],
        "variants": [{"name": "z", "weight": 1000}]})
    [r] = f.rules
    assert r.conditions[0].op == "not_in" and r.split == pytest.approx({"a": 0.1, "b": 0.9})
    doc = load("unleash_client_features.json")
    broken = copy.deepcopy(doc)
    broken["features"][0]["strategies"][1]["parameters"]["rollout"] = "lots"
    assert "not a number" in unleash.read(broken).flags["crm-winback-email-qa"].cannot_tell
