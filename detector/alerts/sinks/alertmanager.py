"""Push to Alertmanager: `POST {url}/api/v2/alerts` with a JSON array of alerts.

Alertmanager resolves an alert on its own when `endsAt` passes; a firing alert
sent without `endsAt` lives for its `resolve_timeout` (5 m). So this sink wants
the lifecycle's keep-alive refreshes (every minute while firing), and sends
`endsAt` = the resolution time on resolve. Option `alert_ttl` (e.g. "10m") sets
an explicit `endsAt` = emission time + ttl on firing alerts instead.
Alertmanager retries only 5xx; we also retry 429, as for every sink.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..http import BaseSink, HttpRequest, json_request
from ..labels import alert_annotations, alert_labels
from ..notification import Notification
from ..times import parse_duration_ms, rfc3339

API_PATH = "/api/v2/alerts"


def postable_alert(n: Notification, generator_url: str = "", ttl_ms: int | None = None) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "labels": alert_labels(n),
        "annotations": alert_annotations(n, generator_url),
        "startsAt": rfc3339(n.started_at),
    }
    if n.status == "resolved":
        alert["endsAt"] = rfc3339(n.ended_at if n.ended_at is not None else n.created_at)
    elif ttl_ms:
        alert["endsAt"] = rfc3339(n.created_at + ttl_ms)
    if generator_url:
        alert["generatorURL"] = generator_url
    return alert


class AlertmanagerSink(BaseSink):
    type: ClassVar[str] = "alertmanager"
    wants_refresh: ClassVar[bool] = True

    def api_url(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith(API_PATH) else base + API_PATH

    def build_request(self, notification: Notification) -> HttpRequest:
        ttl = self.options.get("alert_ttl")
        alert = postable_alert(notification, self.incident_url(notification), parse_duration_ms(ttl) if ttl else None)
        return json_request(self.api_url(), [alert])
