"""Source decoders: one documented fixture per format, the enrolment mapping, not-exposure, bad input."""

from __future__ import annotations

import json

import pytest
from source_fixtures import (
    AMPLITUDE,
    CASES,
    LAUNCHDARKLY,
    OPTIMIZELY,
    POSTHOG,
    SEGMENT,
    STATSIG,
    TS,
    UNLEASH,
)

from detector.events import Assignment, Rejected
from detector.sources import FORMATS, decoder_for, parse_sources


def _b(doc) -> bytes:
    return json.dumps(doc).encode()


def _one(fmt, doc, options=None, record_ts=0):
    return decoder_for(fmt, options).decode_one(_b(doc), record_ts)


@pytest.mark.parametrize("fmt, doc, want, attrs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_documented_fixture_decodes(fmt, doc, want, attrs):
    ev = _one(fmt, doc)
    assert isinstance(ev, Assignment), ev
    assert (ev.experiment, ev.user_id, ev.variant, ev.enrolled, ev.ts) == want
    assert ev.attributes == attrs


@pytest.mark.parametrize("fmt, doc, want, attrs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_batch_equals_record_by_record(fmt, doc, want, attrs):
    dec = decoder_for(fmt)
    other = b'{"event": "Order Completed", "type": "track", "kind": "custom", "eventName": "purchase", ' \
            b'"eventType": "customGoal", "event_type": "purchase"}'
    values = [_b(doc), b"not json", other, None, _b(doc)]
    events, positions, rejects = dec.decode_batch(values, [0] * len(values))
    one = [dec.decode_one(v, 0) for v in values]
    assert events == [e for e in one if isinstance(e, Assignment)]
    assert [(i, r.kind) for i, r in rejects] == [(i, r.kind) for i, r in enumerate(one) if isinstance(r, Rejected)]
    assert positions == [i for i, e in enumerate(one) if isinstance(e, Assignment)]
    assert rejects[0][1].kind == "invalid_json" and rejects[0][1].value == b"not json"


@pytest.mark.parametrize("fmt", ["segment", "posthog", "launchdarkly", "statsig", "unleash", "amplitude", "optimizely"])
def test_other_events_of_the_platform_are_not_exposures(fmt):
    other = {"segment": {"type": "track", "event": "Order Completed", "userId": "u1", "properties": {"total": 30}},
             "posthog": {"event": "$pageview", "distinct_id": "u1", "properties": {"$current_url": "/"}},
             "launchdarkly": {"kind": "custom", "key": "checkout-completed", "contextKeys": {"user": "u1"}},
             "statsig": {"eventName": "purchase", "user": {"userID": "u1"}, "value": 30},
             "unleash": {"eventType": "customGoal", "featureName": "x", "context": {"userId": "u1"}},
             "amplitude": {"event_type": "Order Completed", "user_id": "u1"},
             "optimizely": {"type": "feature-variable", "userId": "u1", "decisionInfo": {}}}[fmt]
    r = _one(fmt, other)
    assert isinstance(r, Rejected) and r.kind == "not_exposure", r
    # A Segment identify (no event at all) on the same topic is not an exposure either.
    assert _one("segment", {"type": "identify", "userId": "u1", "traits": {}}).kind == "not_exposure"


@pytest.mark.parametrize("fmt, doc, words", [
    ("posthog", {**POSTHOG, "properties": {"$feature_flag_response": "test"}}, "$feature_flag"),
    ("posthog", {**POSTHOG, "timestamp": "yesterday"}, "datetime"),
    ("launchdarkly", {**LAUNCHDARKLY, "key": None}, "without key"),
    ("launchdarkly", {**LAUNCHDARKLY, "contextKeys": "u1"}, "contextKeys"),
    ("segment", {**SEGMENT, "properties": {"variation_name": "b"}}, "experiment_id"),
    ("statsig", {**STATSIG, "metadata": {"ruleID": "x"}}, "metadata.config"),
    ("unleash", {**UNLEASH, "featureName": ""}, "featureName"),
    ("amplitude", {**AMPLITUDE, "event_properties": {"variant": "on"}}, "flag_key"),
    ("optimizely", {**OPTIMIZELY, "decisionInfo": None}, "decisionInfo"),
    ("posthog", {"distinct_id": "u1"}, "event"),
])
def test_malformed_exposures_are_rejected_with_a_reason(fmt, doc, words):
    r = _one(fmt, doc)
    assert isinstance(r, Rejected) and r.kind in ("invalid_field", "invalid_ts"), r
    assert words in r.reason, r.reason


def test_event_time_is_checked_against_the_record_time_like_native():
    r = _one("launchdarkly", LAUNCHDARKLY, record_ts=TS + 30 * 86400 * 1000)
    assert isinstance(r, Rejected) and r.kind == "invalid_ts"


# ---- enrolment: evaluated but not enrolled ------------------------------------------------------
@pytest.mark.parametrize("fmt, doc", [
    ("posthog", {**POSTHOG, "properties": {**POSTHOG["properties"], "$feature_flag_response": False}}),
    ("launchdarkly", {**LAUNCHDARKLY, "reason": {"kind": "OFF"}, "variation": 0, "value": "control"}),
    ("launchdarkly", {**LAUNCHDARKLY, "reason": {"kind": "ERROR", "errorKind": "FLAG_NOT_FOUND"},
                      "variation": None}),
    ("statsig", {**STATSIG, "metadata": {**STATSIG["metadata"], "ruleID": "layerAssignment", "groupName": None}}),
    ("statsig", {"eventName": "statsig::gate_exposure", "user": {"userID": "u1"}, "time": TS,
                 "metadata": {"gate": "new_checkout", "gateValue": "false", "ruleID": "default"}}),
    ("unleash", {**UNLEASH, "enabled": False, "variant": "disabled"}),
    ("unleash", {**UNLEASH, "eventType": "isEnabled", "enabled": False, "variant": None}),
    ("amplitude", {**AMPLITUDE, "event_properties": {"flag_key": "checkout-express-pay"}}),
    ("amplitude", {**AMPLITUDE, "event_properties": {"flag_key": "checkout-express-pay", "variant": "off"}}),
    ("optimizely", {**OPTIMIZELY, "decisionInfo": {**OPTIMIZELY["decisionInfo"], "enabled": False,
                                                   "variationKey": "off"}}),
])
def test_fallback_evaluations_are_eligible_not_enrolled(fmt, doc):
    ev = _one(fmt, doc)
    assert isinstance(ev, Assignment), ev
    assert ev.enrolled is False and ev.variant is None


def test_a_flag_served_to_everyone_outside_the_experiment_is_still_an_exposure():
    # LaunchDarkly: a targeting rule serving treatment to 100% is not "inExperiment", but every user sees it.
    ev = _one("launchdarkly", {**LAUNCHDARKLY, "reason": {"kind": "RULE_MATCH", "inExperiment": False}})
    assert ev.enrolled is True and ev.variant == "treatment"
    # Optimizely: a rollout rule dispatches no decision event, yet the feature is on.
    ev = _one("optimizely", {**OPTIMIZELY, "decisionInfo": {**OPTIMIZELY["decisionInfo"],
                                                            "decisionEventDispatched": False}})
    assert ev.enrolled is True
    # PostHog boolean flag: response true.
    ev = _one("posthog", {**POSTHOG, "properties": {"$feature_flag": "f", "$feature_flag_response": True}})
    assert (ev.enrolled, ev.variant) == (True, "true")


# ---- identity ---------------------------------------------------------------------------------
def test_identity_options():
    assert _one("posthog", POSTHOG, {"identity": "person_id"}).user_id == POSTHOG["person_id"]
    assert _one("launchdarkly", LAUNCHDARKLY, {"context_kind": "organization"}).user_id == "org-acme"
    r = _one("launchdarkly", LAUNCHDARKLY, {"context_kind": "device"})
    assert isinstance(r, Rejected) and r.kind == "no_identity"
    assert _one("statsig", STATSIG, {"identity": "custom:companyID"}).user_id == "acme"
    assert _one("statsig", STATSIG, {"identity": "stable_id"}).user_id == "b8e1c2d3-stable"
    assert _one("unleash", UNLEASH, {"identity": "session_id"}).user_id == "386689528"
    assert _one("amplitude", AMPLITUDE, {"identity": "device_id"}).user_id == AMPLITUDE["device_id"]
    assert _one("segment", SEGMENT, {"identity": "anonymous_id"}).user_id == SEGMENT["anonymousId"]
    anon = {k: v for k, v in SEGMENT.items() if k != "userId"}
    assert _one("segment", anon).user_id == SEGMENT["anonymousId"]
    assert _one("segment", anon, {"identity": "user_id"}).kind == "no_identity"


def test_launchdarkly_full_context_objects_and_legacy_user_keys():
    multi = {k: v for k, v in LAUNCHDARKLY.items() if k != "contextKeys"}
    multi["context"] = {"kind": "multi", "user": {"key": "u-9", "name": "x"}, "organization": {"key": "o-1"}}
    assert _one("launchdarkly", multi).user_id == "u-9"
    assert _one("launchdarkly", multi, {"context_kind": "organization"}).user_id == "o-1"
    legacy = {k: v for k, v in LAUNCHDARKLY.items() if k != "contextKeys"}
    assert _one("launchdarkly", {**legacy, "userKey": "u-old"}).user_id == "u-old"
    assert _one("launchdarkly", {**legacy, "user": {"key": "u-older"}}).user_id == "u-older"


# ---- configuration ------------------------------------------------------------------------------
def test_parse_sources_syntax():
    got = parse_sources("exposure.assignments=native, ph.events=posthog:identity=person_id,"
                        "ld.export=launchdarkly:context_kind=organization,st=statsig:identity=custom:companyID,"
                        "o=otel", prefix="t1.")
    assert [(s.topic, s.format, dict(s.options)) for s in got] == [
        ("t1.exposure.assignments", "native", {}), ("t1.ph.events", "posthog", {"identity": "person_id"}),
        ("t1.ld.export", "launchdarkly", {"context_kind": "organization"}),
        ("t1.st", "statsig", {"identity": "custom:companyID"}), ("t1.o", "openfeature", {})]
    assert [(s.topic, s.format) for s in parse_sources(None, "p.")] == [("p.exposure.assignments", "native")]
    assert [(s.topic, s.format) for s in parse_sources("  ")] == [("exposure.assignments", "native")]


@pytest.mark.parametrize("spec, words", [
    ("a=kafka", "unknown source format 'kafka'"),
    ("a", "expected topic=format"),
    ("a=native,a=posthog", "listed twice"),
    ("a=posthog:identity=email", "use one of distinct_id, person_id"),
    ("a=posthog:colour=red", "unknown option 'colour'"),
    ("a=native:identity=x", "unknown option 'identity' for native"),
])
def test_parse_sources_errors(spec, words):
    with pytest.raises(ValueError, match="DETECTOR_SOURCES") as e:
        parse_sources(spec)
    assert words in str(e.value)


def test_every_format_has_a_fixture():
    assert {MODULE for MODULE in FORMATS} >= {c[0] for c in CASES}
    assert {decoder_for(f).format for f in FORMATS} == {decoder_for(c[0]).format for c in CASES}


def test_native_limits_are_checked_per_batch_and_only_bad_records_go():
    good = [dict(LAUNCHDARKLY, contextKeys={"user": f"u{i}"}) for i in range(5)]
    bad_key = dict(LAUNCHDARKLY, key="x" * 300)
    nul_user = dict(LAUNCHDARKLY, contextKeys={"user": "a\x00b"})
    late = dict(LAUNCHDARKLY, creationDate=TS - 8 * 86400 * 1000)
    values = [_b(d) for d in [good[0], bad_key, good[1], nul_user, good[2], late, good[3], good[4]]]
    events, positions, rejects = decoder_for("launchdarkly").decode_batch(values, [TS] * len(values))
    assert [e.user_id for e in events] == ["u0", "u1", "u2", "u3", "u4"]
    assert positions == [0, 2, 4, 6, 7]
    assert [(i, r.kind) for i, r in rejects] == [(1, "invalid_field"), (3, "invalid_field"), (5, "invalid_ts")]
