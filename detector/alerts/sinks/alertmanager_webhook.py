"""Alertmanager-compatible webhook body (version "4"), for receivers written for Alertmanager.

Same JSON an Alertmanager `webhook_config` receiver gets, with one alert per
notification; the fingerprint is computed as Alertmanager computes it (FNV-1a 64
over the sorted labels, `%016x`). Firing alerts carry Alertmanager's zero time
as `endsAt`. Signed with Standard Webhooks headers by default.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..fingerprint import label_fingerprint_hex
from ..http import BaseSink, HttpRequest, json_request
from ..labels import alert_annotations, alert_labels
from ..notification import Notification
from ..signing import DEFAULT_SECRET_ENV
from ..times import rfc3339

ZERO_TIME = "0001-01-01T00:00:00Z"


def _group_key(labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{}:{" + inner + "}"


def webhook_message(n: Notification, receiver: str, incident_url: str = "", external_url: str = "") -> dict[str, Any]:
    labels = alert_labels(n)
    annotations = alert_annotations(n, incident_url)
    group_labels = {"experiment": n.experiment}
    return {
        "version": "4",
        "groupKey": _group_key(group_labels),
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [
            {
                "status": n.status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": rfc3339(n.started_at),
                "endsAt": rfc3339(n.ended_at) if n.ended_at is not None else ZERO_TIME,
                "generatorURL": incident_url,
                "fingerprint": label_fingerprint_hex(labels),
            }
        ],
    }


class AlertmanagerWebhookSink(BaseSink):
    type: ClassVar[str] = "alertmanager_webhook"
    default_secret_env: ClassVar[str | None] = DEFAULT_SECRET_ENV

    def build_request(self, notification: Notification) -> HttpRequest:
        body = webhook_message(
            notification,
            receiver=str(self.options.get("receiver", self.name)),
            incident_url=self.incident_url(notification),
            external_url=self.external_url or "",
        )
        return json_request(self.url, body)
