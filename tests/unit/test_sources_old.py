"""Ingest adapters: Segment "Experiment Viewed" and OpenFeature / OpenTelemetry flag evaluations."""

from __future__ import annotations

import json

import pytest

from detector.adapters import decoder_for, parse_sources
from detector.events import Assignment, Rejected

# A Segment track call as analytics.js sends it (GrowthBook's Segment integration shape).
SEGMENT = {
    "anonymousId": "5f4c9d2e-8a51-4d8e-9b1e-0c8f1b6a7e21",
    "context": {
        "ip": "203.0.113.7",
        "library": {"name": "analytics.js", "version": "next-1.64.0"},
        "locale": "pt-BR",
        "location": {"country": "BR", "city": "São Paulo"},
        "device": {"type": "ios", "model": "iPhone15,3"},
        "os": {"name": "iOS", "version": "17.4"},
        "app": {"name": "Shop", "version": "8.12.0", "build": "812"},
        "page": {"path": "/checkout", "url": "https://shop.example.com/checkout"},
    },
    "event": "Experiment Viewed",
    "integrations": {},
    "messageId": "ajs-next-6a2f8e3b1c9d4e5f",
    "originalTimestamp": "2024-05-01T12:00:00.120Z",
    "properties": {
        "experiment_id": "checkout-express-pay",
        "experiment_name": "Checkout: express pay button",
        "variation_id": "1",
        "variation_name": "treatment",
        "nonInteraction": 1,
    },
    "receivedAt": "2024-05-01T12:00:00.480Z",
    "sentAt": "2024-05-01T12:00:00.300Z",
    "timestamp": "2024-05-01T12:00:00.300Z",
    "type": "track",
    "userId": "user_8f14e45f",
    "writeKey": "REDACTED",
}
TS = 1714564800300


def _b(doc) -> bytes:
    return json.dumps(doc).encode()


def test_segment_experiment_viewed():
    ev = decoder_for("segment")(_b(SEGMENT), 0)
    assert isinstance(ev, Assignment), ev
    assert (ev.experiment, ev.user_id, ev.variant, ev.enrolled, ev.ts) == (
        "checkout-express-pay", "user_8f14e45f", "treatment", True, TS)
    assert ev.attributes["country"] == "BR" and ev.attributes["platform"] == "ios"
    assert ev.attributes["locale"] == "pt-BR" and ev.attributes["app_version"] == "8.12.0"
    assert ev.attributes["identity"] == "user" and ev.attributes["nonInteraction"] == "1"


def test_segment_fallbacks_anonymous_names_and_record_time():
    doc = {k: v for k, v in SEGMENT.items() if k not in ("userId", "timestamp", "originalTimestamp", "sentAt",
                                                         "receivedAt", "context")}
    doc["properties"] = {"experiment_name": "onboarding-tour", "variation_id": 2}
    ev = decoder_for("segment")(_b(doc), 1234)
    assert (ev.experiment, ev.user_id, ev.variant, ev.ts) == ("onboarding-tour", SEGMENT["anonymousId"], "2", 1234)
    assert ev.attributes == {"identity": "anonymous"}


@pytest.mark.parametrize("mutate, kind, words", [
    (lambda d: d.update(event="Order Completed"), "not_exposure", "not 'Experiment Viewed'"),
    (lambda d: d.update(type="identify"), "not_exposure", "'identify' message"),
    (lambda d: d["properties"].pop("experiment_id") and d["properties"].pop("experiment_name"), "invalid_field",
     "missing properties.experiment_id"),
    (lambda d: d.pop("userId") and d.pop("anonymousId"), "invalid_field", "neither userId nor anonymousId"),
    (lambda d: d.update(timestamp="yesterday"), "invalid_ts", "not an RFC 3339 time"),
    (lambda d: d.update(timestamp="2024-05-01T12:00:00"), "invalid_ts", "no time zone"),
    (lambda d: d.update(properties="checkout"), "invalid_field", "properties must be an object"),
    (lambda d: d.update(userId={"id": 1}), "invalid_field", "userId must be a string"),
])
def test_segment_malformed_is_rejected_with_a_reason(mutate, kind, words):
    doc = json.loads(json.dumps(SEGMENT))
    mutate(doc)
    r = decoder_for("segment")(_b(doc), 0)
    assert isinstance(r, Rejected) and r.kind == kind and words in r.reason, r


@pytest.mark.parametrize("value, kind", [(None, "empty"), (b"{not json", "invalid_json"), (b"[1, 2]", "invalid_json"),
                                         (b"x" * 70_000, "too_large")])
def test_every_adapter_rejects_garbage(value, kind):
    for fmt in ("segment", "openfeature"):
        r = decoder_for(fmt)(value, 0)
        assert isinstance(r, Rejected) and r.kind == kind


# OpenTelemetry semantic conventions (feature_flag.evaluation event), flat attributes.
OTEL_FLAT = {
    "event.name": "feature_flag.evaluation",
    "feature_flag.key": "crm-winback-email-qa",
    "feature_flag.provider.name": "flagd",
    "feature_flag.result.variant": "treatment",
    "feature_flag.result.value": True,
    "feature_flag.result.reason": "targeting_match",
    "feature_flag.context.id": "user_8f14e45f",
    "feature_flag.context.country": "US",
    "feature_flag.set.id": "proj-123",
    "service.name": "web-frontend",
    "timestamp": "2024-05-01T12:00:00.300Z",
}

