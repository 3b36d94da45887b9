"""One realistic exposure event per source format, each following the documentation named above it.

Times are 2024-05-01T12:00:00.300Z (TS); decode them with record time 0 (no skew check).
"""

from __future__ import annotations

TS = 1714564800300

# https://segment.com/docs/connections/spec/ab-testing/ : a Segment track call of the A/B-testing spec.
SEGMENT = {
    "anonymousId": "5f4c9d2e-8a51-4d8e-9b1e-0c8f1b6a7e21",
    "context": {
        "ip": "203.0.113.7",
        "library": {"name": "analytics.js", "version": "next-1.64.0"},
        "locale": "pt-BR",
        "location": {"country": "BR", "city": "São Paulo"},
        "device": {"type": "ios", "model": "iPhone15,3"},
        "os": {"name": "iOS", "version": "17.4"},
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

# https://docs.growthbook.io/event-trackers/segment : GrowthBook's trackingCallback ->
# analytics.track("Experiment Viewed", {experimentId: experiment.key, variationId: result.key}).
SEGMENT_GROWTHBOOK = {
    "type": "track",
    "event": "Experiment Viewed",
    "anonymousId": "anon-3c1e",
    "userId": "user_8f14e45f",
    "properties": {"experimentId": "new-signup-form", "variationId": "1"},
    "context": {"library": {"name": "analytics.js", "version": "next-1.64.0"}},
    "timestamp": "2024-05-01T12:00:00.300Z",
    "messageId": "ajs-next-1b2c3d",
}

# https://launchdarkly.com/docs/integrations/data-export/segment-schema-reference : LaunchDarkly's
# Segment destination, event = the LaunchDarkly event kind, the environment among the properties.
SEGMENT_LAUNCHDARKLY = {
    "type": "track",
    "event": "feature",
    "userId": "user_8f14e45f",
    "properties": {"key": "checkout-express-pay", "value": "treatment", "variation": 1, "default": "control",
                   "version": 42, "environment": "5f0c8e2a1b3c4d0009a1b2c3",
                   "reason": {"kind": "RULE_MATCH", "ruleIndex": 0, "inExperiment": False}},
    "timestamp": "2024-05-01T12:00:00.300Z",
}

# https://posthog.com/docs/experiments/exposures : $feature_flag_called with $feature_flag and
# $feature_flag_response, as PostHog's webhook / batch export delivers an event.
POSTHOG = {
    "uuid": "018f3a1e-7c2b-7d3e-9f4a-5b6c7d8e9f00",
    "event": "$feature_flag_called",
    "distinct_id": "user_8f14e45f",
    "person_id": "018f3a1e-0000-7000-8000-000000000042",
    "properties": {
        "$feature_flag": "crm-winback-email-qa",
        "$feature_flag_response": "test",
        "$feature_flag_has_experiment": True,
        "$lib": "web", "$lib_version": "1.130.0",
        "$geoip_country_code": "US", "$device_type": "Desktop", "$os": "Mac OS X",
        "$session_id": "018f3a1e-6a5b-7c4d-8e9f-0a1b2c3d4e5f",
    },
    "timestamp": "2024-05-01T12:00:00.300Z",
}

# https://launchdarkly.com/docs/integrations/data-export/schema-reference : a streaming Data Export
# `feature` event of a multi-kind context (user + organization).
LAUNCHDARKLY = {
    "kind": "feature",
    "creationDate": TS,
    "key": "crm-winback-email-qa",
    "version": 17,
    "contextKeys": {"user": "user_8f14e45f", "organization": "org-acme"},
    "variation": 1,
    "value": "treatment",
    "default": "control",
    "reason": {"kind": "FALLTHROUGH", "inExperiment": True},
}

# https://docs.statsig.com/api-reference/events/log-custom-exposure-events and Statsig's event schema:
# an experiment exposure as the SDK logs it (metadata values are strings).
STATSIG = {
    "eventName": "statsig::experiment_exposure",
    "user": {"userID": "user_8f14e45f", "stableID": "b8e1c2d3-stable", "country": "US",
             "customIDs": {"companyID": "acme"}},
    "time": TS,
    "metadata": {"config": "checkout_flow_v2", "ruleID": "2Kc5Wd9mXbLz", "group": "2Kc5Wd9mXbLz",
                 "groupName": "Test Group", "reason": "Network", "isManualExposure": "false"},
    "secondaryExposures": [{"gate": "is_employee", "gateValue": "false", "ruleID": "default"}],
}

# https://docs.getunleash.io/reference/impression-data : the impression event of a getVariant call.
UNLEASH = {
    "eventType": "getVariant",
    "eventId": "c41aa58c-d2cd-4d08-a6c9-b3e3a0b1d8c5",
    "context": {"userId": "user_8f14e45f", "sessionId": "386689528", "appName": "my-example-app",
                "environment": "default", "properties": {"country": "NO"}},
    "enabled": True,
    "featureName": "ab-test-toggle",
    "impressionData": True,
    "variant": "A",
}

# https://amplitude.com/docs/experiment/track-exposure : the $exposure event sent with the HTTP API v2.
AMPLITUDE = {
    "event_type": "$exposure",
    "user_id": "user_8f14e45f",
    "device_id": "C8F9E604-F01A-4BD9-95C6-8E5357DF265D",
    "time": TS,
    "event_properties": {"flag_key": "checkout-express-pay", "variant": "treatment",
                         "experiment_key": "exp-1"},
    "platform": "iOS",
    "country": "United States",
}

# https://docs.developers.optimizely.com/feature-experimentation/docs/decision-notification-listener :
# what the decision listener receives for a decide() call, serialised by the forwarder.
OPTIMIZELY = {
    "type": "flag",
    "userId": "user_8f14e45f",
    "attributes": {"country": "US", "logged_in": True},
    "decisionInfo": {"flagKey": "product_sort", "enabled": True, "variationKey": "popular_first",
                     "ruleKey": "product_sort_experiment", "reasons": [], "decisionEventDispatched": True,
                     "variables": {"sort_method": "popularity"}},
    "timestamp": TS,
}

# https://opentelemetry.io/docs/specs/semconv/feature-flags/feature-flags-events/ : a
# feature_flag.evaluation event's attributes, flat (what log exporters to Kafka produce).
OTEL = {
    "event.name": "feature_flag.evaluation",
    "feature_flag.key": "crm-winback-email-qa",
    "feature_flag.provider.name": "flagd",
    "feature_flag.result.variant": "treatment",
    "feature_flag.result.value": True,
    "feature_flag.result.reason": "targeting_match",
    "feature_flag.context.id": "user_8f14e45f",
    "feature_flag.context.country": "US",
    "service.name": "web-frontend",
    "timestamp": "2024-05-01T12:00:00.300Z",
}

# https://openfeature.dev/specification/sections/hooks : an after-hook's evaluation details + context.
OPENFEATURE = {
    "flagKey": "search-ranker-v3-br",
    "value": "ranker-v3",
    "variant": "ranker-v3",
    "reason": "SPLIT",
    "flagMetadata": {"flagSetId": "search"},
    "context": {"targetingKey": "user_77", "country": "BR", "platform": "android", "beta": True,
                "cart": {"items": 3}},
    "timestamp": TS,
}

NATIVE = {"experiment": "checkout-express-pay", "user_id": "user_8f14e45f", "variant": "treatment",
          "enrolled": True, "ts": "2024-05-01T12:00:00.300Z", "attributes": {"country": "US"}}

# (format, fixture, expected (experiment, user_id, variant, enrolled, ts), expected attributes)
CASES = [
    ("native", NATIVE, ("checkout-express-pay", "user_8f14e45f", "treatment", True, TS), {"country": "US"}),
    ("segment", SEGMENT, ("checkout-express-pay", "user_8f14e45f", "treatment", True, TS),
     {"country": "BR", "platform": "ios"}),
    ("segment", SEGMENT_GROWTHBOOK, ("new-signup-form", "user_8f14e45f", "1", True, TS), None),
    ("segment", SEGMENT_LAUNCHDARKLY, ("checkout-express-pay", "user_8f14e45f", "treatment", True, TS), None),
    ("posthog", POSTHOG, ("crm-winback-email-qa", "user_8f14e45f", "test", True, TS),
     {"country": "US", "platform": "desktop"}),
    ("launchdarkly", LAUNCHDARKLY, ("crm-winback-email-qa", "user_8f14e45f", "treatment", True, TS), None),
    ("statsig", STATSIG, ("checkout_flow_v2", "user_8f14e45f", "Test Group", True, TS), {"country": "US"}),
    ("unleash", UNLEASH, ("ab-test-toggle", "user_8f14e45f", "A", True, 0), {"country": "NO"}),
    ("amplitude", AMPLITUDE, ("checkout-express-pay", "user_8f14e45f", "treatment", True, TS),
     {"country": "United States", "platform": "ios"}),
    ("optimizely", OPTIMIZELY, ("product_sort", "user_8f14e45f", "popular_first", True, TS),
     {"country": "US", "logged_in": "true"}),
    ("otel", OTEL, ("crm-winback-email-qa", "user_8f14e45f", "treatment", True, TS),
     {"country": "US", "service.name": "web-frontend"}),
    ("openfeature", OPENFEATURE, ("search-ranker-v3-br", "user_77", "ranker-v3", True, TS),
     {"beta": "true", "country": "BR", "platform": "android"}),
]
