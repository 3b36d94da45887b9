"""The scribe: an incident's timestamped timeline as JSON and as Markdown for a post-mortem.

Entries are appended as things happen (see `Lifecycle`); they are rendered in
time order, ties kept in the order they were written, so that the first
offending event, detection, notification and delivery read top to bottom.
"""

from __future__ import annotations

from typing import Any

import orjson

from .incident import Incident, TimelineEntry
from .times import rfc3339

_TITLES = {
    "configuration_changed": "Configuration changed",
    "first_offending_event": "First offending event",
    "detection": "Detected",
    "evidence": "New evidence",
    "notification_queued": "Notification queued",
    "delivery": "Delivery",
    "mitigation": "Auto-mitigation",
    "acknowledged": "Acknowledged",
    "registration_change": "Registration changed",
    "resolution": "Resolved",
}


def ordered(incident: Incident) -> list[TimelineEntry]:
    """Timeline entries sorted by time; stable, so equal times keep their written order."""
    return sorted(incident.timeline, key=lambda e: e.at)


def timeline_dict(incident: Incident) -> dict[str, Any]:
    """The incident as the API returns it: id, experiment, rule, status, ..., timeline."""
    return {
        "id": incident.id,
        "experiment": incident.experiment,
        "rule": incident.rule,
        "status": incident.status,
        "severity": incident.severity,
        "summary": incident.summary,
        "owner": incident.owner,
        "started_at": rfc3339(incident.started_at),
        "ended_at": rfc3339(incident.ended_at),
        "resolved_by": incident.resolved_by,
        "acknowledged_by": incident.acknowledged_by,
        "first_offending_event_at": rfc3339(incident.first_offending_event_at),
        "detected_at": rfc3339(incident.detected_at),
        "observed": incident.observed,
        "expected": incident.expected,
        "blast_radius": {"count": incident.blast_radius.count, "sample_ids": list(incident.blast_radius.sample_ids)},
        "timeline": [{"at": rfc3339(e.at), "at_ms": e.at, "kind": e.kind, "detail": e.detail} for e in ordered(incident)],
    }


def timeline_json(incident: Incident) -> bytes:
    return orjson.dumps(timeline_dict(incident))


def _describe(entry: TimelineEntry) -> str:
    d = entry.detail
    if entry.kind == "detection":
        return f"{d.get('summary', '')} (blast radius {d.get('blast_radius')})".strip()
    if entry.kind == "notification_queued":
        return f"{d.get('notification_kind', d.get('status'))} `{d.get('notification_id')}`"
    if entry.kind == "delivery":
        http = f" HTTP {d['http_status']}" if d.get("http_status") is not None else ""
        err = f" ({d['error']})" if d.get("error") else ""
        return f"{d.get('sink')}: {d.get('status')}{http} after {d.get('attempts')} attempt(s){err} `{d.get('notification_id')}`"
    if entry.kind == "mitigation":
        http = f" HTTP {d['http_status']}" if d.get("http_status") is not None else ""
        return f"kill switch {d.get('status')}{http}"
    if entry.kind == "acknowledged":
        return f"by {d.get('by')}"
    if entry.kind == "resolution":
        return f"by {d.get('by')}" + ("" if d.get("notified", True) else " (before any page went out)")
    return ", ".join(f"{k}={v}" for k, v in d.items() if v is not None)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def timeline_markdown(incident: Incident) -> str:
    """The incident and its timeline as Markdown, ready to paste into a post-mortem."""
    lines = [
        f"## Incident {incident.id}: {incident.rule} in `{incident.experiment}`",
        "",
        f"- Status: **{incident.status}**" + (f" (resolved by {incident.resolved_by})" if incident.resolved_by else ""),
        f"- Severity: {incident.severity}" + (f"; owner: {incident.owner}" if incident.owner else ""),
        f"- Summary: {incident.summary}",
        f"- Blast radius: {incident.blast_radius.count} user(s)",
        f"- Observed: `{orjson.dumps(incident.observed).decode()}`",
        f"- Expected: `{orjson.dumps(incident.expected).decode()}`",
        "",
        "| Time (UTC) | Event | Detail |",
        "|---|---|---|",
    ]
    for entry in ordered(incident):
        title = _TITLES.get(entry.kind, entry.kind)
        lines.append(f"| {rfc3339(entry.at)} | {title} | {_cell(_describe(entry))} |")
    return "\n".join(lines) + "\n"