# One OTLP/JSON log record as the OpenTelemetry Collector's kafka exporter writes it (otlp_json).
OTLP = {"resourceLogs": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout-api"}}]},
    "scopeLogs": [{
        "scope": {"name": "dev.openfeature.contrib.otel", "version": "1.0.0"},
        "logRecords": [{
            "timeUnixNano": "1714564800300000000",
            "observedTimeUnixNano": "1714564800310000000",
            "eventName": "feature_flag.evaluation",
            "attributes": [
                {"key": "feature_flag.key", "value": {"stringValue": "checkout-express-pay"}},
                {"key": "feature_flag.variant", "value": {"stringValue": "control"}},
                {"key": "feature_flag.context.id", "value": {"stringValue": "user_42"}},
                {"key": "feature_flag.evaluation.reason", "value": {"stringValue": "SPLIT"}},
                {"key": "platform", "value": {"stringValue": "android"}},
                {"key": "app.build", "value": {"intValue": "812"}},
            ],
        }],
    }],
}]}

# An OpenFeature after-hook payload: evaluation details plus the evaluation context.
OPENFEATURE = {
    "flagKey": "search-ranker-v3-br",
    "value": "ranker-v3",
    "variant": "ranker-v3",
    "reason": "SPLIT",
    "flagMetadata": {"flagSetId": "search"},
    "context": {"targetingKey": "user_77", "country": "BR", "platform": "android", "beta": True,
                "cart": {"items": 3}},
    "timestamp": 1714564800300,
}


def test_otel_flat_attributes():
    ev = decoder_for("otel")(_b(OTEL_FLAT), 0)
    assert isinstance(ev, Assignment), ev
    assert (ev.experiment, ev.user_id, ev.variant, ev.enrolled, ev.ts) == (
        "crm-winback-email-qa", "user_8f14e45f", "treatment", True, TS)
    assert ev.attributes["country"] == "US" and ev.attributes["service.name"] == "web-frontend"
    assert not any(k.startswith("feature_flag.") for k in ev.attributes)


def test_otlp_log_record():
    ev = decoder_for("opentelemetry")(_b(OTLP), 0)
    assert (ev.experiment, ev.user_id, ev.variant, ev.enrolled, ev.ts) == (
        "checkout-express-pay", "user_42", "control", True, TS)
    assert ev.attributes == {"platform": "android", "app.build": "812"}


def test_openfeature_hook_payload():
    ev = decoder_for("openfeature")(_b(OPENFEATURE), 0)
    assert (ev.experiment, ev.user_id, ev.variant, ev.enrolled, ev.ts) == (
        "search-ranker-v3-br", "user_77", "ranker-v3", True, TS)
    assert ev.attributes == {"beta": "true", "country": "BR", "platform": "android"}


@pytest.mark.parametrize("change", [{"reason": "DEFAULT"}, {"reason": "disabled"}, {"reason": "ERROR"},
                                    {"errorCode": "FLAG_NOT_FOUND", "reason": "SPLIT"}])
def test_fallback_evaluations_are_eligible_not_enrolled(change):
    ev = decoder_for("openfeature")(_b({**OPENFEATURE, **change}), 0)
    assert ev.enrolled is False and ev.variant is None and ev.user_id == "user_77"


def test_boolean_flag_without_variant_uses_the_value():
    doc = {k: v for k, v in OTEL_FLAT.items() if k != "feature_flag.result.variant"}
    assert decoder_for("otel")(_b(doc), 0).variant == "true"


@pytest.mark.parametrize("doc, kind, words", [
    ({"hello": "world"}, "not_exposure", "not a feature-flag evaluation"),
    ({**OTEL_FLAT, "feature_flag.context.id": None}, "invalid_field", "no targeting key"),
    ({"flagKey": "x", "variant": "a", "context": {}}, "invalid_field", "no targeting key (context.targetingKey)"),
    ({"flagKey": "x", "context": "user_1"}, "invalid_field", "context must be an object"),
    ({**OTEL_FLAT, "timestamp": "soon"}, "invalid_ts", "not an RFC 3339 time"),
    ({"resourceLogs": [{"scopeLogs": [{"logRecords": []}]}]}, "invalid_field", "with 0 log records"),
    ({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"eventName": "http.request"}]}]}]}, "not_exposure",
     "not a feature_flag.evaluation event"),
    ({"resourceLogs": "nope"}, "invalid_field", "malformed OTLP logs"),
])
def test_openfeature_malformed_is_rejected_with_a_reason(doc, kind, words):
    r = decoder_for("openfeature")(_b(doc), 0)
    assert isinstance(r, Rejected) and r.kind == kind and words in r.reason, r


def test_native_is_the_existing_decoder_and_unknown_formats_fail():
    r = decoder_for("native")(b'{"experiment": "e", "user_id": "u", "ts": 5}', 0)
    assert isinstance(r, Assignment) and r.ts == 5
    with pytest.raises(ValueError, match="unknown source format 'amplitude'"):
        decoder_for("amplitude")


def test_sources_setting():
    assert parse_sources(None) == {"exposure.assignments": "native"}
    assert parse_sources("exposure.assignments=native, segment.tracks=Segment,otel.flags=otel") == {
        "exposure.assignments": "native", "segment.tracks": "segment", "otel.flags": "otel"}
    with pytest.raises(ValueError) as err:
        parse_sources("a=native,b,c=amplitude,a=segment")
    assert "'b': expected topic=format" in str(err.value) and "unknown format 'amplitude'" in str(err.value)
    assert "a: listed twice" in str(err.value)
