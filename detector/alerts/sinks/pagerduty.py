"""PagerDuty Events API v2: trigger on firing, resolve on resolved, one `dedup_key` per incident.

`dedup_key` is the incident id, so repeats and retries update one PagerDuty
incident and the resolve closes it. Responses: 202 accepted; 400 invalid event
(never retried); 429 and 5xx retried. The routing key comes from the
environment variable named by `routing_key_env` (default PAGERDUTY_ROUTING_KEY).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..http import BaseSink, HttpRequest, SinkUnavailable, Verdict, json_request, sink_from_spec
from ..notification import Notification
from ..times import rfc3339

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}


def event(n: Notification, routing_key: str, source: str = "exposure-detector", incident_url: str = "") -> dict[str, Any]:
    if n.status == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": n.incident_id}
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": n.incident_id,
        "payload": {
            "summary": f"[{n.experiment}] {n.rule}: {n.summary}"[:1024],
            "source": source,
            "severity": SEVERITIES.get(n.severity, "warning"),
            "timestamp": rfc3339(n.detected_at),
            "component": n.experiment,
            "group": n.owner or "",
            "class": n.rule,
            "custom_details": {
                "notification_id": n.id,
                "observed": n.observed,
                "expected": n.expected,
                "blast_radius": n.blast_radius.count,
                "sample_user_ids": list(n.blast_radius.sample_ids),
                "first_offending_event_at": rfc3339(n.first_offending_event_at),
                "labels": n.labels,
            },
        },
    }
    if incident_url:
        body["links"] = [{"href": incident_url, "text": "Incident in the detector console"}]
    return body


class PagerDutySink(BaseSink):
    type: ClassVar[str] = "pagerduty"

    @classmethod
    def from_spec(cls, name: str, spec: Mapping[str, Any], env: Mapping[str, str],
                  external_url: str | None = None) -> BaseSink:
        key_env = str(spec.get("routing_key_env", "PAGERDUTY_ROUTING_KEY"))
        if not env.get(key_env):
            raise SinkUnavailable(f"sink {name!r}: environment variable {key_env} is unset")
        spec = {k: v for k, v in spec.items() if k != "routing_key_env"}
        sink = sink_from_spec(cls, name, spec, env, external_url, default_url=EVENTS_URL)
        sink.options["routing_key"] = env[key_env]
        return sink

    def build_request(self, notification: Notification) -> HttpRequest:
        body = event(
            notification,
            routing_key=str(self.options.get("routing_key", "")),
            source=str(self.options.get("source", "exposure-detector")),
            incident_url=self.incident_url(notification),
        )
        return json_request(self.url, body)

    def classify(self, status: int, headers: Mapping[str, str]) -> Verdict:
        if 200 <= status < 300:
            return "ok"
        if status == 429 or status >= 500:
            return "retry"
        return "fail"
