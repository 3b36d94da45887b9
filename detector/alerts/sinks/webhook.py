"""Generic webhook: our own JSON, `"schema": "exposure-alert/v1"` (the DESIGN.md contract).

Body fields: schema, id (notification id, also the `webhook-id` header),
incident_id, status (firing|resolved), kind (firing|repeat|resolved), sequence,
experiment, rule, severity, summary, started_at, ended_at (null while firing),
first_offending_event_at, detected_at (RFC 3339 UTC, millisecond precision),
observed, expected, blast_radius {count, sample_ids}, owner, labels,
resolved_by, links {incident (the console page), api (the JSON)}. Signed with Standard Webhooks headers by default
(secret from DETECTOR_WEBHOOK_SECRET).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..http import BaseSink, HttpRequest, json_request
from ..notification import Notification
from ..signing import DEFAULT_SECRET_ENV
from ..times import rfc3339

SCHEMA = "exposure-alert/v1"


def exposure_alert(n: Notification, incident_url: str = "", api_url: str = "") -> dict[str, Any]:
    """The `exposure-alert/v1` document for a notification."""
    return {
        "schema": SCHEMA,
        "id": n.id,
        "incident_id": n.incident_id,
        "status": n.status,
        "kind": n.kind,
        "sequence": n.sequence,
        "experiment": n.experiment,
        "rule": n.rule,
        "severity": n.severity,
        "summary": n.summary,
        "started_at": rfc3339(n.started_at),
        "ended_at": rfc3339(n.ended_at),
        "first_offending_event_at": rfc3339(n.first_offending_event_at),
        "detected_at": rfc3339(n.detected_at),
        "observed": n.observed,
        "expected": n.expected,
        "blast_radius": {"count": n.blast_radius.count, "sample_ids": list(n.blast_radius.sample_ids)},
        "owner": n.owner,
        "labels": n.labels,
        "resolved_by": n.resolved_by,
        "links": {k: v for k, v in (("incident", incident_url), ("api", api_url)) if v},
    }


class WebhookSink(BaseSink):
    type: ClassVar[str] = "webhook"
    default_secret_env: ClassVar[str | None] = DEFAULT_SECRET_ENV

    def build_request(self, notification: Notification) -> HttpRequest:
        return json_request(self.url, exposure_alert(notification, self.incident_url(notification),
                                                          self.incident_api_url(notification)))
