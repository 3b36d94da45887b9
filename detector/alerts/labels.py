"""Alertmanager labels and annotations for a notification (shared by both Alertmanager sinks).

Labels identify the alert (Alertmanager fingerprints and groups by them), so they
hold only stable values: alertname, experiment, rule, severity, owner, and the
registration's own labels. Everything that changes goes to annotations.
Alertmanager 0.25 accepts alerts without `alertname`; we always set it.
"""

from __future__ import annotations

import re

import orjson

from .notification import Notification
from .times import rfc3339

ALERTNAME = "ExposureAnomaly"
_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_RESERVED = ("alertname", "experiment", "rule", "severity", "owner")


def label_name(name: str) -> str:
    """A valid Prometheus label name: [a-zA-Z_][a-zA-Z0-9_]*."""
    clean = _INVALID.sub("_", name)
    return clean if clean and not clean[0].isdigit() else f"_{clean}"


def alert_labels(n: Notification) -> dict[str, str]:
    labels = {label_name(k): str(v) for k, v in sorted(n.labels.items()) if label_name(k) not in _RESERVED}
    labels.update(alertname=ALERTNAME, experiment=n.experiment, rule=n.rule, severity=n.severity)
    if n.owner:
        labels["owner"] = n.owner
    return labels


def alert_annotations(n: Notification, incident_url: str = "") -> dict[str, str]:
    ann = {
        "summary": n.summary,
        "description": f"{n.rule} in experiment {n.experiment}: {n.blast_radius.count} user(s) out of target",
        "incident_id": n.incident_id,
        "first_offending_event_at": rfc3339(n.first_offending_event_at) or "",
        "detected_at": rfc3339(n.detected_at) or "",
        "blast_radius": str(n.blast_radius.count),
        "observed": orjson.dumps(n.observed).decode(),
        "expected": orjson.dumps(n.expected).decode(),
    }
    if n.blast_radius.sample_ids:
        ann["sample_user_ids"] = ",".join(n.blast_radius.sample_ids)
    if incident_url:
        ann["incident_url"] = incident_url
    return ann
