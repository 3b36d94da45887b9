"""The incident: one breach of one rule in one experiment, from first page to resolution.

Incidents are keyed by (experiment, rule). Each holds the latest evidence from
the engine, the bookkeeping the lifecycle needs (counters and times, all in the
caller's epoch milliseconds), and the scribe's timeline for the post-mortem.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import msgspec

from .notification import BlastRadius

IncidentStatus = Literal["firing", "resolved"]

# Timeline entry kinds, in the order they usually happen.
TIMELINE_KINDS = (
    "configuration_changed",  # a flag configuration change opened (or resolved) it: detector.flags
    "first_offending_event",
    "detection",
    "evidence",
    "folded",
    "notification_queued",
    "delivery",
    "mitigation",
    "acknowledged",
    "registration_change",
    "resolution",
)


class TimelineEntry(msgspec.Struct, frozen=True):
    at: int  # epoch ms
    kind: str
    detail: dict[str, Any] = {}


class Incident(msgspec.Struct, kw_only=True):
    id: str
    experiment: str
    rule: str
    status: IncidentStatus = "firing"
    severity: str = "warning"
    summary: str = ""
    owner: str | None = None
    labels: dict[str, str] = {}
    first_offending_event_at: int
    detected_at: int
    started_at: int  # caller's clock when the incident opened
    ended_at: int | None = None
    resolved_by: str | None = None
    observed: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    blast_radius: BlastRadius = BlastRadius(0)
    statistic: float | None = None
    last_evidence_at: int = 0  # caller's clock at the latest finding (quiet period runs from here)
    findings: int = 0  # findings merged into this incident
    pages: int = 0  # firing notifications emitted (first + repeats)
    refreshes: int = 0
    last_page_at: int | None = None
    last_refresh_at: int | None = None
    pending_page: bool = False  # waiting for its group to flush
    mode: str | None = None  # the registration's mode ("observe": recorded, never paged)
    folded: str | None = None  # not paged on its own: "observe", or "digest:<group key>"
    acknowledged_by: str | None = None
    acknowledged_at: int | None = None
    timeline: list[TimelineEntry] = []

    def add(self, at: int, kind: str, **detail: Any) -> None:
        """Append a timeline entry."""
        self.timeline.append(TimelineEntry(int(at), kind, detail))

    def to_dict(self) -> dict[str, Any]:
        return cast("dict[str, Any]", msgspec.to_builtins(self))
