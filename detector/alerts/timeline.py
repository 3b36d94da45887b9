"""The scribe: an incident's timestamped timeline as JSON (the Markdown for a post-mortem is
`detector.incidents.views.incident_markdown`, over the folded timeline topic).

Entries are appended as things happen (see `Lifecycle`); they are rendered in
time order, ties kept in the order they were written, so that the first
offending event, detection, notification and delivery read top to bottom.
"""

from __future__ import annotations

from typing import Any

import orjson

from .incident import Incident, TimelineEntry
from .times import rfc3339

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
        "notified": "observe" if incident.folded == "observe" else ("digest" if incident.folded else "page"),
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
